-- Every function with its signature as callers use it (argument names,
-- defaults: named notation and omitted arguments must keep working), its
-- result, language, volatility and strictness; none is SECURITY DEFINER.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET search_path = public, tap;
BEGIN;
SELECT * FROM no_plan();

CREATE TEMP TABLE fn (ord serial, name name, args name[], arguments text, result text,
                      lang name, vol text, strict boolean);
INSERT INTO fn (name, args, arguments, result, lang, vol, strict) VALUES
('rmq_offset_range', '{text,text,integer,bigint,bigint}',
 'topic text, broker text, queue_id integer, from_offset bigint, until_offset bigint',
 'rmq_offset_range', 'c', 'immutable', true),
('rmq_queues', '{text,jsonb}',
 'topic text, options jsonb DEFAULT ''{}''::jsonb',
 'TABLE(broker text, queue_id integer, min_offset bigint, max_offset bigint)', 'c', 'volatile', false),
('rmq_create_rdd', '{text,rmq_offset_range[],jsonb}',
 'consumer_group text, ranges rmq_offset_range[], options jsonb DEFAULT ''{}''::jsonb',
 'TABLE(topic text, broker text, queue_id integer, queue_offset bigint, msg_id text, unique_key text, '
 'keys text[], tags text, body bytea, properties jsonb, born_timestamp timestamp with time zone, '
 'born_host text, store_timestamp timestamp with time zone, store_host text, reconsume_times integer, '
 'properties_raw bytea)', 'c', 'volatile', false),
('rmq_offset_for_time', '{text,text,integer,timestamp with time zone,jsonb}',
 'topic text, broker text, queue_id integer, "time" timestamp with time zone, options jsonb DEFAULT ''{}''::jsonb',
 'bigint', 'c', 'volatile', false),
('rmq_broker_offsets', '{text,text,jsonb}',
 'consumer_group text, topic text, options jsonb DEFAULT ''{}''::jsonb',
 'TABLE(broker text, queue_id integer, broker_offset bigint)', 'c', 'volatile', false),
('rmq_commit_offsets', '{text,rmq_offset_range[],jsonb}',
 'consumer_group text, ranges rmq_offset_range[], options jsonb DEFAULT ''{}''::jsonb',
 'void', 'c', 'volatile', false),
('rmq_send', '{text,bytea,text,text,jsonb,jsonb}',
 'topic text, body bytea, tags text DEFAULT NULL::text, keys text DEFAULT NULL::text, '
 'properties jsonb DEFAULT NULL::jsonb, options jsonb DEFAULT ''{}''::jsonb',
 'text', 'c', 'volatile', false),
('rmq_send_batch', '{text,bytea[],text,text[],jsonb,jsonb}',
 'topic text, bodies bytea[], tags text DEFAULT NULL::text, keys text[] DEFAULT NULL::text[], '
 'properties jsonb DEFAULT NULL::jsonb, options jsonb DEFAULT ''{}''::jsonb',
 'text[]', 'c', 'volatile', false),
('rmq_create_topic', '{text,integer,text,jsonb,jsonb}',
 'topic text, queues integer DEFAULT 8, broker text DEFAULT NULL::text, options jsonb DEFAULT ''{}''::jsonb, '
 'attributes jsonb DEFAULT NULL::jsonb',
 'integer', 'c', 'volatile', false),
('rmq_fdw_validator', '{text[],oid}', 'text[], oid', 'void', 'c', 'volatile', true),
('rmq_check_server', '{text}', 'server text', 'void', 'c', 'volatile', true),
('rmq_committed_offsets', '{text,text,jsonb}',
 'consumer_group text, topic text, options jsonb DEFAULT ''{}''::jsonb',
 'TABLE(broker text, queue_id integer, next_offset bigint, broker_offset bigint)', 'sql', 'volatile', false),
('rmq_check_preloaded', '{}', '', 'void', 'c', 'volatile', false),
('rmq_check_stream_options', '{jsonb}', 'options jsonb', 'void', 'plpgsql', 'volatile', false),
('rmq_check_stream_shape', '{jsonb,jsonb,boolean}', 'options jsonb, queue_map jsonb, force_specific boolean', 'void', 'plpgsql', 'volatile', false),
('rmq_check_target', '{regclass}', 'target regclass', 'void', 'c', 'volatile', true),
('rmq_check_json_columns', '{regclass,text,jsonb}', 'target regclass, format text, options jsonb', 'void', 'c', 'volatile', false),
('rmq_create_stream', '{text,text,text,regclass,text,timestamp with time zone,jsonb,boolean,text,regprocedure,integer,jsonb,jsonb}',
 'name text, topic text, consumer_group text, target regclass, start_from text DEFAULT ''earliest''::text, '
 'start_time timestamp with time zone DEFAULT NULL::timestamp with time zone, start_offsets jsonb DEFAULT NULL::jsonb, '
 'force_specific boolean DEFAULT false, format text DEFAULT ''message''::text, '
 'handler regprocedure DEFAULT NULL::regprocedure, parallelism integer DEFAULT 1, '
 'queue_map jsonb DEFAULT NULL::jsonb, options jsonb DEFAULT ''{}''::jsonb',
 'rmq_stream', 'plpgsql', 'volatile', false),
('rmq_stream_set_state', '{text,text}', 'stream_name text, new_state text', 'void', 'plpgsql', 'volatile', false),
('rmq_pause_stream', '{text}', 'name text', 'void', 'sql', 'volatile', false),
('rmq_resume_stream', '{text}', 'name text', 'void', 'sql', 'volatile', false),
('rmq_drop_stream', '{text,boolean}', 'name text, drop_offsets boolean DEFAULT false', 'void', 'plpgsql', 'volatile', false),
('rmq_reset_stream', '{text,text,timestamp with time zone,jsonb,boolean}',
 'name text, start_from text DEFAULT ''earliest''::text, '
 'start_time timestamp with time zone DEFAULT NULL::timestamp with time zone, '
 'start_offsets jsonb DEFAULT NULL::jsonb, force_specific boolean DEFAULT true',
 'void', 'plpgsql', 'volatile', false),
('rmq_alter_stream', '{text,jsonb}', 'name text, options jsonb', 'void', 'plpgsql', 'volatile', false);

SELECT is((SELECT count(*)::int FROM fn), (SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'public'::regnamespace),
          'one row above per function of the schema');
SELECT has_function('public', name, args, format('has %s(%s)', name, array_to_string(args, ', '))) FROM fn ORDER BY ord;
SELECT is(pg_get_function_arguments(format('public.%I(%s)', name, array_to_string(args, ','))::regprocedure),
          arguments, name || ': argument names and defaults') FROM fn ORDER BY ord;
SELECT is(pg_get_function_result(format('public.%I(%s)', name, array_to_string(args, ','))::regprocedure),
          result, name || ' returns ' || result) FROM fn ORDER BY ord;
-- function_returns sees a RETURNS TABLE function as "setof record".
SELECT function_returns('public', name, args, CASE WHEN result LIKE 'TABLE(%' THEN 'setof record' ELSE result END)
FROM fn ORDER BY ord;
SELECT function_lang_is('public', name, args, lang) FROM fn ORDER BY ord;
SELECT volatility_is('public', name, args, vol) FROM fn ORDER BY ord;
SELECT CASE WHEN strict THEN is_strict('public', name, args) ELSE isnt_strict('public', name, args) END
FROM fn ORDER BY ord;
SELECT isnt_definer('public', name, args) FROM fn ORDER BY ord;

SELECT * FROM finish();
ROLLBACK;
