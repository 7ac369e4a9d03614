-- Malformed ranges.
SELECT rmq_offset_range('rt_one', 'broker-a', 0, 7, 3);
SELECT rmq_offset_range('rt_one', 'broker-a', 0, -1, 3);
SELECT rmq_offset_range('rt_one', 'broker-a', -2, 0, 3);
SELECT rmq_offset_range('', 'broker-a', 0, 0, 3);
SELECT * FROM rmq_create_rdd('g', ARRAY[ROW('rt_one', 'broker-a', 0, 5, 2)::rmq_offset_range]);
SELECT * FROM rmq_create_rdd('g', ARRAY[ROW('rt_one', NULL, 0, 0, 2)::rmq_offset_range]);
SELECT * FROM rmq_create_rdd('g', ARRAY[NULL::rmq_offset_range]);
SELECT * FROM rmq_create_rdd('g', NULL);
SELECT * FROM rmq_create_rdd(NULL, ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 1)]);
SELECT * FROM rmq_create_rdd('', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 1)]);

-- Unknown topic, broker and queue.
SELECT * FROM rmq_queues('rt_no_such_topic');
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_no_such_topic', 'broker-a', 0, 0, 1)]);
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-zz', 0, 0, 1)]);
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 1, 0, 1)]);
SELECT rmq_offset_for_time('rt_one', 'broker-a', 9, now());

-- Ranges beyond what the queue holds.
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 10, 11)], '{"pull_timeout": 0}');
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 50, 60)]);

-- Options.
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 1)], '{"pull_batchsize": 4}');
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 1)], '{"pull_batch_size": 0}');
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 1)], '{"check_crc": "maybe"}');
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 1)], '{"on_error": "dead_letter"}');
SELECT * FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 1)], '[1]');

-- Unreachable or malformed name server addresses: an error naming the address.
SELECT * FROM rmq_queues('rt_one', '{"namesrv_addr": "127.0.0.1:1"}');
SELECT * FROM rmq_queues('rt_one', '{"namesrv_addr": "127.0.0.1:1;127.0.0.1:2"}');
SELECT * FROM rmq_queues('rt_one', '{"namesrv_addr": "no-port-here"}');
SET rocketmq_stream.namesrv_addr = '';
SELECT * FROM rmq_queues('rt_one');
RESET rocketmq_stream.namesrv_addr;
-- A dead first name server is skipped for a live second one.
SELECT count(*) FROM rmq_queues('rt_one', jsonb_build_object('namesrv_addr',
    '127.0.0.1:1;' || current_setting('rocketmq_stream.namesrv_addr')));

-- The broker's own refusals carry its text.
SELECT rmq_create_topic('RMQ_SYS_TRANS_HALF_TOPIC', 1);
SELECT rmq_create_topic('bad topic!', 1);

-- Sending.
SELECT rmq_send('rt_one', 'x', NULL, NULL, '{"TAGS": "sneaky"}');
SELECT rmq_send('rt_one', 'x', E'a\x01b');
SELECT rmq_send('rt_one', NULL);
SELECT rmq_send('rt_one', '');
SELECT rmq_send_batch('rt_one', ARRAY['a', '']::bytea[]);
SELECT rmq_send('rt_one', 'x', NULL, NULL, '{"nested": {"a": 1}}');
SELECT rmq_send('rt_one', 'x', NULL, NULL, NULL, '{"queue_id": 7}');
SELECT rmq_send('rt_one', (SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, 330000)));
SELECT rmq_send_batch('rt_one', ARRAY['a', 'b']::bytea[], NULL, ARRAY['k']);
SELECT rmq_send_batch('rt_one', ARRAY[]::bytea[]);
SELECT rmq_send('rt_no_such_topic', 'x');
-- Every name the Java client's putUserProperty refuses, not only tags and keys.
SELECT rmq_send('rt_one', 'x', NULL, NULL, '{"TTL": "60"}');
SELECT rmq_send('rt_one', 'x', NULL, NULL, '{"MSG_TYPE": "reply"}');
SELECT rmq_send_batch('rt_one', ARRAY['a']::bytea[], NULL, NULL, '{"TIMER_DELAY_LEVEL": "1"}');
SELECT rmq_send('rt_one', 'x', NULL, NULL, '{" ": "v"}');
SELECT rmq_send('rt_one', 'x', NULL, NULL, '{"k": "  "}');
-- Topic attributes: a JSON object of plain strings the broker can split.
SELECT rmq_create_topic('rt_attr', 1, attributes => '["queue.type"]');
SELECT rmq_create_topic('rt_attr', 1, attributes => '{"queue.type": 1}');
SELECT rmq_create_topic('rt_attr', 1, attributes => '{"queue.type": "a,b"}');

-- Waiting for messages that are not there can be cancelled: statement_timeout
-- stops a pull the broker is holding for ten minutes.
SET statement_timeout = '1s';
SELECT count(*) FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 10, 11)],
                                    '{"pull_timeout": 600000}');
RESET statement_timeout;
-- The connection is usable again afterwards.
SELECT count(*) FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)]);
-- Connection profiles: servers and user mappings are checked when made.
CREATE SERVER rt_bad1 FOREIGN DATA WRAPPER rocketmq_stream OPTIONS (namesrv 'x:1');
CREATE SERVER rt_bad2 FOREIGN DATA WRAPPER rocketmq_stream OPTIONS (namesrv_addr 'nohost');
CREATE SERVER rt_bad3 FOREIGN DATA WRAPPER rocketmq_stream OPTIONS (tls 'sometimes');
CREATE SERVER rt_srv FOREIGN DATA WRAPPER rocketmq_stream OPTIONS (namesrv_addr '127.0.0.1:19876', tls 'disable');
CREATE USER MAPPING FOR CURRENT_USER SERVER rt_srv OPTIONS (access_key 'only');
CREATE USER MAPPING FOR CURRENT_USER SERVER rt_srv OPTIONS (user 'x', secret_key 'y');
CREATE USER MAPPING FOR CURRENT_USER SERVER rt_srv OPTIONS (access_key '', secret_key 'y');
ALTER SERVER rt_srv OPTIONS (ADD tls_cert '');
CREATE FOREIGN DATA WRAPPER rt_other_fdw;
CREATE SERVER rt_other FOREIGN DATA WRAPPER rt_other_fdw;
-- Using them.
SELECT count(*) FROM rmq_queues('rt_one', '{"server": "rt_srv"}');
SELECT count(*) FROM rmq_queues('rt_one', '{"server": "rt_srv", "namesrv_addr": "127.0.0.1:19876"}');
SELECT count(*) FROM rmq_queues('rt_one', '{"server": "rt_nope"}');
SELECT count(*) FROM rmq_queues('rt_one', '{"server": "rt_other"}');
SET rocketmq_stream.server = 'rt_nope';
SELECT count(*) FROM rmq_queues('rt_one');
SELECT count(*) FROM rmq_queues('rt_one', '{"namesrv_addr": "127.0.0.1:19876"}');
RESET rocketmq_stream.server;
DROP SERVER rt_srv;
DROP SERVER rt_other;
DROP FOREIGN DATA WRAPPER rt_other_fdw;
