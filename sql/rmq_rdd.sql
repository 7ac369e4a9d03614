-- Ten messages into the single queue of rt_one: offsets 0..9.
CREATE TEMP TABLE sent AS
SELECT i, rmq_send('rt_one', convert_to('msg-' || i, 'UTF8'),
                   CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END,
                   'key-' || i || ' k' || i,
                   jsonb_build_object('i', i, 'greeting', 'grüß dich'),
                   '{"queue_id": 0}') AS id
FROM generate_series(0, 9) i;
SELECT count(DISTINCT id) AS distinct_ids FROM sent;
SELECT * FROM rmq_queues('rt_one');

-- The whole range, exactly, in offset order.
SELECT topic, broker, queue_id, queue_offset, convert_from(body, 'UTF8') AS body, tags, keys,
       properties->>'i' AS i, properties->>'greeting' AS greeting,
       length(msg_id) AS msg_id_len, reconsume_times, store_host
FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)]);

-- Each message carries the id rmq_send returned, and sane timestamps.
SELECT count(*) AS matched
FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)]) r
JOIN sent s ON s.id = r.unique_key AND convert_from(r.body, 'UTF8') = 'msg-' || s.i
WHERE r.born_timestamp <= r.store_timestamp + interval '1 second'
  AND r.store_timestamp BETWEEN now() - interval '10 minutes' AND clock_timestamp();

-- properties are well-formed jsonb: equal to themselves re-parsed from text.
SELECT count(*) FILTER (WHERE properties = (properties::text)::jsonb) AS well_formed,
       count(*) FILTER (WHERE properties ? 'UNIQ_KEY' AND properties->>'TAGS' = tags) AS indexed
FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)]);

-- A sub-range is half-open: [3, 7).
SELECT queue_offset, convert_from(body, 'UTF8') AS body
FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 3, 7)]);

-- An empty range reads nothing and asks the broker nothing.
SELECT count(*) FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 4, 4)]);
SELECT count(*) FROM rmq_create_rdd('rt_group', ARRAY[]::rmq_offset_range[]);

-- One message per pull: same rows, many round trips.
SELECT array_agg(queue_offset ORDER BY queue_offset) AS offsets
FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)],
                    '{"pull_batch_size": 1}');

-- Tag filter: the broker skips whole stretches; offsets keep their gaps.
SELECT queue_offset, tags
FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)],
                    '{"tag_filter": "even"}');
SELECT count(*) FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)],
                    '{"tag_filter": "odd || even"}');
SELECT count(*) FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)],
                    '{"tag_filter": "nosuchtag"}');

-- Bodies survive byte for byte: every byte value, non-ASCII, a lone NUL,
-- compressed (we compress from 4 KiB), incompressible.
CREATE TEMP TABLE bodies AS
SELECT n, b FROM (VALUES
    (1, (SELECT string_agg(set_byte('\x00'::bytea, 0, x), ''::bytea ORDER BY x) FROM generate_series(0, 255) x)),
    (2, convert_to('日本語 ✓ émoji 🚀', 'UTF8')),
    (3, '\x00'::bytea),
    (4, convert_to(repeat('compressible text ', 6000), 'UTF8')),
    (5, (SELECT decode(string_agg(md5(x::text), ''), 'hex') FROM generate_series(1, 600) x))
) v(n, b);
SELECT n, rmq_send('rt_four', b, 'bin', NULL, NULL, '{"queue_id": 2}') IS NOT NULL AS sent FROM bodies ORDER BY n;
SELECT b.n, length(r.body) AS len, r.body = b.b AS same
FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_four', 'broker-a', 2, 0, 5)]) r
JOIN bodies b ON b.n = r.queue_offset + 1
ORDER BY b.n;

-- A batch lands in one queue, in order, each message with its own id and key.
SELECT array_length(rmq_send_batch('rt_four', ARRAY['b0', 'b1', 'b2', 'b3']::bytea[], 'batch',
                                   ARRAY['x0', 'x1', 'x2', 'x3'], '{"src": "batch"}',
                                   '{"queue_id": 3}'), 1) AS ids;
SELECT queue_offset, convert_from(body, 'UTF8') AS body, keys, tags, properties->>'src' AS src,
       count(*) OVER (PARTITION BY unique_key) AS same_id
FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_four', 'broker-a', 3, 0, 4)]);

-- Several ranges in one call.
SELECT queue_id, count(*), min(queue_offset), max(queue_offset)
FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_four', 'broker-a', 2, 1, 5),
                                      rmq_offset_range('rt_four', 'broker-a', 3, 0, 4),
                                      rmq_offset_range('rt_four', 'broker-a', 0, 0, 0)])
GROUP BY queue_id ORDER BY queue_id;

-- Offset for a time: the first message stored at or after it.
SELECT rmq_offset_for_time('rt_one', 'broker-a', 0, '2000-01-01') AS before_all;
SELECT rmq_offset_for_time('rt_one', 'broker-a', 0, now() + interval '1 day') AS after_all;
WITH r AS (SELECT * FROM rmq_create_rdd('rt_group', ARRAY[rmq_offset_range('rt_one', 'broker-a', 0, 0, 10)]))
SELECT rmq_offset_for_time('rt_one', 'broker-a', 0, store_timestamp) =
       (SELECT min(queue_offset) FROM r r2 WHERE r2.store_timestamp >= r.store_timestamp) AS agrees
FROM r WHERE queue_offset IN (3, 6, 9);
