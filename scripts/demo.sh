#!/usr/bin/env bash
# A short tour of rocketmq_stream on a fresh Debian bookworm machine: installs
# dependencies, builds and installs the extension, starts a local RocketMQ
# (name server + broker on 127.0.0.1:9876 / :10911) and a PostgreSQL 15 with
# rocketmq_stream preloaded (socket in /tmp, port 5433), then
#   1-2. sends messages with the official Java producer and with rmq_send, and
#        reads them back with rmq_create_rdd;
#   3-8. streams a topic of JSON orders into a table with real columns while a
#        producer runs, shows the lag falling to zero, one poison message set
#        aside in rmq_dead_letter, and the batch history.
# Running it again starts the tour afresh (same topics, a new stream); what
# the set-up prints goes to a log next to the data directory.
#
#   bash scripts/demo.sh          set up and run the demo (leaves both running)
#   bash scripts/demo.sh stop     stop the demo's PostgreSQL and broker
#
# Environment: DEMO_PGPORT (5433), DEMO_PGDATA (/tmp/rmq_stream_demo/pgdata),
# RMQ_NAMESRV_PORT (9876), RMQ_BROKER_PORT (10911), RMQ_HOME, RMQ_LIB,
# PG_CONFIG (pg_config: the PostgreSQL to build for and run).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RMQ_LIB=${RMQ_LIB:-/var/cache/rocketmq_stream/lib}
export RMQ_HOME=${RMQ_HOME:-/tmp/rmq_stream_broker}
export RMQ_NAMESRV_PORT=${RMQ_NAMESRV_PORT:-9876} RMQ_BROKER_PORT=${RMQ_BROKER_PORT:-10911}
namesrv=127.0.0.1:$RMQ_NAMESRV_PORT
pgdata=${DEMO_PGDATA:-/tmp/rmq_stream_demo/pgdata}
pgport=${DEMO_PGPORT:-5433}
pg_config=${PG_CONFIG:-pg_config}
log=$(dirname "$pgdata")/demo.log
as_pg=()
[[ $(id -u) == 0 ]] && as_pg=(runuser -u postgres --)

if [[ ${1:-} == stop ]]; then
    bindir=$("$pg_config" --bindir)
    [[ -f $pgdata/postmaster.pid ]] && "${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop
    bash "$top/test/broker/broker.sh" stop
    exit 0
fi

mkdir -p "$(dirname "$pgdata")"
[[ $(id -u) == 0 ]] && chown postgres "$(dirname "$pgdata")"
: >"$log"
[[ $(id -u) == 0 ]] && chown postgres "$log"
quiet() {  # run a set-up step, its output to the log; on failure show the log's end
    "$@" >>"$log" 2>&1 || { echo "failed: $* (last lines of $log):" >&2; tail -n 30 "$log" >&2; exit 1; }
}

cat <<INTRO
rocketmq_stream: PostgreSQL reads RocketMQ topics into tables exactly once, and sends messages.

Setting up: dependencies, the extension, RocketMQ on $namesrv, PostgreSQL on /tmp:$pgport
(output in $log) ...
INTRO
quiet bash "$top/scripts/install-deps.sh"
bindir=$("$pg_config" --bindir)
quiet make -s -C "$top" PG_CONFIG="$pg_config"
quiet make -s -C "$top" PG_CONFIG="$pg_config" install
quiet bash "$top/test/broker/broker.sh" start
if [[ ! -f $pgdata/PG_VERSION ]]; then
    quiet "${as_pg[@]}" "$bindir/initdb" -D "$pgdata" -A trust -U postgres
    cat >>"$pgdata/postgresql.conf" <<CONF
