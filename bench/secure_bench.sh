#!/usr/bin/env bash
# What TLS and signed requests cost a stream, side by side in one run on one
# machine: two private brokers, one plain and one with ACL 2.0 and enforced
# TLS (test/broker/broker.sh RMQ_ACL=1 RMQ_TLS=1), each topic of 4 queues
# filled with N messages of B bytes (rmq_send_batch), then drained by a
# stream into an unindexed table: plain (namesrv_addr), and through a
# foreign server with tls 'verify-full' and a user mapping (every request
# signed with HMAC-SHA1).  Reported: drain time and rate from
# rmq_create_stream until the stored offsets reach N (polled every 100 ms),
# the worker's CPU per message (/proc/<pid>/stat), and the ratio.  The
# drains alternate ROUNDS times (plain, secured, plain, ...) and the best of
# each is kept.  Writes bench/results-secure.md.  Run as root.
#
#   bash bench/secure_bench.sh            # N=500000 B=100 ROUNDS=2
#
# Environment: N, B, ROUNDS, STREAM_OPTS ('{"batch_interval": 1000,
# "batch_rows": 10000}'), PG_PORT=5521, plain broker ports 16876/15911,
# secured 18876/14911 (each broker also binds BROKER_PORT-2 and +1),
# BUILD=1, OUT=bench/results-secure.md
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-500000} B=${B:-100} ROUNDS=${ROUNDS:-2}
STREAM_OPTS=${STREAM_OPTS:-'{"batch_interval": 1000, "batch_rows": 10000}'}
PG_PORT=${PG_PORT:-5521} BUILD=${BUILD:-1}
export RMQ_LIB=${RMQ_LIB:-/var/cache/rocketmq_stream/lib}
out=${OUT:-$top/bench/results-secure.md}
bindir=$(pg_config --bindir)
log() { echo "secure_bench: $*" >&2; }
die() { log "$*"; exit 1; }
((EUID == 0)) || die "run as root (PostgreSQL runs as user postgres)"
bash "$top/scripts/install-deps.sh"
if [[ $BUILD == 1 ]]; then make -s -C "$top" && make -s -C "$top" install; fi

work=$(mktemp -d /tmp/rmq_secbench.XXXXXX)
chown postgres "$work"
plain=(env RMQ_HOME=/tmp/rmq_secbench_plain RMQ_NAMESRV_PORT=16876 RMQ_BROKER_PORT=15911)
secured=(env RMQ_HOME=/tmp/rmq_secbench_secured RMQ_NAMESRV_PORT=18876 RMQ_BROKER_PORT=14911 RMQ_ACL=1 RMQ_TLS=1)
brokers=0 pg_started=0
cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM
    ((pg_started)) && { runuser -u postgres -- "$bindir/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true; }
    ((brokers >= 1)) && { "${plain[@]}" bash "$top/test/broker/broker.sh" stop || true; }
    ((brokers >= 2)) && { "${secured[@]}" bash "$top/test/broker/broker.sh" stop || true; }
    ((rc != 0)) && { log "FAILED (exit $rc)"; tail -n 20 "$work/pg.log" >&2 2>/dev/null || true; }
    rm -rf "$work" /tmp/rmq_secbench_plain/store /tmp/rmq_secbench_secured/store
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_broker() {  # start_broker NAME ENV...
    local name=$1
    shift
    "$@" bash "$top/test/broker/broker.sh" stop >/dev/null 2>&1 || true
    rm -rf "/tmp/rmq_secbench_$name/store"
    brokers=$((brokers + 1))
    "$@" bash "$top/test/broker/broker.sh" start
}
start_broker plain "${plain[@]}"
start_broker secured "${secured[@]}"
eval "$("${secured[@]}" bash "$top/test/broker/broker.sh" env)"   # RMQ_ACL_*, RMQ_TLS_CA
# The TLS files live under the broker's home; PostgreSQL reads the CA.
chmod -R a+rX /tmp/rmq_secbench_secured/tls

runuser -u postgres -- "$bindir/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
cat >>"$work/pg/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'rocketmq_stream'
max_worker_processes = 16
CONF
pg_started=1
runuser -u postgres -- "$bindir/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
q() { runuser -u postgres -- psql -X -At -q -h "$work" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 -c "$1"; }
q "CREATE EXTENSION rocketmq_stream" >/dev/null
q "CREATE SERVER plain FOREIGN DATA WRAPPER rocketmq_stream OPTIONS (namesrv_addr '127.0.0.1:16876')"
q "CREATE SERVER sec FOREIGN DATA WRAPPER rocketmq_stream OPTIONS (namesrv_addr '127.0.0.1:18876',
     tls 'verify-full', tls_root_cert '$RMQ_TLS_CA')"
