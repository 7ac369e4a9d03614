-- rocketmq_stream 0.2.0
\echo Use "CREATE EXTENSION rocketmq_stream" to load this file. \quit

-- [from_offset, until_offset) of one queue: offsets are "next offset to read".
CREATE TYPE rmq_offset_range AS (
    topic        text,
    broker       text,
    queue_id     integer,
    from_offset  bigint,
    until_offset bigint
);

CREATE FUNCTION rmq_offset_range(topic text, broker text, queue_id integer,
                                 from_offset bigint, until_offset bigint)
RETURNS rmq_offset_range
AS 'MODULE_PATHNAME', 'rmq_offset_range_make'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION rmq_queues(topic text, options jsonb DEFAULT '{}')
RETURNS TABLE (broker text, queue_id integer, min_offset bigint, max_offset bigint)
AS 'MODULE_PATHNAME', 'rmq_queues'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION rmq_create_rdd(consumer_group text, ranges rmq_offset_range[],
                               options jsonb DEFAULT '{}')
RETURNS TABLE (
    topic            text,
    broker           text,
    queue_id         integer,
    queue_offset     bigint,
    msg_id           text,
    unique_key       text,
    keys             text[],
    tags             text,
    body             bytea,
    properties       jsonb,
    born_timestamp   timestamptz,
    born_host        text,
    store_timestamp  timestamptz,
    store_host       text,
    reconsume_times  integer,
    properties_raw   bytea
)
AS 'MODULE_PATHNAME', 'rmq_create_rdd'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

