#!/usr/bin/env bash
# Sets everything up and runs the demo on a fresh Debian bookworm machine:
# installs dependencies, builds and installs the extension, starts a local
# RocketMQ (name server + broker on 127.0.0.1:9876 / :10911) and a
# PostgreSQL 15 with rocketmq_stream preloaded (socket in /tmp, port 5433),
# sends messages with the official Java producer and with rmq_send, and
# reads them back with rmq_create_rdd.
#
#   bash scripts/demo.sh          set up and run the demo (leaves both running)
#   bash scripts/demo.sh stop     stop the demo's PostgreSQL and broker
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RMQ_LIB=${RMQ_LIB:-/var/cache/rocketmq_stream/lib}
export RMQ_HOME=${RMQ_HOME:-/tmp/rmq_stream_broker}
export RMQ_NAMESRV_PORT=${RMQ_NAMESRV_PORT:-9876} RMQ_BROKER_PORT=${RMQ_BROKER_PORT:-10911}
namesrv=127.0.0.1:$RMQ_NAMESRV_PORT
pgdata=${DEMO_PGDATA:-/tmp/rmq_stream_demo/pgdata}
pgport=${DEMO_PGPORT:-5433}
bindir=/usr/lib/postgresql/15/bin
as_pg=()
[[ $(id -u) == 0 ]] && as_pg=(runuser -u postgres --)

if [[ ${1:-} == stop ]]; then
    [[ -f $pgdata/postmaster.pid ]] && "${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop
    bash "$top/test/broker/broker.sh" stop
    exit 0
fi

bash "$top/scripts/install-deps.sh"
make -s -C "$top" && make -s -C "$top" install
bash "$top/test/broker/broker.sh" start

if [[ ! -f $pgdata/PG_VERSION ]]; then
    mkdir -p "$(dirname "$pgdata")"
    [[ $(id -u) == 0 ]] && chown postgres "$(dirname "$pgdata")"
    "${as_pg[@]}" "$bindir/initdb" -D "$pgdata" -A trust -U postgres >/dev/null
    cat >>"$pgdata/postgresql.conf" <<CONF
port = $pgport
listen_addresses = ''
unix_socket_directories = '/tmp'
shared_preload_libraries = 'rocketmq_stream'
rocketmq_stream.namesrv_addr = '$namesrv'
CONF
fi
if ! "${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/../postgresql.log" -w start >/dev/null
fi
psql=("${as_pg[@]}" psql -X -h /tmp -p "$pgport" -U postgres -d postgres -v ON_ERROR_STOP=1)

echo "--- topic, and messages from the official Java producer"
"${psql[@]}" -qc "CREATE EXTENSION IF NOT EXISTS rocketmq_stream" \
    -c "SELECT rmq_create_topic('demo_orders', 4)" >/dev/null
RMQ_JAVA_BUILD=${RMQ_JAVA_BUILD:-$RMQ_HOME/java-classes} \
    "$top/test/java/run.sh" InteropProduce "$namesrv" demo_orders /dev/null
echo "--- and from SQL"
"${psql[@]}" <<'SQL'
SELECT rmq_send('demo_orders', convert_to('{"order": ' || i || ', "amount": ' || i * 10 || '}', 'UTF8'),
                'order', 'order-' || i, jsonb_build_object('source', 'psql')) AS msg_id
FROM generate_series(1, 3) i;

\echo --- every queue: its offsets on the broker
SELECT * FROM rmq_queues('demo_orders');

\echo --- the messages, read back with rmq_create_rdd over [min, max) of every queue
SELECT queue_id, queue_offset, tags, keys,
       CASE WHEN tags IN ('TagBin', 'TagBig') THEN '(binary) ' || left(encode(body, 'hex'), 24)
            ELSE left(convert_from(body, 'UTF8'), 40) END AS body,
       length(body) AS bytes, properties->>'source' AS source
FROM rmq_create_rdd('demo_group',
       (SELECT array_agg(rmq_offset_range('demo_orders', broker, queue_id, min_offset, max_offset))
        FROM rmq_queues('demo_orders')))
ORDER BY queue_id, queue_offset;
SQL
cat <<DONE

The demo is running:
  psql -h /tmp -p $pgport -U postgres          # PostgreSQL with rocketmq_stream
  name server $namesrv, broker 127.0.0.1:$RMQ_BROKER_PORT (state in $RMQ_HOME)
Stop both with:  bash scripts/demo.sh stop
DONE
