-- What the extension consists of: exactly these functions, tables, views,
-- types, sequences and wrapper in its schema, all members of it, and the
-- tables pg_dump keeps the contents of.  An object added to the install
-- script must be added here (and to the upgrade script: run-pgtap.sh runs
-- these files against an updated 0.1.0 too).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET search_path = public, tap;
BEGIN;
SELECT * FROM no_plan();

SELECT has_extension('rocketmq_stream');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'rocketmq_stream'), '0.2.0', 'version 0.2.0');
SELECT is((SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'rocketmq_stream'),
          'public', 'installed in schema public');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'rocketmq_stream'), false,
          'not relocatable: workers find their tables by the extension''s schema');

SELECT functions_are('public', ARRAY[
    'rmq_offset_range', 'rmq_queues', 'rmq_create_rdd', 'rmq_offset_for_time', 'rmq_broker_offsets',
    'rmq_commit_offsets', 'rmq_send', 'rmq_send_batch', 'rmq_create_topic', 'rmq_fdw_validator',
    'rmq_check_server', 'rmq_committed_offsets', 'rmq_check_preloaded', 'rmq_check_stream_options',
    'rmq_check_stream_shape', 'rmq_check_target', 'rmq_check_json_columns', 'rmq_create_stream', 'rmq_stream_set_state', 'rmq_pause_stream', 'rmq_resume_stream',
    'rmq_drop_stream', 'rmq_reset_stream', 'rmq_alter_stream']);
SELECT tables_are('public', ARRAY['rmq_offset', 'rmq_stream', 'rmq_batch', 'rmq_dead_letter']);
SELECT views_are('public', ARRAY['rmq_stream_status']);
SELECT types_are('public', ARRAY['rmq_offset_range', 'rmq_message']);
SELECT sequences_are('public', ARRAY['rmq_batch_id_seq', 'rmq_dead_letter_id_seq', 'rmq_stream_generation_seq']);
SELECT has_composite('public', 'rmq_offset_range', 'composite type rmq_offset_range');
SELECT has_composite('public', 'rmq_message', 'composite type rmq_message');

-- The wrapper: servers and user mappings only, never foreign tables.
SELECT is((SELECT fdwvalidator::regproc::text || ' ' || fdwhandler::text
           FROM pg_foreign_data_wrapper WHERE fdwname = 'rocketmq_stream'),
          'rmq_fdw_validator 0', 'foreign-data wrapper rocketmq_stream: validator rmq_fdw_validator, no handler');

-- Every object of the schema belongs to the extension (and nothing else
-- does): DROP EXTENSION removes it all, pg_dump leaves it to CREATE EXTENSION.
SELECT is(ARRAY(
    SELECT pg_describe_object(classid, objid, 0) FROM pg_depend
    WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'rocketmq_stream')
    ORDER BY pg_describe_object(classid, objid, 0) COLLATE "C"),
    ARRAY[
    'foreign-data wrapper rocketmq_stream',
    'function rmq_alter_stream(text,jsonb)',
    'function rmq_broker_offsets(text,text,jsonb)',
    'function rmq_check_json_columns(regclass,text,jsonb)',
    'function rmq_check_preloaded()',
    'function rmq_check_server(text)',
    'function rmq_check_stream_options(jsonb)',
    'function rmq_check_stream_shape(jsonb,jsonb,boolean)',
    'function rmq_check_target(regclass)',
    'function rmq_commit_offsets(text,rmq_offset_range[],jsonb)',
    'function rmq_committed_offsets(text,text,jsonb)',
    'function rmq_create_rdd(text,rmq_offset_range[],jsonb)',
    'function rmq_create_stream(text,text,text,regclass,text,timestamp with time zone,jsonb,boolean,text,regprocedure,integer,jsonb,jsonb)',
    'function rmq_create_topic(text,integer,text,jsonb,jsonb)',
    'function rmq_drop_stream(text,boolean)',
    'function rmq_fdw_validator(text[],oid)',
    'function rmq_offset_for_time(text,text,integer,timestamp with time zone,jsonb)',
    'function rmq_offset_range(text,text,integer,bigint,bigint)',
    'function rmq_pause_stream(text)',
    'function rmq_queues(text,jsonb)',
    'function rmq_reset_stream(text,text,timestamp with time zone,jsonb,boolean)',
    'function rmq_resume_stream(text)',
    'function rmq_send(text,bytea,text,text,jsonb,jsonb)',
    'function rmq_send_batch(text,bytea[],text,text[],jsonb,jsonb)',
    'function rmq_stream_set_state(text,text)',
    'sequence rmq_batch_id_seq',
    'sequence rmq_dead_letter_id_seq',
    'sequence rmq_stream_generation_seq',
    'table rmq_batch',
    'table rmq_dead_letter',
    'table rmq_offset',
    'table rmq_stream',
    'type rmq_message',
    'type rmq_offset_range',
    'view rmq_stream_status'
    ], 'the extension''s members, exactly');

-- pg_dump keeps the streams, the offsets and the dead letters (whole
-- tables) and where the dead letters' ids stand; the batch log is history
-- and is not dumped.
SELECT is(ARRAY(SELECT c::regclass::text || coalesce(':' || nullif(w, ''), '')
                FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(c, w)
                WHERE e.extname = 'rocketmq_stream' ORDER BY c::regclass::text COLLATE "C"),
          ARRAY['rmq_dead_letter', 'rmq_dead_letter_id_seq', 'rmq_offset', 'rmq_stream', 'rmq_stream_generation_seq'],
          'tables and the sequence marked for pg_dump, whole');

SELECT * FROM finish();
ROLLBACK;
