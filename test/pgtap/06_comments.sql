-- Every function, table, view, type and the wrapper says what it is for
-- (\df+, \dt+, \dv+, \dT+, \dew+).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET search_path = public, tap;
BEGIN;
SELECT * FROM no_plan();

SELECT ok(coalesce(length(obj_description(d.objid, c.relname::name)), 0) > 0,
          pg_describe_object(d.classid, d.objid, 0) || ' has a comment')
FROM pg_depend d JOIN pg_class c ON c.oid = d.classid
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'rocketmq_stream')
  AND NOT (d.classid = 'pg_class'::regclass AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S')
ORDER BY pg_describe_object(d.classid, d.objid, 0) COLLATE "C";

SELECT * FROM finish();
ROLLBACK;
