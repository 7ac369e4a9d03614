#!/usr/bin/env bash
# Benchmark of consumer-group membership ("membership": "group"), in one run
# on one machine:
#   1. drain: a backlog of N messages of B bytes over QUEUES queues, drained
#      into unindexed tables by a plain stream on one server (the baseline),
#      then by one group of 1, 2 and 3 PostgreSQL servers (streams created
#      on all at once); timed from the creation until the group's offsets
#      reach N (on the broker for the group: members commit there after
#      every batch; the baseline's from its own rmq_offset), polled every
#      100 ms; the tables hold every message exactly once (checked).  After
#      an uncounted warm-up drain, the four runs alternate ROUNDS times and
#      the best of each is reported.
#   2. rebalance pause: under a steady load of RATE msg/s, a group of two
#      servers is joined by a third: from its rmq_create_stream, how long
#      until it holds its share, and until every queue's committed offset on
#      the broker has moved again; afterwards, every message exactly once.
# Writes bench/results-group.md.  Run as root (PostgreSQL runs as postgres).
#
#   bash bench/group_bench.sh                 # N=1000000
#   N=200000 bash bench/group_bench.sh        # a quick check
#
# Environment (defaults): N=1000000 B=100 QUEUES=16 ROUNDS=2 RATE=1000 JOIN_AFTER=15
#   STREAM_OPTS='{"batch_interval": 1000, "batch_rows": 10000}'
#   GB_NAMESRV_PORT=30876 GB_BROKER_PORT=31911 (the broker also binds
#   BROKER_PORT-2 and +1); PG_PORTS="5511 5512 5513"; BUILD=1 (make install
#   first); OUT=bench/results-group.md
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-1000000} B=${B:-100} QUEUES=${QUEUES:-16} RATE=${RATE:-1000} JOIN_AFTER=${JOIN_AFTER:-15}
ROUNDS=${ROUNDS:-2}
STREAM_OPTS=${STREAM_OPTS:-'{"batch_interval": 1000, "batch_rows": 10000}'}
read -r -a ports <<<"${PG_PORTS:-5511 5512 5513}"
BUILD=${BUILD:-1}
export RMQ_LIB=${RMQ_LIB:-/var/cache/rocketmq_stream/lib}
export RMQ_HOME=/tmp/rmq_stream_gbench
export RMQ_NAMESRV_PORT=${GB_NAMESRV_PORT:-30876} RMQ_BROKER_PORT=${GB_BROKER_PORT:-31911}
export RMQ_JAVA_BUILD=$RMQ_HOME/java-classes
ns=127.0.0.1:$RMQ_NAMESRV_PORT
out=${OUT:-$top/bench/results-group.md}
bindir=$(pg_config --bindir)
log() { echo "group_bench: $*" >&2; }
die() { log "$*"; exit 1; }

((EUID == 0)) || die "run as root (PostgreSQL runs as user postgres)"
bash "$top/scripts/install-deps.sh"
if [[ $BUILD == 1 ]]; then make -s -C "$top" && make -s -C "$top" install; fi