CREATE FUNCTION rmq_offset_for_time(topic text, broker text, queue_id integer,
                                    "time" timestamptz, options jsonb DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'rmq_offset_for_time'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The group's offsets as the broker has them (rmq_committed_offsets puts
-- PostgreSQL's beside them).
CREATE FUNCTION rmq_broker_offsets(consumer_group text, topic text,
                                   options jsonb DEFAULT '{}')
RETURNS TABLE (broker text, queue_id integer, broker_offset bigint)
AS 'MODULE_PATHNAME', 'rmq_committed_offsets'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION rmq_commit_offsets(consumer_group text, ranges rmq_offset_range[],
                                   options jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'rmq_commit_offsets'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION rmq_send(topic text, body bytea, tags text DEFAULT NULL,
                         keys text DEFAULT NULL, properties jsonb DEFAULT NULL,
                         options jsonb DEFAULT '{}')
RETURNS text
AS 'MODULE_PATHNAME', 'rmq_send'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION rmq_send_batch(topic text, bodies bytea[], tags text DEFAULT NULL,
                               keys text[] DEFAULT NULL, properties jsonb DEFAULT NULL,
                               options jsonb DEFAULT '{}')
RETURNS text[]
AS 'MODULE_PATHNAME', 'rmq_send_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION rmq_create_topic(topic text, queues integer DEFAULT 8,
                                 broker text DEFAULT NULL, options jsonb DEFAULT '{}',
                                 attributes jsonb DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'rmq_create_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Connection profiles, the PostgreSQL way: a foreign server holds a
-- cluster's name servers and TLS settings, a user mapping on it the user's
-- RocketMQ credentials.  No scans: only servers and user mappings.
--   CREATE SERVER prod FOREIGN DATA WRAPPER rocketmq_stream
--       OPTIONS (namesrv_addr 'a:9876;b:9876', tls 'verify-full', tls_root_cert '/etc/ssl/rmq-ca.pem');
--   CREATE USER MAPPING FOR app SERVER prod OPTIONS (access_key 'app', secret_key '...');
CREATE FUNCTION rmq_fdw_validator(text[], oid) RETURNS void
AS 'MODULE_PATHNAME', 'rmq_fdw_validator'
LANGUAGE C STRICT;
CREATE FOREIGN DATA WRAPPER rocketmq_stream VALIDATOR rmq_fdw_validator;

-- Does this server exist, belong to rocketmq_stream and may the caller use it?
CREATE FUNCTION rmq_check_server(server text) RETURNS void
AS 'MODULE_PATHNAME', 'rmq_check_server'
LANGUAGE C STRICT;

-- Reading from or writing to the broker is not for every role.
REVOKE ALL ON FUNCTION rmq_queues(text, jsonb), rmq_create_rdd(text, rmq_offset_range[], jsonb),
    rmq_offset_for_time(text, text, integer, timestamptz, jsonb),
    rmq_broker_offsets(text, text, jsonb), rmq_commit_offsets(text, rmq_offset_range[], jsonb),
    rmq_send(text, bytea, text, text, jsonb, jsonb),
    rmq_send_batch(text, bytea[], text, text[], jsonb, jsonb),
    rmq_create_topic(text, integer, text, jsonb, jsonb) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Streams: background workers that ingest a topic into a table, exactly once.
-- ---------------------------------------------------------------------------

-- A consumer group's offsets live here: the next offset to read per queue.
-- Streams and user code (rmq_commit_offsets) share it; a range may only be
-- committed where the stored offset ends.
CREATE TABLE rmq_offset (
    consumer_group    text    NOT NULL,
    topic             text    NOT NULL,
    broker            text    NOT NULL,
    queue_id          integer NOT NULL,
    next_offset       bigint  NOT NULL CHECK (next_offset >= 0),
    broker_max_offset bigint,              -- as last seen by a stream's worker
    updated_at        timestamptz NOT NULL DEFAULT now(),
    held_by           text,                -- membership: the client id reading it from here now
    PRIMARY KEY (consumer_group, topic, broker, queue_id)
);

-- PostgreSQL's offsets (the source of truth) with the broker's copy beside
-- them, per queue of the topic's route and per stored queue.
CREATE FUNCTION rmq_committed_offsets(consumer_group text, topic text,
                                      options jsonb DEFAULT '{}')
RETURNS TABLE (broker text, queue_id integer, next_offset bigint, broker_offset bigint)
LANGUAGE sql VOLATILE PARALLEL UNSAFE AS $$
    SELECT coalesce(b.broker, o.broker), coalesce(b.queue_id, o.queue_id), o.next_offset, b.broker_offset
    FROM rmq_broker_offsets($1, $2, $3) b
    FULL JOIN (SELECT * FROM rmq_offset WHERE rmq_offset.consumer_group = $1 AND rmq_offset.topic = $2) o
           ON o.broker = b.broker AND o.queue_id = b.queue_id
    ORDER BY 1, 2
$$;
REVOKE ALL ON FUNCTION rmq_committed_offsets(text, text, jsonb) FROM PUBLIC;

-- Generations are never reused, not even by a stream dropped and created
-- again under its name: a worker of the old stream must not take the new
-- one for its own.
CREATE SEQUENCE rmq_stream_generation_seq AS integer;

CREATE TABLE rmq_stream (
    name            text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    topic           text    NOT NULL,
    consumer_group  text    NOT NULL,
    target          text    NOT NULL,      -- qualified table name, resolved every batch
    format          text    NOT NULL DEFAULT 'message' CHECK (format IN ('message', 'json', 'json_columns', 'handler')),
    handler         regprocedure,
    start_from      text    NOT NULL DEFAULT 'earliest'
                    CHECK (start_from IN ('earliest', 'latest', 'timestamp', 'offsets')),
    start_time      timestamptz,
    start_offsets   jsonb,                 -- {"broker-a/0": 42, ...}
    force_specific  boolean NOT NULL DEFAULT false,
    parallelism     integer NOT NULL DEFAULT 1 CHECK (parallelism BETWEEN 1 AND 64),
    queue_map       jsonb,                 -- {"broker-a/0": 0, ...}: queue -> worker
    options         jsonb   NOT NULL DEFAULT '{}',
    state           text    NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'paused', 'failed')),
    generation      integer NOT NULL DEFAULT nextval('rmq_stream_generation_seq'),  -- new on resume/reset/alter: workers restart
    last_error      text,
    last_error_at   timestamptz,
    owner           regrole NOT NULL DEFAULT current_user::regrole,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Columns added since 0.1.0 come last, where ALTER TABLE ... ADD COLUMN
    -- puts them in an upgraded database: both must have one row type.
    state_since     timestamptz NOT NULL DEFAULT now(),
    retrying_since  timestamptz,           -- a worker is retrying since then; NULL: none is
    healthy_since   timestamptz            -- the last recovery from retrying
);

