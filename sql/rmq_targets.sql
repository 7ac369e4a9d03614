-- Tables a stream cannot write exactly once are refused (rmq_create_stream
-- and every batch call rmq_check_target): a foreign table writes in another
-- server's transaction, and so does a partitioned table with a foreign
-- partition; Citus routes the COPY command, not the COPY machinery streams use.
CREATE EXTENSION postgres_fdw;
CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'regression');
CREATE TABLE t_local (queue_id int, queue_offset bigint, body bytea);
CREATE FOREIGN TABLE t_foreign (queue_id int, queue_offset bigint, body bytea)
    SERVER loopback OPTIONS (table_name 't_local');
SELECT rmq_check_target('t_local');
SELECT rmq_check_target('t_foreign');
CREATE TABLE t_parted (queue_id int, queue_offset bigint, body bytea) PARTITION BY LIST (queue_id);
CREATE TABLE t_parted_0 PARTITION OF t_parted FOR VALUES IN (0);
SELECT rmq_check_target('t_parted');
CREATE TABLE t_parted_1 PARTITION OF t_parted FOR VALUES IN (1, 2) PARTITION BY LIST (queue_id);
CREATE FOREIGN TABLE t_parted_2 PARTITION OF t_parted_1 FOR VALUES IN (2)
    SERVER loopback OPTIONS (table_name 't_local');
SELECT rmq_check_target('t_parted');
SELECT rmq_check_target('t_parted_0');
-- Citus lists its distributed tables in pg_catalog.pg_dist_partition: a
-- stand-in with Citus's first column shows where we look.
SET allow_system_table_mods = on;
CREATE TABLE pg_catalog.pg_dist_partition (logicalrelid regclass NOT NULL, partmethod "char" NOT NULL);
INSERT INTO pg_catalog.pg_dist_partition VALUES ('t_local', 'h');
SELECT rmq_check_target('t_local');
SELECT rmq_check_target('t_parted_0');
DROP TABLE pg_catalog.pg_dist_partition;
RESET allow_system_table_mods;
SELECT rmq_check_target('t_local');
DROP TABLE t_parted, t_local CASCADE;
DROP EXTENSION postgres_fdw CASCADE;

-- What membership of a consumer group rules out.
SELECT rmq_check_stream_options('{"membership": "group"}');
SELECT rmq_check_stream_options('{"membership": "none", "auto_commit": false}');
SELECT rmq_check_stream_options('{"membership": "all"}');
SELECT rmq_check_stream_options('{"membership": true}');
SELECT rmq_check_stream_options('{"membership": "group", "auto_commit": false}');
SELECT rmq_check_stream_shape('{"membership": "group"}', '{"broker-a/0": 0}', false);
SELECT rmq_check_stream_shape('{"membership": "group"}', NULL, true);
SELECT rmq_check_stream_shape('{}', '{"broker-a/0": 0}', true);
