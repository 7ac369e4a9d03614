-- The tables, the view and the composite types column by column: name,
-- type, NOT NULL, default, and order (a table's row type is what
-- rmq_create_stream returns and SELECT * shows: an upgraded database must
-- have the same order as a fresh one); keys, checks and indexes.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET search_path = public, tap;
BEGIN;
SELECT * FROM no_plan();

CREATE TEMP TABLE col (ord serial, rel name, col name, type text, not_null boolean, dflt text);
INSERT INTO col (rel, col, type, not_null, dflt) VALUES
('rmq_offset_range', 'topic', 'text', false, NULL),
('rmq_offset_range', 'broker', 'text', false, NULL),
('rmq_offset_range', 'queue_id', 'integer', false, NULL),
('rmq_offset_range', 'from_offset', 'bigint', false, NULL),
('rmq_offset_range', 'until_offset', 'bigint', false, NULL),
('rmq_message', 'topic', 'text', false, NULL),
('rmq_message', 'broker', 'text', false, NULL),
('rmq_message', 'queue_id', 'integer', false, NULL),
('rmq_message', 'queue_offset', 'bigint', false, NULL),
('rmq_message', 'msg_id', 'text', false, NULL),
('rmq_message', 'unique_key', 'text', false, NULL),
('rmq_message', 'keys', 'text[]', false, NULL),
('rmq_message', 'tags', 'text', false, NULL),
('rmq_message', 'body', 'bytea', false, NULL),
('rmq_message', 'properties', 'jsonb', false, NULL),
('rmq_message', 'born_timestamp', 'timestamp with time zone', false, NULL),
('rmq_message', 'born_host', 'text', false, NULL),
('rmq_message', 'store_timestamp', 'timestamp with time zone', false, NULL),
('rmq_message', 'store_host', 'text', false, NULL),
('rmq_message', 'reconsume_times', 'integer', false, NULL),
('rmq_message', 'properties_raw', 'bytea', false, NULL),
('rmq_offset', 'consumer_group', 'text', true, NULL),
('rmq_offset', 'topic', 'text', true, NULL),
('rmq_offset', 'broker', 'text', true, NULL),
('rmq_offset', 'queue_id', 'integer', true, NULL),
('rmq_offset', 'next_offset', 'bigint', true, NULL),
('rmq_offset', 'broker_max_offset', 'bigint', false, NULL),
('rmq_offset', 'updated_at', 'timestamp with time zone', true, 'now()'),
('rmq_offset', 'held_by', 'text', false, NULL),
('rmq_stream', 'name', 'text', true, NULL),
('rmq_stream', 'topic', 'text', true, NULL),
('rmq_stream', 'consumer_group', 'text', true, NULL),
('rmq_stream', 'target', 'text', true, NULL),
('rmq_stream', 'format', 'text', true, '''message''::text'),
('rmq_stream', 'handler', 'regprocedure', false, NULL),
('rmq_stream', 'start_from', 'text', true, '''earliest''::text'),
('rmq_stream', 'start_time', 'timestamp with time zone', false, NULL),
('rmq_stream', 'start_offsets', 'jsonb', false, NULL),
('rmq_stream', 'force_specific', 'boolean', true, 'false'),
('rmq_stream', 'parallelism', 'integer', true, '1'),
('rmq_stream', 'queue_map', 'jsonb', false, NULL),
('rmq_stream', 'options', 'jsonb', true, '''{}''::jsonb'),
('rmq_stream', 'state', 'text', true, '''running''::text'),
('rmq_stream', 'generation', 'integer', true, 'nextval(''rmq_stream_generation_seq''::regclass)'),
('rmq_stream', 'last_error', 'text', false, NULL),
('rmq_stream', 'last_error_at', 'timestamp with time zone', false, NULL),
('rmq_stream', 'owner', 'regrole', true, '(CURRENT_USER)::regrole'),
('rmq_stream', 'created_at', 'timestamp with time zone', true, 'now()'),
('rmq_stream', 'state_since', 'timestamp with time zone', true, 'now()'),
('rmq_stream', 'retrying_since', 'timestamp with time zone', false, NULL),
('rmq_stream', 'healthy_since', 'timestamp with time zone', false, NULL),
('rmq_batch', 'id', 'bigint', true, 'nextval(''rmq_batch_id_seq''::regclass)'),
('rmq_batch', 'stream', 'text', true, NULL),
('rmq_batch', 'worker', 'integer', true, NULL),
('rmq_batch', 'started_at', 'timestamp with time zone', true, NULL),
('rmq_batch', 'committed_at', 'timestamp with time zone', true, 'clock_timestamp()'),
('rmq_batch', 'rows', 'bigint', true, NULL),
('rmq_batch', 'bytes', 'bigint', true, NULL),
('rmq_batch', 'skipped', 'integer', true, '0'),
('rmq_batch', 'ranges', 'jsonb', true, NULL),
('rmq_batch', 'end_reason', 'text', true, NULL),
('rmq_dead_letter', 'id', 'bigint', true, 'nextval(''rmq_dead_letter_id_seq''::regclass)'),
('rmq_dead_letter', 'stream', 'text', true, NULL),
('rmq_dead_letter', 'topic', 'text', true, NULL),
('rmq_dead_letter', 'broker', 'text', true, NULL),
('rmq_dead_letter', 'queue_id', 'integer', true, NULL),
('rmq_dead_letter', 'queue_offset', 'bigint', true, NULL),
('rmq_dead_letter', 'msg_id', 'text', false, NULL),
('rmq_dead_letter', 'unique_key', 'text', false, NULL),
('rmq_dead_letter', 'tags', 'text', false, NULL),
('rmq_dead_letter', 'keys', 'text', false, NULL),
('rmq_dead_letter', 'body', 'bytea', false, NULL),
('rmq_dead_letter', 'properties', 'jsonb', false, NULL),
('rmq_dead_letter', 'error', 'text', true, NULL),
('rmq_dead_letter', 'policy', 'text', true, NULL),
('rmq_dead_letter', 'at', 'timestamp with time zone', true, 'now()'),
('rmq_dead_letter', 'properties_raw', 'bytea', false, NULL),
('rmq_stream_status', 'stream', 'text', false, NULL),
('rmq_stream_status', 'broker', 'text', false, NULL),
('rmq_stream_status', 'queue_id', 'integer', false, NULL),
('rmq_stream_status', 'health', 'text', false, NULL),
('rmq_stream_status', 'lag', 'bigint', false, NULL),
('rmq_stream_status', 'messages_per_sec', 'numeric', false, NULL),
('rmq_stream_status', 'last_batch_at', 'timestamp with time zone', false, NULL),
('rmq_stream_status', 'next_offset', 'bigint', false, NULL),
('rmq_stream_status', 'broker_max_offset', 'bigint', false, NULL),
('rmq_stream_status', 'topic', 'text', false, NULL),
('rmq_stream_status', 'consumer_group', 'text', false, NULL),
('rmq_stream_status', 'state', 'text', false, NULL),
('rmq_stream_status', 'health_since', 'timestamp with time zone', false, NULL),
('rmq_stream_status', 'last_error', 'text', false, NULL),
('rmq_stream_status', 'last_error_at', 'timestamp with time zone', false, NULL),
('rmq_stream_status', 'member', 'text', false, NULL);

SELECT columns_are('public', rel, array_agg(col ORDER BY ord)) FROM col GROUP BY rel ORDER BY min(ord);
SELECT is(ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = format('public.%I', rel)::regclass
                  AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
          array_agg(col ORDER BY ord), rel || ': column order')
FROM col GROUP BY rel ORDER BY min(ord);
SELECT col_type_is('public', rel, col, type, format('%s.%s is %s', rel, col, type)) FROM col ORDER BY ord;
SELECT CASE WHEN not_null THEN col_not_null('public', rel, col, format('%s.%s NOT NULL', rel, col))
            ELSE col_is_null('public', rel, col, format('%s.%s may be NULL', rel, col)) END
FROM col WHERE rel IN ('rmq_offset', 'rmq_stream', 'rmq_batch', 'rmq_dead_letter') ORDER BY ord;
SELECT CASE WHEN dflt IS NULL THEN col_hasnt_default('public', rel, col, format('%s.%s has no default', rel, col))
            ELSE is((SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
                     JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                     WHERE d.adrelid = format('public.%I', rel)::regclass AND a.attname = col),
                    dflt, format('%s.%s defaults to %s', rel, col, dflt)) END
FROM col WHERE rel IN ('rmq_offset', 'rmq_stream', 'rmq_batch', 'rmq_dead_letter') ORDER BY ord;

SELECT col_is_pk('public', 'rmq_offset', ARRAY['consumer_group', 'topic', 'broker', 'queue_id'], 'rmq_offset: a row per group, topic and queue');
SELECT col_is_pk('public', 'rmq_stream', ARRAY['name'], 'rmq_stream: primary key name');
SELECT col_is_pk('public', 'rmq_batch', ARRAY['id'], 'rmq_batch: primary key id');
SELECT col_is_pk('public', 'rmq_dead_letter', ARRAY['id'], 'rmq_dead_letter: primary key id');
SELECT indexes_are('public', 'rmq_batch', ARRAY['rmq_batch_pkey', 'rmq_batch_stream_id_idx']);
SELECT is((SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexname = 'rmq_batch_stream_id_idx'),
          'CREATE INDEX rmq_batch_stream_id_idx ON public.rmq_batch USING btree (stream, id)',
          'rmq_batch: the last batches of a stream are found by (stream, id)');
SELECT indexes_are('public', 'rmq_offset', ARRAY['rmq_offset_pkey']);
SELECT indexes_are('public', 'rmq_stream', ARRAY['rmq_stream_pkey']);
SELECT indexes_are('public', 'rmq_dead_letter', ARRAY['rmq_dead_letter_pkey']);
SELECT is(ARRAY(SELECT conrelid::regclass::text || ': ' || pg_get_constraintdef(oid) FROM pg_constraint
                WHERE connamespace = 'public'::regnamespace AND contype = 'c'
                ORDER BY conrelid::regclass::text || ': ' || pg_get_constraintdef(oid) COLLATE "C"),
          ARRAY['rmq_offset: CHECK ((next_offset >= 0))',
                'rmq_stream: CHECK (((parallelism >= 1) AND (parallelism <= 64)))',
                'rmq_stream: CHECK ((format = ANY (ARRAY[''message''::text, ''json''::text, ''json_columns''::text, ''handler''::text])))',
                'rmq_stream: CHECK ((name ~ ''^[A-Za-z0-9_.-]{1,63}$''::text))',
                'rmq_stream: CHECK ((start_from = ANY (ARRAY[''earliest''::text, ''latest''::text, ''timestamp''::text, ''offsets''::text])))',
                'rmq_stream: CHECK ((state = ANY (ARRAY[''running''::text, ''paused''::text, ''failed''::text])))'],
          'the check constraints');

SELECT * FROM finish();
ROLLBACK;
