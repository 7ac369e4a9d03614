-- Who may do what.  The functions that talk to a broker are revoked from
-- PUBLIC (a DBA grants EXECUTE); the stream functions are not, as any role
-- may run streams of its own (row-level security: 05_rls.sql).  A plain
-- role has exactly what PUBLIC has.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET search_path = public, tap;
BEGIN;
SELECT * FROM no_plan();

CREATE ROLE rmq_pgtap_plain NOLOGIN;

CREATE TEMP TABLE fn (ord serial, name name, args name[], public_execute boolean);
INSERT INTO fn (name, args, public_execute) VALUES
('rmq_queues', '{text,jsonb}', false),
('rmq_create_rdd', '{text,rmq_offset_range[],jsonb}', false),
('rmq_offset_for_time', '{text,text,integer,timestamp with time zone,jsonb}', false),
('rmq_broker_offsets', '{text,text,jsonb}', false),
('rmq_commit_offsets', '{text,rmq_offset_range[],jsonb}', false),
('rmq_send', '{text,bytea,text,text,jsonb,jsonb}', false),
('rmq_send_batch', '{text,bytea[],text,text[],jsonb,jsonb}', false),
('rmq_create_topic', '{text,integer,text,jsonb,jsonb}', false),
('rmq_committed_offsets', '{text,text,jsonb}', false),
('rmq_offset_range', '{text,text,integer,bigint,bigint}', true),
('rmq_fdw_validator', '{text[],oid}', true),
('rmq_check_server', '{text}', true),
('rmq_check_preloaded', '{}', true),
('rmq_check_stream_options', '{jsonb}', true),
('rmq_check_stream_shape', '{jsonb,jsonb,boolean}', true),
('rmq_check_target', '{regclass}', true),
('rmq_check_json_columns', '{regclass,text,jsonb}', true),
('rmq_create_stream', '{text,text,text,regclass,text,timestamp with time zone,jsonb,boolean,text,regprocedure,integer,jsonb,jsonb}', true),
('rmq_stream_set_state', '{text,text}', true),
('rmq_pause_stream', '{text}', true),
('rmq_resume_stream', '{text}', true),
('rmq_drop_stream', '{text,boolean}', true),
('rmq_reset_stream', '{text,text,timestamp with time zone,jsonb,boolean}', true),
('rmq_alter_stream', '{text,jsonb}', true);

SELECT is((SELECT count(*)::int FROM fn), (SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'public'::regnamespace),
          'one row above per function of the schema');
SELECT function_privs_are('public', name, args, r, CASE WHEN public_execute THEN '{EXECUTE}'::name[] ELSE '{}' END,
                          format('%s: %s%s', r, CASE WHEN public_execute THEN 'EXECUTE on ' ELSE 'no EXECUTE on ' END, name))
FROM fn, unnest(ARRAY['public', 'rmq_pgtap_plain']::name[]) r ORDER BY r, ord;

-- Tables: the streams and the offsets are read and written by their users
-- (row-level security narrows rmq_stream), batches and dead letters are
-- written by workers running as the stream's owner and trimmed by them;
-- nobody but the owner alters or truncates anything.
SELECT table_privs_are('public', t, r, p::name[], format('%s on %s: %s', r, t, array_to_string(p, ', ')))
FROM (VALUES ('rmq_stream', '{SELECT,INSERT,UPDATE,DELETE}'::text[]),
             ('rmq_offset', '{SELECT,INSERT,UPDATE,DELETE}'),
             ('rmq_batch', '{SELECT,INSERT,DELETE}'),
             ('rmq_dead_letter', '{SELECT,INSERT,DELETE}'),
             ('rmq_stream_status', '{SELECT}')) v(t, p),
     unnest(ARRAY['public', 'rmq_pgtap_plain']::name[]) r
ORDER BY r, t;
SELECT sequence_privs_are('public', s, r, '{USAGE}', format('%s: USAGE on %s only', r, s))
FROM unnest(ARRAY['rmq_batch_id_seq', 'rmq_dead_letter_id_seq', 'rmq_stream_generation_seq']::name[]) s,
     unnest(ARRAY['public', 'rmq_pgtap_plain']::name[]) r
ORDER BY r, s;
-- Servers of the wrapper are made by whom a superuser allows.
SELECT fdw_privs_are('rocketmq_stream', r, '{}', format('%s: no USAGE on the wrapper', r))
FROM unnest(ARRAY['public', 'rmq_pgtap_plain']::name[]) r;
-- Nothing of the extension is SECURITY DEFINER (02_functions.sql) and
-- nothing is owned by anyone but the installing superuser.
SELECT is(ARRAY(SELECT DISTINCT pg_get_userbyid(p.proowner) FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
                UNION SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
                  AND c.relkind IN ('r', 'v', 'S', 'c')),
          ARRAY[current_user]::name[], 'every function, table, view, sequence and type is owned by the superuser that installed it');

SELECT * FROM finish();
ROLLBACK;
