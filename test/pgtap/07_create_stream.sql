-- rmq_create_stream returns the new stream's row, defaults filled in.
-- Streams are made in the launcher's database only (rocketmq_stream.database),
-- so elsewhere these tests are skipped.  The transaction is rolled back:
-- no worker ever starts.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET search_path = public, tap;
BEGIN;
SELECT * FROM no_plan();

SELECT function_returns('public', 'rmq_create_stream',
    '{text,text,text,regclass,text,timestamp with time zone,jsonb,boolean,text,regprocedure,integer,jsonb,jsonb}'::name[],
    'rmq_stream');

CREATE TABLE rmq_pgtap_target (queue_id integer, queue_offset bigint, body bytea);
CREATE TEMP TABLE made AS SELECT * FROM rmq_stream WHERE false;
CREATE TEMP TABLE here AS SELECT current_database() = current_setting('rocketmq_stream.database') AS launcher_db;
DO $$ BEGIN
    IF (SELECT launcher_db FROM here) THEN
        INSERT INTO made SELECT * FROM rmq_create_stream('pgtap_s', 'pgtap_topic', 'pgtap_group', 'rmq_pgtap_target',
                                                         parallelism => 2, options => '{"batch_interval": 100}');
    END IF;
END $$;

SELECT CASE WHEN launcher_db THEN is((SELECT to_jsonb(m) - 'created_at' - 'state_since' FROM made m),
    jsonb_build_object('name', 'pgtap_s', 'topic', 'pgtap_topic', 'consumer_group', 'pgtap_group',
                       'target', 'public.rmq_pgtap_target', 'format', 'message', 'handler', NULL,
                       'start_from', 'earliest', 'start_time', NULL, 'start_offsets', NULL, 'force_specific', false,
                       'parallelism', 2, 'queue_map', NULL, 'options', '{"batch_interval": 100}'::jsonb,
                       'state', 'running', 'generation', currval('rmq_stream_generation_seq'), 'last_error', NULL, 'last_error_at', NULL,
                       'owner', current_user, 'retrying_since', NULL, 'healthy_since', NULL),
    'the returned row: the arguments, the qualified target, defaults, owner')
    ELSE skip('streams are made in the launcher''s database only') END FROM here;
SELECT CASE WHEN launcher_db THEN is((SELECT created_at = now() AND state_since = now() FROM made), true,
    'created_at and state_since: the creating transaction''s time')
    ELSE skip('streams are made in the launcher''s database only') END FROM here;
SELECT CASE WHEN launcher_db THEN is((SELECT to_jsonb(s) FROM rmq_stream s WHERE name = 'pgtap_s'),
    (SELECT to_jsonb(m) FROM made m), 'the returned row is the stored row')
    ELSE skip('streams are made in the launcher''s database only') END FROM here;

SELECT * FROM finish();
ROLLBACK;
