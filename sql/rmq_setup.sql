-- A fresh broker for every test run: topics are created here.
CREATE EXTENSION rocketmq_stream;
SELECT rmq_create_topic('rt_one', 1);
SELECT rmq_create_topic('rt_four', 4);
SELECT * FROM rmq_queues('rt_one');
SELECT * FROM rmq_queues('rt_four');
-- Creating a topic again is idempotent.
SELECT rmq_create_topic('rt_one', 1);
SHOW rocketmq_stream.pull_batch_size;
SHOW rocketmq_stream.pull_timeout;
