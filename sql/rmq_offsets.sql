-- The broker's offsets for a group move only when the transaction commits.
SELECT * FROM rmq_committed_offsets('rt_offsets', 'rt_one');

BEGIN;
SELECT rmq_commit_offsets('rt_offsets', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 5)]);
-- PostgreSQL's offset moves inside the transaction, the broker's does not.
SELECT next_offset AS stored_inside, broker_offset AS inside_transaction FROM rmq_committed_offsets('rt_offsets', 'rt_one');
COMMIT;
-- `until` is committed: the next offset to read, not the last one read.
SELECT next_offset AS stored, broker_offset AS after_commit FROM rmq_committed_offsets('rt_offsets', 'rt_one');

BEGIN;
SELECT rmq_commit_offsets('rt_offsets', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 5, 10)]);
ROLLBACK;
SELECT broker_offset AS after_rollback FROM rmq_committed_offsets('rt_offsets', 'rt_one');

-- A rolled-back savepoint takes its commits with it; a released one keeps them.
BEGIN;
SAVEPOINT a;
SELECT rmq_commit_offsets('rt_offsets', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 5, 8)]);
ROLLBACK TO a;
SAVEPOINT b;
SELECT rmq_commit_offsets('rt_offsets', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 5, 9)]);
RELEASE b;
COMMIT;
SELECT broker_offset AS after_savepoints FROM rmq_committed_offsets('rt_offsets', 'rt_one');

-- Ranges chain: each must start where the stored offset ends, so a range
-- can be neither repeated nor skipped, in one transaction or across them.
BEGIN;
SELECT rmq_commit_offsets('rt_offsets', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 9, 10)]);
SELECT rmq_commit_offsets('rt_offsets', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 10, 10)]);
COMMIT;
SELECT broker_offset AS chained FROM rmq_committed_offsets('rt_offsets', 'rt_one');
SELECT rmq_commit_offsets('rt_offsets', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 5, 10)]);
SELECT rmq_commit_offsets('rt_offsets', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 11, 12)]);
SELECT consumer_group, topic, broker, queue_id, next_offset FROM rmq_offset
WHERE consumer_group = 'rt_offsets';

-- Results and offsets committed together, as a Spark job would with foreachRDD.
CREATE TEMP TABLE results (queue_offset bigint, body text);
BEGIN;
INSERT INTO results
SELECT queue_offset, convert_from(body, 'UTF8')
FROM rmq_create_rdd('rt_offsets2', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)]);
SELECT rmq_commit_offsets('rt_offsets2', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)]);
COMMIT;
SELECT count(*) AS rows_stored, (SELECT broker_offset FROM rmq_committed_offsets('rt_offsets2', 'rt_one')) AS offset_stored
FROM results;

-- Offsets cannot ride on a prepared transaction.
BEGIN;
SELECT rmq_commit_offsets('rt_offsets', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 10, 10)]);
PREPARE TRANSACTION 'rt_p';
SELECT broker_offset AS after_prepare FROM rmq_committed_offsets('rt_offsets', 'rt_one');
