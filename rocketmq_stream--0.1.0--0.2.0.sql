-- rocketmq_stream 0.1.0 -> 0.2.0
\echo Use "ALTER EXTENSION rocketmq_stream UPDATE TO '0.2.0'" to load this file. \quit

-- Messages whose property text cannot be PostgreSQL text exactly (NUL, bytes
-- that are not UTF-8) keep their stored property string beside it.
DROP FUNCTION rmq_create_rdd(text, rmq_offset_range[], jsonb);
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
REVOKE ALL ON FUNCTION rmq_create_rdd(text, rmq_offset_range[], jsonb) FROM PUBLIC;
ALTER TYPE rmq_message ADD ATTRIBUTE properties_raw bytea;
ALTER TABLE rmq_dead_letter ADD COLUMN properties_raw bytea;

-- Topics with attributes: {"queue.type": "BatchCQ"}, {"message.type": "FIFO"}.
DROP FUNCTION rmq_create_topic(text, integer, text, jsonb);
CREATE FUNCTION rmq_create_topic(topic text, queues integer DEFAULT 8,
                                 broker text DEFAULT NULL, options jsonb DEFAULT '{}',
                                 attributes jsonb DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'rmq_create_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION rmq_create_topic(text, integer, text, jsonb, jsonb) FROM PUBLIC;

-- Format json_columns: a JSON body's values into the target's columns, with
-- the stream option json_paths (column -> JSON path).  As in a fresh 0.2.0.
ALTER TABLE rmq_stream DROP CONSTRAINT rmq_stream_format_check,
    ADD CONSTRAINT rmq_stream_format_check CHECK (format IN ('message', 'json', 'json_columns', 'handler'));
CREATE OR REPLACE FUNCTION rmq_check_stream_options(options jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    k text;
    known text[] := ARRAY['batch_rows', 'batch_bytes', 'batch_interval', 'batch_linger', 'max_rate_per_queue',
                          'pull_batch_size', 'pull_timeout', 'request_timeout', 'tag_filter',
                          'fail_on_data_loss', 'auto_commit', 'on_error', 'server', 'namesrv_addr', 'check_crc',
                          'synchronous_commit', 'json_paths'];
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

CREATE FUNCTION rmq_check_json_columns(target regclass, format text, options jsonb) RETURNS void
AS 'MODULE_PATHNAME', 'rmq_check_json_columns' LANGUAGE C;

CREATE OR REPLACE FUNCTION rmq_create_stream(name text, topic text, consumer_group text, target regclass,
                                  start_from text DEFAULT 'earliest',
                                  start_time timestamptz DEFAULT NULL,
                                  start_offsets jsonb DEFAULT NULL,
                                  force_specific boolean DEFAULT false,
                                  format text DEFAULT 'message',
                                  handler regprocedure DEFAULT NULL,
                                  parallelism integer DEFAULT 1,
                                  queue_map jsonb DEFAULT NULL,
                                  options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tname text;
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
    -- The owner must be able to write the target, now and at every batch.
    IF NOT has_table_privilege(target, 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table %', target USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM rmq_check_json_columns(target, format, coalesce(options, '{}'));
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) INTO tname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
    INSERT INTO rmq_stream (name, topic, consumer_group, target, format, handler, start_from, start_time,
                            start_offsets, force_specific, parallelism, queue_map, options)
    VALUES (name, topic, consumer_group, tname, format, handler, start_from, start_time,
            start_offsets, force_specific, parallelism, queue_map, coalesce(options, '{}'));
END $$;

CREATE OR REPLACE FUNCTION rmq_alter_stream(name text, options jsonb) RETURNS void
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
    PERFORM rmq_check_json_columns(tgt, fmt, merged);
    UPDATE rmq_stream s SET options = merged, generation = generation + 1
    WHERE s.name = rmq_alter_stream.name;
END $$;