q "CREATE USER MAPPING FOR postgres SERVER sec OPTIONS (access_key '$RMQ_ACL_USER', secret_key '$RMQ_ACL_SECRET')"

T_plain=sb_plain
T_sec=$RMQ_ACL_TOPIC
q "SELECT rmq_create_topic('$T_plain', 4, options => '{\"server\": \"plain\"}')" >/dev/null
fill() {  # fill SERVER TOPIC
    log "filling $2 on $1 with $N x $B B ..."
    q "DO \$\$
    DECLARE sent bigint := 0; k int := 0;
    BEGIN
        WHILE sent < $N LOOP
            PERFORM rmq_send_batch('$2', array_agg(convert_to(rpad((sent + g)::text || ' ', $B, 'x'), 'UTF8')),
                                   options => jsonb_build_object('server', '$1', 'queue_id', k % 4))
            FROM generate_series(0, least(256, $N - sent) - 1) g;
            sent := sent + least(256, $N - sent);
            k := k + 1;
        END LOOP;
    END \$\$"
}
fill plain "$T_plain"
fill sec "$T_sec"

now() { date +%s.%N; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A best_s best_cpu
run=0
declare -A best_bcpu
broker_pid() { cat "/tmp/rmq_secbench_$1/broker.pid"; }
drain() {  # drain LABEL SERVER TOPIC GROUP
    local label=$1 server=$2 topic=$3 group=$4 t0 t1 pid c0 c1 s got rows bpid b0 b1 bcpu
    run=$((run + 1))
    q "CREATE TABLE t_$run (queue_id int, queue_offset bigint, body bytea)"
    q "DELETE FROM rmq_offset WHERE consumer_group = '$group'"
    opts=${STREAM_OPTS%\}}
    [[ $opts =~ [^{[:space:]] ]] && opts+=', '
    opts+="\"server\": \"$server\"}"
    t0=$(now)
    q "SELECT 1 FROM rmq_create_stream('s_$run', '$topic', '$group', 't_$run', force_specific => true, options => '$opts')" >/dev/null
    pid=
    while [[ -z $pid ]]; do
        pid=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'rocketmq_stream s_$run/0'")
        [[ -z $pid ]] && sleep 0.02
    done
    c0=$(ticks "$pid")
    bpid=$(broker_pid "$label")
    b0=$(ticks "$bpid")
    while :; do
        got=$(q "SELECT coalesce(sum(next_offset), 0) FROM rmq_offset WHERE consumer_group = '$group'")
        ((got >= N)) && break
        sleep 0.1
    done
    t1=$(now)
    c1=$(ticks "$pid")
    b1=$(ticks "$bpid")
    q "SELECT rmq_drop_stream('s_$run')" >/dev/null
    rows=$(q "SELECT count(*) = $N AND count(DISTINCT (queue_id, queue_offset)) = $N FROM t_$run")
    [[ $rows == t ]] || die "drain $label: the table does not hold the $N messages once each"
    q "DROP TABLE t_$run"
    s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    cpu=$(awk -v c="$((c1 - c0))" -v hz="$hz" -v n="$N" 'BEGIN { printf "%.2f", c / hz * 1e6 / n }')
    bcpu=$(awk -v c="$((b1 - b0))" -v hz="$hz" -v n="$N" 'BEGIN { printf "%.2f", c / hz * 1e6 / n }')
    log "drain $label: $s s, worker CPU $cpu us/msg, broker CPU $bcpu us/msg"
    if [[ -z ${best_s[$label]:-} ]] || awk -v a="$s" -v b="${best_s[$label]}" 'BEGIN { exit !(a < b) }'; then
        best_s[$label]=$s
        best_cpu[$label]=$cpu
        best_bcpu[$label]=$bcpu
    fi
}
# The official client over the same two brokers: how much of the cost is
# the broker's (TLS and signature checks there, on the same cores).
jdrain() {  # jdrain LABEL NAMESRV TOPIC GROUP [secured]
    local o s
    if [[ ${5:-} == secured ]]; then
        o=$(env RMQ_HOME="$work" "$top/test/java/run.sh" LitePullBench "$2" "$3" "$4" "$N")
    else
        o=$(env -u RMQ_ACL_USER -u RMQ_ACL_SECRET -u RMQ_TLS -u RMQ_TLS_CA RMQ_HOME="$work" \
            "$top/test/java/run.sh" LitePullBench "$2" "$3" "$4" "$N")
    fi
    s=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$o")
    log "java $1: $s s"
    if [[ -z ${best_s[java_$1]:-} ]] || awk -v a="$s" -v b="${best_s[java_$1]}" 'BEGIN { exit !(a < b) }'; then
        best_s[java_$1]=$s
    fi
}
for ((r = 1; r <= ROUNDS; r++)); do
    drain plain plain "$T_plain" sb_group_plain
    drain secured sec "$T_sec" "$RMQ_ACL_GROUP"
    jdrain plain 127.0.0.1:16876 "$T_plain" sb_java_plain
    jdrain secured 127.0.0.1:18876 "$T_sec" "$RMQ_ACL_GROUP" secured
done

rate() { awk -v n="$N" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
rp=$(rate "${best_s[plain]}") rs=$(rate "${best_s[secured]}")
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cat >"$out" <<EOF
# TLS and signed requests: what they cost a stream

$(date -u '+%Y-%m-%d %H:%M UTC'), \`bench/secure_bench.sh\` at $(git -C "$top" describe --always --dirty 2>/dev/null),
$(nproc) cores ($cpu). Two brokers on this machine: plain, and ACL 2.0 with enforced TLS.
$N messages of $B B over 4 queues each; stream options \`$STREAM_OPTS\`; best of $ROUNDS alternating drains.

| drain | seconds | msg/s | vs plain | worker CPU per message | broker CPU per message |
|---|---|---|---|---|---|
| plain (namesrv_addr) | ${best_s[plain]} | $rp | 1.00 | ${best_cpu[plain]} µs | ${best_bcpu[plain]} µs |
| TLS verify-full + signed (server + user mapping) | ${best_s[secured]} | $rs | $(awk -v a="$rs" -v b="$rp" 'BEGIN { printf "%.2f", a / b }') | ${best_cpu[secured]} µs | ${best_bcpu[secured]} µs |
| official Java client (lite pull, no sink), plain | ${best_s[java_plain]} | $(rate "${best_s[java_plain]}") | $(awk -v a="$(rate "${best_s[java_plain]}")" -v b="$rp" 'BEGIN { printf "%.2f", a / b }') | | |
| official Java client, TLS + signed | ${best_s[java_secured]} | $(rate "${best_s[java_secured]}") | $(awk -v a="$(rate "${best_s[java_secured]}")" -v b="$rp" 'BEGIN { printf "%.2f", a / b }') | | |

Secured over plain: the stream $(awk -v a="$rs" -v b="$rp" 'BEGIN { printf "%.2f", a / b }'), the Java client $(awk -v a="${best_s[java_plain]}" -v b="${best_s[java_secured]}" 'BEGIN { printf "%.2f", a / b }').

The secured broker does the TLS and signature work on its side too, on the same cores.
EOF
log "wrote $out"