port = $pgport
listen_addresses = ''
unix_socket_directories = '/tmp'
shared_preload_libraries = 'rocketmq_stream'
rocketmq_stream.namesrv_addr = '$namesrv'
CONF
fi
if ! "${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    quiet "${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdata" -l "$(dirname "$pgdata")/postgresql.log" -w start
fi
psql=("${as_pg[@]}" "$bindir/psql" -X -q -h /tmp -p "$pgport" -U postgres -d postgres -v ON_ERROR_STOP=1)
q() { "${psql[@]}" -At -c "$1"; }
quiet "${psql[@]}" -c "CREATE EXTENSION IF NOT EXISTS rocketmq_stream" -c "SELECT rmq_create_topic('demo_orders', 4)" \
    -c "SELECT rmq_create_topic('demo_orders_json', 4)"
echo "... ready."

# ------------------------------------------------------------ 1-2. send, read
# Only this run's messages are read back: from each queue's offset now.
from=$(q "SELECT json_object_agg(broker || '/' || queue_id, max_offset) FROM rmq_queues('demo_orders')")
echo
echo "1. Send messages: 16 from the official Java producer (tags, keys, properties, binary, compressed, a"
echo "   batch), and 3 from SQL:"
quiet env RMQ_JAVA_BUILD="${RMQ_JAVA_BUILD:-$RMQ_HOME/java-classes}" \
    "$top/test/java/run.sh" InteropProduce "$namesrv" demo_orders /dev/null
"${psql[@]}" <<'SQL'
SELECT rmq_send('demo_orders', convert_to('{"order": ' || i || ', "amount": ' || i * 10 || '}', 'UTF8'),
                'order', 'order-' || i, jsonb_build_object('source', 'psql')) AS msg_id
FROM generate_series(1, 3) i;
SQL
echo "2. Read back with rmq_create_rdd: every queue, from its offset before step 1 to its max offset:"
"${psql[@]}" -v from="$from" <<'SQL'
SELECT queue_id, queue_offset, tags, keys,
       CASE WHEN tags IN ('TagBin', 'TagBig') THEN '(binary) ' || left(encode(body, 'hex'), 24)
            ELSE left(convert_from(body, 'UTF8'), 40) END AS body,
       length(body) AS bytes, properties->>'source' AS source
FROM rmq_create_rdd('demo_group',
       (SELECT array_agg(rmq_offset_range('demo_orders', broker, queue_id,
                                          coalesce((:'from'::jsonb ->> (broker || '/' || queue_id))::bigint, min_offset),
                                          max_offset))
        FROM rmq_queues('demo_orders')))
ORDER BY queue_id, queue_offset;
SQL

# ------------------------------------------------------------ 3. a stream
# Afresh each run: the stream, its table, its dead letters and batches.
"${psql[@]}" <<'SQL'
SET client_min_messages = warning;
SELECT rmq_drop_stream(name, drop_offsets => true) FROM rmq_stream WHERE name = 'demo_orders_in' \g /dev/null
DELETE FROM rmq_dead_letter WHERE stream = 'demo_orders_in';
DELETE FROM rmq_batch WHERE stream = 'demo_orders_in';
DROP TABLE IF EXISTS demo_orders;
SQL
# A stream created again under the same name before the launcher saw the
# drop (it looks once a second) would keep the old one's worker.
for ((i = 0; i < 100; i++)); do
    [[ $(q "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'rocketmq_stream demo_orders_in/%'") == 0 ]] && break
    sleep 0.1
done
cat <<'TXT'
3. A stream: the JSON orders of topic demo_orders_json into a table with real columns.
   Keys go to the columns of their names, "city" comes from a nested path, queue_id,
   queue_offset and store_timestamp from the message; a bad message is set aside.

   CREATE TABLE demo_orders (order_id bigint PRIMARY KEY, customer text, amount numeric(10,2),
       placed_at timestamptz, city text, items jsonb,
       queue_id integer, queue_offset bigint, store_timestamp timestamptz,
       received_at timestamptz DEFAULT now());
   SELECT rmq_create_stream('demo_orders_in', 'demo_orders_json', 'demo_orders_pg', 'demo_orders',
       start_from => 'latest', format => 'json_columns',
       options => '{"json_paths": {"city": "$.ship.city"}, "on_error": "dead_letter",
                    "batch_interval": 250, "max_rate_per_queue": 800}');
TXT
"${psql[@]}" <<'SQL'
CREATE TABLE demo_orders (order_id bigint PRIMARY KEY, customer text, amount numeric(10,2),
    placed_at timestamptz, city text, items jsonb,
    queue_id integer, queue_offset bigint, store_timestamp timestamptz,
    received_at timestamptz DEFAULT now());
SELECT rmq_create_stream('demo_orders_in', 'demo_orders_json', 'demo_orders_pg', 'demo_orders',
    start_from => 'latest', format => 'json_columns',
    options => '{"json_paths": {"city": "$.ship.city"}, "on_error": "dead_letter",
                 "batch_interval": 250, "max_rate_per_queue": 800}') \g /dev/null
SQL
# 'latest' is resolved when the worker starts: produce only after that.
for ((i = 0; i < 300; i++)); do
    [[ $(q "SELECT count(*) FROM rmq_offset WHERE consumer_group = 'demo_orders_pg' AND topic = 'demo_orders_json'") == 4 ]] && break
    sleep 0.1
done
((i < 300)) || { echo "the stream did not start; see $(dirname "$pgdata")/postgresql.log" >&2; exit 1; }

# ------------------------------------------------------------ 4. a producer
cat <<'TXT'

4. A producer sends 4,000 orders a second for 5 seconds. The stream is held to 800 messages a
   second per queue (max_rate_per_queue; unthrottled it drains about 190,000 a second), so the
   lag grows while the producer runs and falls to zero after it stops:

      s    sent  in table    lag  health
TXT
base=$(q "SELECT sum(max_offset) FROM rmq_queues('demo_orders_json')")
"${psql[@]}" >>"$log" 2>&1 <<'SQL' &
DO $$
BEGIN
    FOR tick IN 0 .. 19 LOOP
        FOR b IN 0 .. 3 LOOP
            PERFORM rmq_send_batch('demo_orders_json', ARRAY(
                SELECT convert_to(json_build_object('order_id', n, 'customer', 'customer-' || n % 97,
                           'amount', round((n % 1000) * 1.37, 2), 'placed_at', clock_timestamp(),
                           'ship', json_build_object('city', (ARRAY['Lisbon', 'Oslo', 'Osaka', 'Lima'])[n % 4 + 1]),
                           'items', json_build_array(json_build_object('sku', 'A-' || n % 7, 'qty', n % 3 + 1)))::text,
                         'UTF8')
                FROM generate_series(tick * 1000 + b * 250 + 1, tick * 1000 + b * 250 + 250) n));
        END LOOP;
        PERFORM pg_sleep(0.25 - extract(epoch FROM clock_timestamp() - statement_timestamp()) % 0.25);
    END LOOP;
END $$;
SQL
producer=$!
t0=$EPOCHREALTIME
for ((s = 1; s <= 40; s++)); do
    sleep "$(awk -v t0="$t0" -v now="$EPOCHREALTIME" -v s="$s" 'BEGIN {d = t0 + s - now; print (d > 0 ? d : 0)}')"
    IFS='|' read -r sent rows lag health <<<"$(q "SELECT (SELECT sum(max_offset) FROM rmq_queues('demo_orders_json')) - $base,
        (SELECT count(*) FROM demo_orders), coalesce(sum(lag), 0), max(health) FROM rmq_stream_status WHERE stream = 'demo_orders_in'")"
    printf '   %3d  %6d  %8d  %5d  %s\n' "$s" "$sent" "$rows" "$lag" "$health"
    if ! kill -0 "$producer" 2>/dev/null && ((lag == 0 && rows == sent)); then break; fi
done
wait "$producer" || { echo "the producer failed; see $log" >&2; exit 1; }

# ------------------------------------------------------------ 5-8. the rest
echo
echo "5. Caught up. rmq_stream_status, per queue:"
"${psql[@]}" -c "SELECT stream, queue_id, health, lag, next_offset, broker_max_offset, messages_per_sec,
                         to_char(last_batch_at, 'HH24:MI:SS.MS') AS last_batch_at
                  FROM rmq_stream_status WHERE stream = 'demo_orders_in' ORDER BY queue_id"
echo "6. One poison message: an order whose amount is \"lots\". It goes to rmq_dead_letter with the column"
echo "   and the reason (on_error: dead_letter), and the stream goes on:"
q "SELECT rmq_send('demo_orders_json', convert_to('{\"order_id\": 999999, \"customer\": \"mallory\", \"amount\": \"lots\"}', 'UTF8'))" >/dev/null
q "SELECT rmq_send('demo_orders_json', convert_to('{\"order_id\": 1000000, \"customer\": \"alice\", \"amount\": 12.5}', 'UTF8'))" >/dev/null
for ((i = 0; i < 100; i++)); do
    [[ $(q "SELECT count(*) FROM demo_orders WHERE order_id = 1000000") == 1 ]] && break
    sleep 0.1
done
"${psql[@]}" -c "SELECT queue_id, queue_offset, error, policy, convert_from(body, 'UTF8') AS body
                  FROM rmq_dead_letter WHERE stream = 'demo_orders_in'" \
             -c "SELECT order_id, customer, amount, queue_offset FROM demo_orders WHERE order_id >= 999999"
echo "7. The batch history (rmq_batch): each batch is one transaction of rows and offsets."
"${psql[@]}" -c "SELECT count(*) AS batches, sum(rows) AS rows, sum(skipped) AS set_aside,
                         round(avg(rows)) AS avg_rows, string_agg(DISTINCT end_reason, ', ') AS closed_by
                  FROM rmq_batch WHERE stream = 'demo_orders_in'" \
             -c "SELECT to_char(started_at, 'HH24:MI:SS.MS') AS started,
                         round(extract(epoch FROM committed_at - started_at) * 1000) AS ms, rows, skipped, end_reason,
                         (SELECT string_agg(e->>'queue_id' || ':' || (e->>'from') || '-' || (e->>'until'), ' ')
                          FROM jsonb_array_elements(ranges) e WHERE e ? 'queue_id') AS \"queue:from-until\"
                  FROM rmq_batch WHERE stream = 'demo_orders_in' ORDER BY id DESC LIMIT 6"
echo "8. What landed in demo_orders:"
"${psql[@]}" -c "SELECT order_id, customer, amount, to_char(placed_at, 'HH24:MI:SS.MS') AS placed_at, city, items,
                         queue_id, queue_offset FROM demo_orders ORDER BY order_id LIMIT 5"
cat <<DONE
The demo is running:
  psql -h /tmp -p $pgport -U postgres          # PostgreSQL with rocketmq_stream; try rmq_stream_status
  name server $namesrv, broker 127.0.0.1:$RMQ_BROKER_PORT (state in $RMQ_HOME)
Run it again to replay the tour; stop both with:  bash scripts/demo.sh stop
DONE