work=$(mktemp -d /tmp/rmq_gbench.XXXXXX)
chown postgres "$work"
pg() { runuser -u postgres -- "$@"; }
started=() broker_started=0 producer=
cleanup() {
    local rc=$? d
    trap - EXIT
    trap '' INT TERM
    [[ -n $producer ]] && kill "$producer" 2>/dev/null
    for d in "${started[@]}"; do
        pg "$bindir/pg_ctl" -D "$d" -m fast -t 60 -w stop >/dev/null 2>&1 ||
            pg "$bindir/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    done
    ((broker_started)) && { bash "$top/test/broker/broker.sh" stop || true; }
    ((rc != 0)) && { log "FAILED (exit $rc)"; tail -n 20 "$work"/pg1.log >&2 2>/dev/null || true; }
    rm -rf "$work" "$RMQ_HOME/store"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$top/test/broker/broker.sh" stop >/dev/null 2>&1 || true
rm -rf "$RMQ_HOME/store"
broker_started=1
bash "$top/test/broker/broker.sh" start

for i in 1 2 3; do
    d=$work/pg$i
    pg "$bindir/initdb" -D "$d" -A trust -U postgres >/dev/null
    cat >>"$d/postgresql.conf" <<CONF
port = ${ports[$((i - 1))]}
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'rocketmq_stream'
max_worker_processes = 16
rocketmq_stream.namesrv_addr = '$ns'
CONF
    started+=("$d")
    pg "$bindir/pg_ctl" -D "$d" -l "$work/pg$i.log" -w start >/dev/null
done
q() {  # q SERVER SQL
    runuser -u postgres -- psql -X -At -q -h "$work" -p "${ports[$(($1 - 1))]}" -d postgres -v ON_ERROR_STOP=1 -c "$2"
}
for i in 1 2 3; do q "$i" "CREATE EXTENSION rocketmq_stream" >/dev/null; done
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

T=gbench_t
q 1 "SELECT rmq_create_topic('$T', $QUEUES)" >/dev/null
log "filling $T with $N x $B B over $QUEUES queues ..."
"$top/test/java/run.sh" BenchFill "$ns" "$T" "$N" "$B" >&2

# Every message of the topic exactly once over the servers' tables named $1.
check_once() {  # check_once TABLE SERVERS...
    local t=$1 i rows=0 distinct
    shift
    : >"$work/keys"
    for i in "$@"; do
        q "$i" "SELECT queue_id || ' ' || queue_offset FROM $t" >>"$work/keys"
    done
    rows=$(wc -l <"$work/keys")
    distinct=$(sort -u "$work/keys" | wc -l)
    echo "$rows $distinct"
}

# STREAM_OPTS with "membership": "group" (it is a JSON object).
member_opts() { local o=${STREAM_OPTS%\}}; [[ $o =~ [^{[:space:]] ]] && o+=', '; echo "$o\"membership\": \"group\"}"; }
declare -A rate elapsed verdict
drain() {  # drain LABEL MEMBERSHIP SERVERS...
    local label=$1 member=$2 g="g_$1_${round:-0}" i t0 t1 got opts s rows distinct
    shift 2
    opts=$STREAM_OPTS
    [[ $member == group ]] && opts=$(member_opts)
    for i in "$@"; do q "$i" "CREATE TABLE t_$label (queue_id int, queue_offset bigint, body bytea)"; done
    log "drain $label: $# server(s), membership $member ..."
    t0=$(now)
    for i in "$@"; do
        q "$i" "SELECT 1 FROM rmq_create_stream('s_$label', '$T', '$g', 't_$label', options => '$opts')" >/dev/null &
    done
    wait
    while :; do
        if [[ $member == group ]]; then
            got=$(q 1 "SELECT coalesce(sum(broker_offset), 0) FROM rmq_broker_offsets('$g', '$T')")
        else
            got=$(q 1 "SELECT coalesce(sum(next_offset), 0) FROM rmq_offset WHERE consumer_group = '$g'")
        fi
        ((got >= N)) && break
        sleep 0.1
    done
    t1=$(now)
    for i in "$@"; do q "$i" "SELECT rmq_drop_stream('s_$label')" >/dev/null; done
    s=$(secs "$t0" "$t1")
    read -r rows distinct < <(check_once "t_$label" "$@")
    [[ $rows == "$N" && $distinct == "$N" ]] || die "drain $label: $rows rows, $distinct distinct, want $N"
    for i in "$@"; do q "$i" "DROP TABLE t_$label"; done
    log "drain $label: $s s"
    [[ $label == warmup ]] && return
    verdict[$label]="${verdict[$label]:+${verdict[$label]}; }$rows rows, $distinct distinct"
    if [[ -z ${elapsed[$label]:-} ]] || awk -v a="$s" -v b="${elapsed[$label]}" 'BEGIN { exit !(a < b) }'; then
        elapsed[$label]=$s
        rate[$label]=$(awk -v n="$N" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
    fi
}
# The first drain also reads the broker's commit log into the page cache:
# not counted.  Then the runs alternate, ROUNDS times; the best of each counts.
drain warmup none 1
for ((round = 1; round <= ROUNDS; round++)); do
    drain plain1 none 1
    drain group1 group 1
    drain group2 group 1 2
    drain group3 group 1 2 3
done

# ------------------------------------------------------------- rebalance
T2=gbench_live
G2=g_live
q 1 "SELECT rmq_create_topic('$T2', $QUEUES)" >/dev/null
opts=$(member_opts)
for i in 1 2 3; do q "$i" "CREATE TABLE t_live (queue_id int, queue_offset bigint, body bytea)"; done
stop=$work/stop
"$top/test/java/run.sh" SteadyProduce "$ns" "$T2" "$RATE" "$stop" >"$work/producer.out" 2>&1 &
producer=$!
for i in 1 2; do q "$i" "SELECT 1 FROM rmq_create_stream('s_live', '$T2', '$G2', 't_live', options => '$opts')" >/dev/null; done
log "rebalance: two servers under $RATE msg/s for $JOIN_AFTER s, then a third joins ..."
sleep "$JOIN_AFTER"
offsets() { q 1 "SELECT string_agg(coalesce(broker_offset, -1)::text, ' ' ORDER BY broker, queue_id) FROM rmq_broker_offsets('$G2', '$T2')"; }
read -r -a before <<<"$(offsets)"
share=$(( QUEUES / 3 ))
t_join=$(now)
q 3 "SELECT 1 FROM rmq_create_stream('s_live', '$T2', '$G2', 't_live', options => '$opts')" >/dev/null
t_held= t_flow=
declare -a moved_at
while :; do
    t=$(now)
    if [[ -z $t_held ]] && (( $(q 3 "SELECT count(*) FROM rmq_stream_status WHERE stream = 's_live' AND topic = '$T2' AND member IS NOT NULL") >= share )); then
        t_held=$t
    fi
    read -r -a cur <<<"$(offsets)"
    for k in "${!cur[@]}"; do
        [[ -z ${moved_at[$k]:-} ]] && ((cur[k] > before[k])) && moved_at[$k]=$t
    done
    if [[ -n $t_held ]] && ((${#moved_at[@]} == ${#cur[@]})); then
        t_flow=$t
        for k in "${!cur[@]}"; do before[k]=${cur[k]}; done
        break
    fi
    (( $(secs "$t_join" "$t" | cut -d. -f1) > 180 )) && die "rebalance: not settled within 180 s"
    sleep 0.1
done
# Every queue moved once since the join; a queue handed over moved only after
# its new owner started: the slowest of them is the pause.
sorted=$(for k in "${!moved_at[@]}"; do secs "$t_join" "${moved_at[$k]}"; echo; done | sort -n)
p50=$(sed -n "$(( (${#moved_at[@]} + 1) / 2 ))p" <<<"$sorted")
held_s=$(secs "$t_join" "$t_held")
flow_s=$(secs "$t_join" "$t_flow")
touch "$stop"
wait "$producer" || true
producer=
sent=$(q 1 "SELECT sum(max_offset) FROM rmq_queues('$T2')")
while (( $(q 1 "SELECT coalesce(sum(broker_offset), 0) FROM rmq_broker_offsets('$G2', '$T2')") < sent )); do sleep 0.2; done
read -r live_rows live_distinct < <(check_once t_live 1 2 3)
[[ $live_rows == "$sent" && $live_distinct == "$sent" ]] || die "rebalance: $live_rows rows, $live_distinct distinct, want $sent"
log "rebalance: share held after $held_s s, every queue moving again after $flow_s s (p50 $p50 s); $sent messages exactly once"

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cat >"$out" <<EOF
# Consumer-group membership: drain rate over servers, rebalance pause

$(date -u '+%Y-%m-%d %H:%M UTC'), \`bench/group_bench.sh\` at $(git -C "$top" describe --always --dirty 2>/dev/null),
$(nproc) cores ($cpu), one broker, every PostgreSQL server on this machine.
$N messages of $B B over $QUEUES queues; stream options \`$STREAM_OPTS\`; best of $ROUNDS alternating runs
after a warm-up drain.

| run | servers | seconds | msg/s | vs plain stream | checks (each run) |
|---|---|---|---|---|---|
| plain stream (no membership) | 1 | ${elapsed[plain1]} | ${rate[plain1]} | 1.00 | ${verdict[plain1]} |
| group | 1 | ${elapsed[group1]} | ${rate[group1]} | $(ratio "${rate[group1]}" "${rate[plain1]}") | ${verdict[group1]} |
| group | 2 | ${elapsed[group2]} | ${rate[group2]} | $(ratio "${rate[group2]}" "${rate[plain1]}") | ${verdict[group2]} |
| group | 3 | ${elapsed[group3]} | ${rate[group3]} | $(ratio "${rate[group3]}" "${rate[plain1]}") | ${verdict[group3]} |

Rebalance under $RATE msg/s: a third server joins a group of two. Its share
($share or more of $QUEUES queues) is held ${held_s} s after its \`rmq_create_stream\`; every
queue's offset on the broker has moved again after ${flow_s} s (median queue ${p50} s; with
\`batch_interval\` 1000 ms a queue that is not handed over moves about once a second anyway).
Afterwards $sent messages, each exactly once over the three servers' tables.

All servers share the machine's $(nproc) cores with the broker and the producer, so more
servers cannot add CPU here: the runs show what membership costs and that the rate holds
as the queues are shared out, not how it scales across machines.
EOF
log "wrote $out"
