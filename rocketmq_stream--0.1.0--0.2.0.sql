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