CREATE TABLE rmq_batch (
    id            bigserial PRIMARY KEY,
    stream        text    NOT NULL,
    worker        integer NOT NULL,
    started_at    timestamptz NOT NULL,
    committed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    rows          bigint  NOT NULL,
    bytes         bigint  NOT NULL,
    skipped       integer NOT NULL DEFAULT 0,
    ranges        jsonb   NOT NULL,        -- [{"broker","queue_id","from","until","rows"}]
    end_reason    text    NOT NULL         -- rows | bytes | memory | time | caught_up
);
CREATE INDEX ON rmq_batch (stream, id);

CREATE TABLE rmq_dead_letter (
    id            bigserial PRIMARY KEY,
    stream        text    NOT NULL,
    topic         text    NOT NULL,
    broker        text    NOT NULL,
    queue_id      integer NOT NULL,
    queue_offset  bigint  NOT NULL,
    msg_id        text,
    unique_key    text,
    tags          text,
    keys          text,
    body          bytea,                   -- NULL when the policy was 'skip'
    properties    jsonb,
    error         text    NOT NULL,
    policy        text    NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    properties_raw bytea                   -- set when properties could not be kept exactly as text
);

-- pg_dump keeps what users created, and the offsets.
SELECT pg_catalog.pg_extension_config_dump('rmq_stream', '');
SELECT pg_catalog.pg_extension_config_dump('rmq_offset', '');
SELECT pg_catalog.pg_extension_config_dump('rmq_dead_letter', '');
-- and where the dead letters' ids stand: a restored database must not hand
-- out an id it restored (rmq_batch is not dumped, its ids start again).
SELECT pg_catalog.pg_extension_config_dump('rmq_dead_letter_id_seq', '');
-- and where generations stand: a restored stream must not meet one again.
SELECT pg_catalog.pg_extension_config_dump('rmq_stream_generation_seq', '');

CREATE FUNCTION rmq_check_preloaded() RETURNS void
AS 'MODULE_PATHNAME', 'rmq_check_preloaded' LANGUAGE C;

