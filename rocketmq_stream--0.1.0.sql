-- rocketmq_stream 0.1.0
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
    reconsume_times  integer
)
AS 'MODULE_PATHNAME', 'rmq_create_rdd'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

CREATE FUNCTION rmq_offset_for_time(topic text, broker text, queue_id integer,
                                    "time" timestamptz, options jsonb DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'rmq_offset_for_time'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION rmq_committed_offsets(consumer_group text, topic text,
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
                                 broker text DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS integer
AS 'MODULE_PATHNAME', 'rmq_create_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Reading from or writing to the broker is not for every role.
REVOKE ALL ON FUNCTION rmq_queues(text, jsonb), rmq_create_rdd(text, rmq_offset_range[], jsonb),
    rmq_offset_for_time(text, text, integer, timestamptz, jsonb),
    rmq_committed_offsets(text, text, jsonb), rmq_commit_offsets(text, rmq_offset_range[], jsonb),
    rmq_send(text, bytea, text, text, jsonb, jsonb),
    rmq_send_batch(text, bytea[], text, text[], jsonb, jsonb),
    rmq_create_topic(text, integer, text, jsonb) FROM PUBLIC;
