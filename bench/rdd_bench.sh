#!/usr/bin/env bash
# Benchmark of rmq_create_rdd against the official Java lite-pull consumer,
# side by side in one run on one machine (issue: foundation §6).
#
# Pre-fills a topic with N messages of B bytes over 8 queues on a private
# broker, then reads all of them, alternating, R times each:
#   - SELECT count(*) FROM rmq_create_rdd(...) in a PostgreSQL 15 backend
#   - the Java DefaultLitePullConsumer (assign all queues, batch 32, no sink)
# and reports both rates, their ratio (median of R), and the backend's peak
# memory during the read (VmHWM growth over its idle size).  Run as root.
#
#   N=1000000 B=100 R=3 bash bench/rdd_bench.sh
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-1000000} B=${B:-100} R=${R:-3}
export RMQ_LIB=${RMQ_LIB:-/var/cache/rocketmq_stream/lib}
export RMQ_HOME=/tmp/rmq_stream_bench RMQ_NAMESRV_PORT=28876 RMQ_BROKER_PORT=29911
ns=127.0.0.1:$RMQ_NAMESRV_PORT
# (ports below the ephemeral range, 32768+, so a client socket never holds them)
out=${OUT:-$top/bench/results-rdd.md}
work=$(mktemp -d /tmp/rmq_bench.XXXXXX)
chown postgres "$work"
bindir=$(pg_config --bindir)
pg() { runuser -u postgres -- "$@"; }

bash "$top/scripts/install-deps.sh"
make -s -C "$top" && make -s -C "$top" install
bash "$top/test/broker/broker.sh" stop >/dev/null 2>&1 || true
rm -rf "$RMQ_HOME/store"
cleanup() {
    pg "$bindir/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
    bash "$top/test/broker/broker.sh" stop
    rm -rf "$work"
}
trap cleanup EXIT
bash "$top/test/broker/broker.sh" start
export RMQ_JAVA_BUILD=$RMQ_HOME/java-classes

pg "$bindir/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
cat >>"$work/pg/postgresql.conf" <<CONF
port = 5498
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'rocketmq_stream'
rocketmq_stream.namesrv_addr = '$ns'
CONF
pg "$bindir/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
psql=(runuser -u postgres -- psql -X -At -h "$work" -p 5498 -d postgres -v ON_ERROR_STOP=1)
"${psql[@]}" -qc "CREATE EXTENSION rocketmq_stream" -c "SELECT rmq_create_topic('bench_rdd', 8)" >/dev/null

echo "filling bench_rdd with $N x $B B ..." >&2
"$top/test/java/run.sh" BenchFill "$ns" bench_rdd "$N" "$B" >&2
# The broker's max offsets trail the last acknowledged send for a moment.
for ((t = 0; t < 600; t++)); do
    total=$("${psql[@]}" -c "SELECT sum(max_offset - min_offset) FROM rmq_queues('bench_rdd')")
    [[ $total == "$N" ]] && break
    sleep 0.1
done
[[ $total == "$N" ]] || { echo "expected $N messages, broker holds $total" >&2; exit 1; }

sql_run() {  # prints "rate peak_kb"
    local pidf=$work/pid
    rm -f "$pidf"
    # One session: note the pid, read, then read the peak from /proc.
    "${psql[@]}" >"$work/sql.out" 2>&1 <<SQL &
\o $pidf
SELECT pg_backend_pid();
\o
SELECT pg_sleep(0.5);
SELECT c.n, extract(epoch FROM clock_timestamp() - t0)
FROM (SELECT clock_timestamp() AS t0) s,
     LATERAL (SELECT count(*) AS n FROM rmq_create_rdd('bench_g',
         (SELECT array_agg(rmq_offset_range('bench_rdd', broker, queue_id, min_offset, max_offset))
          FROM rmq_queues('bench_rdd')))) c
;
SELECT pg_sleep(0.5);
SQL
    local spid=$!
    while [[ ! -s $pidf ]]; do sleep 0.05; done
    local bpid; bpid=$(tr -d ' \n' <"$pidf")
    local idle; idle=$(awk '/VmRSS/ {print $2}' "/proc/$bpid/status")
    local peak=0 cur
    while kill -0 "$spid" 2>/dev/null; do
        cur=$(awk '/VmHWM/ {print $2}' "/proc/$bpid/status" 2>/dev/null || echo 0)
        [[ -n $cur && $cur -gt $peak ]] && peak=$cur
        sleep 0.1
    done
    wait "$spid"
    local line; line=$(grep '|' "$work/sql.out" | tail -1)
    local n=${line%%|*} secs=${line##*|}
    [[ $n == "$N" ]] || { echo "rmq_create_rdd returned $n rows, expected $N" >&2; cat "$work/sql.out" >&2; exit 1; }
    awk -v n="$n" -v s="$secs" -v p="$peak" -v i="$idle" 'BEGIN {printf "%.0f %d\n", n / s, p - i}'
}

java_run() {  # prints "rate"
    local line
    line=$("$top/test/java/run.sh" LitePullBench "$ns" bench_rdd "bench_java_$RANDOM$RANDOM" "$N" 2>/dev/null | tail -1)
    [[ $line == messages=$N* ]] || { echo "LitePullBench: $line" >&2; exit 1; }
    echo "${line##*rate=}" | cut -d. -f1
}

sql_rates=() java_rates=() peaks=()
for ((i = 1; i <= R; i++)); do
    read -r rate peak < <(sql_run)
    sql_rates+=("$rate"); peaks+=("$peak")
    jr=$(java_run); java_rates+=("$jr")
    echo "round $i: rmq_create_rdd $rate msg/s (peak +${peak} kB), Java lite pull $jr msg/s" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
ms=$(median "${sql_rates[@]}") mj=$(median "${java_rates[@]}") mp=$(median "${peaks[@]}")
ratio=$(awk -v a="$ms" -v b="$mj" 'BEGIN {printf "%.2f", a / b}')

{
    echo "# rmq_create_rdd vs the Java lite-pull consumer"
    echo
    echo "Run: \`N=$N B=$B R=$R bash bench/rdd_bench.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores,"
    echo "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)."
    echo "Topic of $N messages of $B bytes over 8 queues on one local broker (RocketMQ 5.3.3);"
    echo "both readers read every message of every queue; medians of $R alternating rounds."
    echo
    echo "| reader | msg/s (median) | rounds |"
    echo "|---|---|---|"
    echo "| \`SELECT count(*) FROM rmq_create_rdd(...)\` | $ms | ${sql_rates[*]} |"
    echo "| Java \`DefaultLitePullConsumer\` (batch 32, no sink) | $mj | ${java_rates[*]} |"
    echo
    echo "**Ratio rmq_create_rdd / Java: $ratio.** Backend peak memory during the read: +${mp} kB over"
    echo "its idle RSS (VmHWM; rounds: ${peaks[*]} kB)."
} >"$out"
cat "$out"