-- Validates options and start position; the workers re-check at run time.
CREATE FUNCTION rmq_check_stream_options(options jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    k text;
    known text[] := ARRAY['batch_rows', 'batch_bytes', 'batch_interval', 'batch_linger', 'max_rate_per_queue',
                          'pull_batch_size', 'pull_timeout', 'request_timeout', 'tag_filter',
                          'fail_on_data_loss', 'auto_commit', 'on_error', 'server', 'namesrv_addr', 'check_crc',
                          'synchronous_commit', 'membership', 'json_paths'];
BEGIN
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'stream options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(options) LOOP
        IF NOT k = ANY (known) THEN
            RAISE EXCEPTION 'unrecognized stream option "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Valid options are ' || array_to_string(known, ', ') || '.';
        END IF;
    END LOOP;
    IF options ? 'synchronous_commit' AND (jsonb_typeof(options->'synchronous_commit') <> 'string' OR
       NOT options->>'synchronous_commit' IN ('on', 'off', 'local', 'remote_write', 'remote_apply')) THEN
        RAISE EXCEPTION 'synchronous_commit must be on, off, local, remote_write or remote_apply'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF options ? 'server' AND options ? 'namesrv_addr' THEN
        RAISE EXCEPTION 'stream options "server" and "namesrv_addr" cannot both be given'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A server names its own name servers.';
    END IF;
    IF options ? 'server' THEN
        IF jsonb_typeof(options->'server') <> 'string' THEN
            RAISE EXCEPTION 'stream option "server" must be a string' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM rmq_check_server(options->>'server');
    END IF;
    IF options ? 'membership' AND (jsonb_typeof(options->'membership') <> 'string' OR
       NOT options->>'membership' IN ('none', 'group')) THEN
        RAISE EXCEPTION 'stream option "membership" must be none or group' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'With group, the stream is a member of its consumer group and reads the share of the queues the group gives it.';
    END IF;
    IF options->>'membership' = 'group' AND options ? 'auto_commit' AND options->'auto_commit' = 'false'::jsonb THEN
        RAISE EXCEPTION 'a stream with "membership": "group" needs auto_commit' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The offsets it commits to the broker are where the next member to read a queue starts.';
    END IF;
    IF options ? 'on_error' AND NOT options->>'on_error' IN ('fail', 'skip', 'dead_letter') THEN
        RAISE EXCEPTION 'on_error must be fail, skip or dead_letter' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH k IN ARRAY ARRAY['batch_rows', 'batch_bytes', 'batch_interval', 'batch_linger', 'max_rate_per_queue',
                             'pull_batch_size', 'pull_timeout', 'request_timeout'] LOOP
        IF options ? k AND (jsonb_typeof(options->k) <> 'number' OR (options->>k)::numeric < 0
                            OR (options->>k)::numeric <> trunc((options->>k)::numeric)) THEN
            RAISE EXCEPTION 'stream option "%" must be a non-negative integer', k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOREACH k IN ARRAY ARRAY['fail_on_data_loss', 'auto_commit', 'check_crc'] LOOP
        IF options ? k AND jsonb_typeof(options->k) <> 'boolean' THEN
            RAISE EXCEPTION 'stream option "%" must be a boolean', k USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
END $$;

-- What membership of the group rules out: the group decides who reads which
-- queue, and where a queue taken over starts.
CREATE FUNCTION rmq_check_stream_shape(options jsonb, queue_map jsonb, force_specific boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF options->>'membership' = 'group' AND queue_map IS NOT NULL THEN
        RAISE EXCEPTION 'a stream with "membership": "group" cannot have a queue_map'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The group shares the queues out among its members, as Java consumers do.';
    END IF;
    IF options->>'membership' = 'group' AND force_specific THEN
        RAISE EXCEPTION 'a stream with "membership": "group" cannot use force_specific'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A member starts a queue it takes over where the group''s offset on the broker says.';
    END IF;
END $$;

-- Tables a stream can write exactly once (not foreign, not Citus-distributed).
CREATE FUNCTION rmq_check_target(target regclass) RETURNS void
AS 'MODULE_PATHNAME', 'rmq_check_target' LANGUAGE C STRICT;

-- Format json_columns: json_paths only with it; its columns are the
-- target's, its paths parse, the target's standard columns have their types.
CREATE FUNCTION rmq_check_json_columns(target regclass, format text, options jsonb) RETURNS void
AS 'MODULE_PATHNAME', 'rmq_check_json_columns' LANGUAGE C;

-- Returns the new stream's row: its defaults filled in, its owner.
CREATE FUNCTION rmq_create_stream(name text, topic text, consumer_group text, target regclass,
                                  start_from text DEFAULT 'earliest',
                                  start_time timestamptz DEFAULT NULL,
                                  start_offsets jsonb DEFAULT NULL,
                                  force_specific boolean DEFAULT false,
                                  format text DEFAULT 'message',
                                  handler regprocedure DEFAULT NULL,
                                  parallelism integer DEFAULT 1,
                                  queue_map jsonb DEFAULT NULL,
                                  options jsonb DEFAULT '{}')
RETURNS rmq_stream
LANGUAGE plpgsql AS $$
DECLARE
    tname text;
    s rmq_stream;
BEGIN
    PERFORM rmq_check_preloaded();
    PERFORM rmq_check_stream_options(coalesce(options, '{}'));
    IF start_from = 'timestamp' AND start_time IS NULL THEN
        RAISE EXCEPTION 'start_from => ''timestamp'' needs start_time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT isfinite(start_time) THEN
        RAISE EXCEPTION 'start_time must be a finite time, not %', start_time
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF start_from = 'offsets' AND (start_offsets IS NULL OR jsonb_typeof(start_offsets) <> 'object') THEN
        RAISE EXCEPTION 'start_from => ''offsets'' needs start_offsets, e.g. {"broker-a/0": 42}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF format = 'handler' AND handler IS NULL THEN
        RAISE EXCEPTION 'format => ''handler'' needs a handler function' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The handler takes (rmq_message[], rmq_offset_range[]) and is called once per batch.';
    END IF;
    IF format <> 'handler' AND handler IS NOT NULL THEN
        RAISE EXCEPTION 'a handler needs format => ''handler''' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM rmq_check_stream_shape(coalesce(options, '{}'), queue_map, force_specific);
    -- The owner must be able to write the target, now and at every batch.
    IF NOT has_table_privilege(target, 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table %', target USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF format <> 'handler' THEN
        PERFORM rmq_check_target(target);
    END IF;
    PERFORM rmq_check_json_columns(target, format, coalesce(options, '{}'));
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) INTO tname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
    INSERT INTO rmq_stream (name, topic, consumer_group, target, format, handler, start_from, start_time,
                            start_offsets, force_specific, parallelism, queue_map, options)
    VALUES (name, topic, consumer_group, tname, format, handler, start_from, start_time,
            start_offsets, force_specific, parallelism, queue_map, coalesce(options, '{}'))
    RETURNING * INTO s;
    RETURN s;
END $$;

CREATE FUNCTION rmq_stream_set_state(stream_name text, new_state text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rmq_stream SET state = new_state,
        generation = CASE WHEN new_state = 'running' THEN nextval('rmq_stream_generation_seq') ELSE generation END,
        last_error = CASE WHEN new_state = 'running' THEN NULL ELSE last_error END,
        state_since = CASE WHEN state IS DISTINCT FROM new_state THEN now() ELSE state_since END,
        retrying_since = NULL
    WHERE name = stream_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" does not exist', stream_name USING ERRCODE = 'undefined_object';
    END IF;
END $$;

CREATE FUNCTION rmq_pause_stream(name text) RETURNS void
LANGUAGE sql AS $$ SELECT rmq_stream_set_state(name, 'paused') $$;

-- Also how a failed stream is resumed once its cause is fixed: from exactly
-- its stored offsets.
CREATE FUNCTION rmq_resume_stream(name text) RETURNS void
LANGUAGE sql AS $$ SELECT rmq_stream_set_state(name, 'running') $$;

CREATE FUNCTION rmq_drop_stream(name text, drop_offsets boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s rmq_stream;
BEGIN
    DELETE FROM rmq_stream WHERE rmq_stream.name = rmq_drop_stream.name RETURNING * INTO s;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    IF drop_offsets THEN
        DELETE FROM rmq_offset o WHERE o.consumer_group = s.consumer_group AND o.topic = s.topic;
    END IF;
END $$;

-- Start again from a new position: forgets the stored offsets of the
-- stream's group for its topic.  Workers in the middle of a batch lose it
-- (their transaction sees the new generation and aborts).
CREATE FUNCTION rmq_reset_stream(name text, start_from text DEFAULT 'earliest',
                                 start_time timestamptz DEFAULT NULL,
                                 start_offsets jsonb DEFAULT NULL,
                                 force_specific boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s rmq_stream;
BEGIN
    IF NOT isfinite(rmq_reset_stream.start_time) THEN
        RAISE EXCEPTION 'start_time must be a finite time, not %', rmq_reset_stream.start_time
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE rmq_stream SET start_from = rmq_reset_stream.start_from,
                          start_time = rmq_reset_stream.start_time,
                          start_offsets = rmq_reset_stream.start_offsets,
                          force_specific = rmq_reset_stream.force_specific,
                          generation = nextval('rmq_stream_generation_seq'), last_error = NULL, retrying_since = NULL,
                          state_since = CASE WHEN state = 'failed' THEN now() ELSE state_since END,
                          state = CASE WHEN state = 'failed' THEN 'running' ELSE state END
    WHERE rmq_stream.name = rmq_reset_stream.name RETURNING * INTO s;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    DELETE FROM rmq_offset o WHERE o.consumer_group = s.consumer_group AND o.topic = s.topic;
END $$;

-- Change a stream's options (merged into the present ones; a JSON null
-- removes one).  Its workers restart with them at their stored offsets; the
-- state is kept, so a failed stream is resumed separately, e.g. after
-- accepting data loss with {"fail_on_data_loss": false}.
CREATE FUNCTION rmq_alter_stream(name text, options jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    merged jsonb;
    fmt text;
    tgt regclass;
BEGIN
    IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'stream options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT jsonb_strip_nulls(s.options || rmq_alter_stream.options), s.format, to_regclass(s.target)
    INTO merged, fmt, tgt
    FROM rmq_stream s WHERE s.name = rmq_alter_stream.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM rmq_check_stream_options(merged);
    PERFORM rmq_check_stream_shape(merged, s.queue_map, s.force_specific)
    FROM rmq_stream s WHERE s.name = rmq_alter_stream.name;
    PERFORM rmq_check_json_columns(tgt, fmt, merged);
    UPDATE rmq_stream s SET options = merged, generation = nextval('rmq_stream_generation_seq')
    WHERE s.name = rmq_alter_stream.name;
END $$;

-- What a DBA looks at first comes first: which stream and queue, is it
-- healthy, how far behind, how fast.  health is the stream's: running
-- streams are 'healthy' or 'retrying' (a worker hit trouble it retries:
-- broker or name server away, a lost race), else the state.
CREATE VIEW rmq_stream_status WITH (security_invoker = true) AS
SELECT s.name AS stream, o.broker, o.queue_id,
       CASE WHEN s.state <> 'running' THEN s.state
            WHEN s.retrying_since IS NOT NULL THEN 'retrying'
            ELSE 'healthy' END AS health,
       greatest(o.broker_max_offset - o.next_offset, 0) AS lag,
       r.rate AS messages_per_sec,
       o.updated_at AS last_batch_at,
       o.next_offset, o.broker_max_offset,
       coalesce(o.topic, s.topic) AS topic, s.consumer_group, s.state,
       CASE WHEN s.state <> 'running' THEN s.state_since
            WHEN s.retrying_since IS NOT NULL THEN s.retrying_since
            ELSE greatest(s.healthy_since, s.state_since) END AS health_since,
       s.last_error, s.last_error_at, o.held_by AS member
FROM rmq_stream s
-- A member of its group shows the queues it reads now, of the topic and
-- of the group's retry topic.
LEFT JOIN rmq_offset o ON o.consumer_group = s.consumer_group
    AND CASE WHEN s.options->>'membership' = 'group'
             THEN o.topic IN (s.topic, '%RETRY%' || s.consumer_group) AND s.state = 'running'
                  AND split_part(o.held_by, ':', 3) = s.name  -- host@pgSYSID:db:stream:worker
             ELSE o.topic = s.topic END
LEFT JOIN LATERAL (
    SELECT round(coalesce(sum(b.rows), 0) / 60.0, 1) AS rate
    FROM rmq_batch b WHERE b.stream = s.name AND b.committed_at > now() - interval '1 minute'
) r ON true;

-- The message row a handler receives (same columns as rmq_create_rdd).
CREATE TYPE rmq_message AS (
    topic text, broker text, queue_id integer, queue_offset bigint, msg_id text, unique_key text,
    keys text[], tags text, body bytea, properties jsonb, born_timestamp timestamptz, born_host text,
    store_timestamp timestamptz, store_host text, reconsume_times integer, properties_raw bytea
);

-- Any role may run streams of its own: it sees and changes the streams it
-- owns (or is a member of the owner of), and their batches and dead
-- letters; its workers run as it.  A consumer group's offsets are shared
-- by every role of the database, as the group itself is on the broker.
GRANT SELECT, INSERT, UPDATE, DELETE ON rmq_stream, rmq_offset TO PUBLIC;
GRANT SELECT, INSERT, DELETE ON rmq_batch, rmq_dead_letter TO PUBLIC;
GRANT USAGE ON SEQUENCE rmq_batch_id_seq, rmq_dead_letter_id_seq, rmq_stream_generation_seq TO PUBLIC;
GRANT SELECT ON rmq_stream_status TO PUBLIC;
ALTER TABLE rmq_stream ENABLE ROW LEVEL SECURITY;
CREATE POLICY rmq_stream_owner ON rmq_stream
    USING (pg_catalog.pg_has_role(current_user, owner, 'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role(current_user, owner, 'USAGE'));
ALTER TABLE rmq_batch ENABLE ROW LEVEL SECURITY;
CREATE POLICY rmq_batch_owner ON rmq_batch
    USING (EXISTS (SELECT 1 FROM rmq_stream s WHERE s.name = stream))
    WITH CHECK (EXISTS (SELECT 1 FROM rmq_stream s WHERE s.name = stream));
ALTER TABLE rmq_dead_letter ENABLE ROW LEVEL SECURITY;
CREATE POLICY rmq_dead_letter_owner ON rmq_dead_letter
    USING (EXISTS (SELECT 1 FROM rmq_stream s WHERE s.name = stream))
    WITH CHECK (EXISTS (SELECT 1 FROM rmq_stream s WHERE s.name = stream));

-- ---------------------------------------------------------------------------
-- What each object is for, as \df+, \dt+ and \dv+ show it.  Kept together
-- and identical in the install and upgrade scripts.
-- ---------------------------------------------------------------------------
COMMENT ON TYPE rmq_offset_range IS
    'The range [from_offset, until_offset) of one queue of a topic; offsets are "next offset to read".';
COMMENT ON TYPE rmq_message IS
    'A message as a stream''s handler receives it: the columns of rmq_create_rdd.';
COMMENT ON FUNCTION rmq_offset_range(text, text, integer, bigint, bigint) IS
    'Builds the range [from_offset, until_offset) of one queue; rejects negative offsets and from > until.';
COMMENT ON FUNCTION rmq_queues(text, jsonb) IS
    'Every readable queue of a topic with the broker''s current min and max offsets.';
COMMENT ON FUNCTION rmq_create_rdd(text, rmq_offset_range[], jsonb) IS
    'Reads exactly the messages in the given offset ranges, like Spark''s createRDD.';
COMMENT ON FUNCTION rmq_offset_for_time(text, text, integer, timestamptz, jsonb) IS
    'The first offset of a queue whose store time is at or after the given time.';
COMMENT ON FUNCTION rmq_broker_offsets(text, text, jsonb) IS
    'A consumer group''s offsets as committed on the broker, per queue of the topic.';
COMMENT ON FUNCTION rmq_commit_offsets(text, rmq_offset_range[], jsonb) IS
    'Records ranges in rmq_offset in this transaction, each starting where the stored offset ends, and commits them to the broker after COMMIT.';
COMMENT ON FUNCTION rmq_send(text, bytea, text, text, jsonb, jsonb) IS
    'Sends one message and returns its message id.';
COMMENT ON FUNCTION rmq_send_batch(text, bytea[], text, text[], jsonb, jsonb) IS
    'Sends messages as one batch to one queue and returns their message ids.';
COMMENT ON FUNCTION rmq_create_topic(text, integer, text, jsonb, jsonb) IS
    'Creates or updates a topic, with its attributes, on every master broker or one; returns how many brokers.';
COMMENT ON FUNCTION rmq_fdw_validator(text[], oid) IS
    'Checks the options of foreign servers and user mappings of the rocketmq_stream wrapper.';
COMMENT ON FUNCTION rmq_check_server(text) IS
    'Raises an error unless the server exists, belongs to the rocketmq_stream wrapper and the caller may use it.';
COMMENT ON FUNCTION rmq_committed_offsets(text, text, jsonb) IS
    'Per queue, a consumer group''s offset stored in PostgreSQL (rmq_offset) beside the one committed on the broker.';
COMMENT ON FUNCTION rmq_check_preloaded() IS
    'Raises an error unless rocketmq_stream is preloaded and this is the database of its launcher.';
COMMENT ON FUNCTION rmq_check_stream_options(jsonb) IS
    'Raises an error naming the first unknown or malformed stream option.';
COMMENT ON FUNCTION rmq_check_stream_shape(jsonb, jsonb, boolean) IS
    'Raises an error when a stream that is a member of its consumer group also has a queue_map or force_specific.';
COMMENT ON FUNCTION rmq_check_json_columns(regclass, text, jsonb) IS
    'Raises an error unless a stream of this format and these options (json_paths) can write to the target.';
COMMENT ON FUNCTION rmq_check_target(regclass) IS
    'Raises an error for a table a stream cannot write exactly once: a foreign table, one with a foreign partition, a Citus distributed table.';
COMMENT ON FUNCTION rmq_create_stream(text, text, text, regclass, text, timestamptz, jsonb, boolean, text,
                                      regprocedure, integer, jsonb, jsonb) IS
    'Creates a running stream that ingests a topic into a table exactly once; returns its row of rmq_stream.';
COMMENT ON FUNCTION rmq_stream_set_state(text, text) IS
    'Sets a stream''s state for rmq_pause_stream and rmq_resume_stream; running restarts its workers.';
COMMENT ON FUNCTION rmq_pause_stream(text) IS
    'Stops a stream''s workers; its stored offsets stay.';
COMMENT ON FUNCTION rmq_resume_stream(text) IS
    'Restarts a paused or failed stream from exactly its stored offsets.';
COMMENT ON FUNCTION rmq_drop_stream(text, boolean) IS
    'Removes a stream and stops its workers; its group''s offsets stay unless drop_offsets.';
COMMENT ON FUNCTION rmq_reset_stream(text, text, timestamptz, jsonb, boolean) IS
    'Forgets a stream''s stored offsets and starts it again from a new position.';
COMMENT ON FUNCTION rmq_alter_stream(text, jsonb) IS
    'Merges options into a stream''s options; its workers restart with them from the stored offsets.';
COMMENT ON TABLE rmq_offset IS
    'The next offset to read per consumer group, topic and queue: the source of truth of streams and rmq_commit_offsets.';
COMMENT ON TABLE rmq_stream IS
    'The streams: definition, state and health, last error, owner.';
COMMENT ON TABLE rmq_batch IS
    'The last 1000 committed micro-batches of each stream: ranges, rows, bytes, timings, end reason.';
COMMENT ON TABLE rmq_dead_letter IS
    'Messages a stream set aside under on_error skip or dead_letter, with where they were and why.';
COMMENT ON VIEW rmq_stream_status IS
    'Per stream and queue (for a member of its group: the queues it reads now): health, lag, rate, offsets, state, last error, member client id.';
COMMENT ON FOREIGN DATA WRAPPER rocketmq_stream IS
    'RocketMQ clusters as foreign servers (name servers, TLS) with user mappings (access and secret keys).';
