#!/usr/bin/env bash
# Benchmark of streams (rmq_create_stream) against their ceilings and against
# the loop users write today, side by side in one run on one machine.
#
# On a private broker and a private PostgreSQL 15 (both started here, both
# stopped by pid on exit, success or failure), for a topic of N messages of
# B bytes over 8 queues, and again for N1K messages of 1 KiB:
#   1. stream drain: a stream (batch_interval 1000 ms, batch_rows 10000) into
#      an unindexed table, timed from rmq_create_stream until the stored
#      offsets sum to N (polled every 100 ms); checks count(*) and distinct
#      (queue_id, queue_offset); the worker's CPU (/proc/<pid>/stat) and
#      memory (VmRSS, RssAnon, RssShmem every second; VmHWM at the end);
#      the batches (rmq_batch): rows, end reasons, gaps between batches
#   2. read ceiling: test/java LitePullBench (official lite-pull consumer,
#      batch 32, no sink) draining the same topic
#   3. write ceiling: server-side COPY (binary) of N pre-generated rows of the
#      same shape into an identical table, 10000 rows per COPY/transaction
#   4. user loop: test/java JdbcLoop (lite-pull consumer + JDBC, one
#      transaction per poll: executeBatch of the rows + offsets upsert);
#      and (LOOP_ROWS=1) the same loop written row at a time (executeUpdate
#      per message), as a loop without batching is
#   5. JSON bodies into columns: a topic of JSON_N JSON objects of B bytes
#      (five typed fields and padding, test/java BenchFill ... json) drained
#      by a stream of format message (body bytea) and one of format
#      json_columns (bigint, text, numeric, boolean, timestamptz columns),
#      alternately JSON_RUNS times each, same drain as 1.
# and then, with track_commit_timestamp on, the end-to-end latency of a
# stream at LAT_RATE msg/s for LAT_SECONDS s (test/java LatencyProduce), for
# each batch_interval in LAT_INTERVALS: per row, the commit timestamp of the
# transaction that inserted it minus the message's born timestamp.
#
# Writes bench/results-stream.md and bench/stream_bench.png.  Run as root
# (PostgreSQL runs as user postgres).
#
#   bash bench/stream_bench.sh                      # full size: N=2000000
#   N=6000000 bash bench/stream_bench.sh            # drains of about 60 s at
#                                                   # ~100k msg/s (the report
#                                                   # suggests N when shorter)
#   N=200000 LAT_SECONDS=20 bash bench/stream_bench.sh   # a quick check
#
# Environment (defaults):
#   N=2000000 B=100       messages and body bytes of the main topic
#   N1K=N/4 B1K=1024      the second topic (N1K=0 skips it)
#   JSON_N=N JSON_RUNS=1  the JSON topic (5.; JSON_N=0 skips it), and how many
#                         drains of each format
#   LOOP_MAX_S=300        stop the user loop after this many seconds and
#                         report its rate so far (it may be slow)
#   LOOP_ROWS=1           also run the user loop written row at a time (0: skip)
#   STREAM_OPTS='{"batch_interval": 1000, "batch_rows": 10000}'  drain options
#   LAT_RATE=1000 LAT_SECONDS=60 LAT_INTERVALS="10 50 1000"  (0 s skips)
#   LAT_SYNC="default on"  the latency streams' synchronous_commit option, each
#                         in turn ("default": not set, which is off); a value
#                         may repeat ("on default on default")
#   LAT_SETTLE=30         seconds of rest between the drains and the latency runs
#   LAT_EXTRA_OPTS='{}'   more options for the latency streams, e.g.
#                         '{"batch_linger": 5}'
#   DRAIN_TIMEOUT=3600    seconds before a drain counts as stuck
#   SB_NAMESRV_PORT=26876 SB_BROKER_PORT=27911  the bench broker (which also
#                         binds BROKER_PORT-2 and +1); SB_HOME=/tmp/rmq_stream_sbench
#                         its state directory
#   PG_PORT=5497          the bench PostgreSQL's port (TCP on 127.0.0.1 for
#                         JDBC, and a Unix socket in its work directory)
#   PG_EXTRA_CONF=''      extra postgresql.conf lines
#   BUILD=1               make && make install first (0: use what is installed)
#   KEEP=0                1: keep the broker store and PostgreSQL work dir
#   OUT=bench/results-stream.md PNG=bench/stream_bench.png
# SC2001: sed on key=value lines reads better here; SC2034: results are read
# back by name (printf -v / ${!v}).
# shellcheck disable=SC2001,SC2034
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-2000000} B=${B:-100}
N1K=${N1K:-$((N / 4))} B1K=${B1K:-1024}
JSON_N=${JSON_N:-$N} JSON_RUNS=${JSON_RUNS:-1}
LOOP_MAX_S=${LOOP_MAX_S:-300} LOOP_ROWS=${LOOP_ROWS:-1}
LAT_RATE=${LAT_RATE:-1000} LAT_SECONDS=${LAT_SECONDS:-60} LAT_INTERVALS=${LAT_INTERVALS:-"10 50 1000"}
LAT_SYNC=${LAT_SYNC:-"default on"} LAT_SETTLE=${LAT_SETTLE:-30}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-3600}
PG_PORT=${PG_PORT:-5497}
BUILD=${BUILD:-1} KEEP=${KEEP:-0}
COPY_ROWS=10000
STREAM_OPTS=${STREAM_OPTS:-'{"batch_interval": 1000, "batch_rows": 10000}'}
LAT_EXTRA_OPTS=${LAT_EXTRA_OPTS:-'{}'}
export RMQ_LIB=${RMQ_LIB:-/var/cache/rocketmq_stream/lib}
# Ports below the ephemeral range (32768-60999), so that no client socket of
# whatever else runs here can hold one of them when the broker binds.
export RMQ_HOME=${SB_HOME:-/tmp/rmq_stream_sbench}
export RMQ_NAMESRV_PORT=${SB_NAMESRV_PORT:-26876} RMQ_BROKER_PORT=${SB_BROKER_PORT:-27911}
export RMQ_JAVA_BUILD=$RMQ_HOME/java-classes
ns=127.0.0.1:$RMQ_NAMESRV_PORT
out=${OUT:-$top/bench/results-stream.md}
png=${PNG:-$top/bench/stream_bench.png}
bindir=$(pg_config --bindir)
log() { echo "stream_bench: $*" >&2; }
die() { log "$*"; exit 1; }

((EUID == 0)) || die "run as root (PostgreSQL runs as user postgres)"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_open "$PG_PORT" && die "port $PG_PORT is in use (set PG_PORT)"

bash "$top/scripts/install-deps.sh"
if ! command -v gnuplot >/dev/null; then
    log "installing gnuplot-nox for the plot"
    DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends gnuplot-nox >/dev/null ||
        { DEBIAN_FRONTEND=noninteractive apt-get -q update >/dev/null &&
          DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends gnuplot-nox >/dev/null; } ||
        log "could not install gnuplot; no plot"
fi
if [[ $BUILD == 1 ]]; then make -s -C "$top" && make -s -C "$top" install; fi

work=$(mktemp -d /tmp/rmq_sbench.XXXXXX)
chown postgres "$work"
pg() { runuser -u postgres -- "$@"; }
bgpids=()  # background children still running (killed on exit)
untrack() { local p keep=(); for p in "${bgpids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done; bgpids=("${keep[@]}"); }
pg_started=0 broker_started=0
cleanup() {
    local rc=$? p
    # Finish cleaning up even if interrupted again.
    trap - EXIT
    trap '' INT TERM
    for p in "${bgpids[@]}"; do kill "$p" 2>/dev/null || true; done
    if ((pg_started)); then
        pg "$bindir/pg_ctl" -D "$work/pg" -m fast -t 60 -w stop >/dev/null 2>&1 ||
            pg "$bindir/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if ((broker_started)); then bash "$top/test/broker/broker.sh" stop || true; fi
    if ((rc != 0)); then
        log "FAILED (exit $rc); tail of the PostgreSQL log:"
        tail -n 30 "$work/pg.log" >&2 2>/dev/null || true
    fi
    if [[ $KEEP == 1 ]]; then
        log "kept $work and $RMQ_HOME/store"
    else
        rm -rf "$work" "$RMQ_HOME/store"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- set-up
bash "$top/test/broker/broker.sh" stop >/dev/null 2>&1 || true
rm -rf "$RMQ_HOME/store"
broker_started=1
# One retry: a start-up that fails (a port taken meanwhile) stops what it began.
bash "$top/test/broker/broker.sh" start || { sleep 5; bash "$top/test/broker/broker.sh" start; }
broker_pid=$(<"$RMQ_HOME/broker.pid")

pg "$bindir/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
cat >>"$work/pg/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
shared_preload_libraries = 'rocketmq_stream'
max_worker_processes = 16
rocketmq_stream.namesrv_addr = '$ns'
${PG_EXTRA_CONF:-}
CONF
# Which extension build ran: the installed library (loaded at server start, and again at the restart before the latency runs)
# and whether it is the one built from this tree.
so=$(pg_config --pkglibdir)/rocketmq_stream.so
so_desc="installed $(date -u -r "$so" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$so" | cut -c1-12)"
if cmp -s "$so" "$top/rocketmq_stream.so"; then so_desc+=", = the one built in this tree"; else so_desc+=", differs from $top/rocketmq_stream.so"; fi
git_desc=$(git -C "$top" describe --always --dirty 2>/dev/null || echo "not a git tree")
so_sum=$(sha256sum "$so" | cut -d' ' -f1)
pg_started=1
pg "$bindir/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
psql=(runuser -u postgres -- psql -X -At -q -h "$work" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1)
q() { "${psql[@]}" -c "$1"; }
jdbc="jdbc:postgresql://127.0.0.1:$PG_PORT/postgres?user=postgres"
"${psql[@]}" >/dev/null <<'SQL'
CREATE EXTENSION rocketmq_stream;
-- What the stream worker was doing at each poll of bench_wait: its wait
-- event (Extension = waiting for the broker), or CPU when not waiting.
CREATE TABLE bench_state (grp text, at timestamptz, state text);
-- Wait until a group's stored offsets sum to n, polling every 100 ms.  A
-- procedure that commits every round, so it holds no snapshot (which would
-- keep the workers' dead rmq_offset versions from being pruned).
CREATE PROCEDURE bench_wait(grp text, n bigint, timeout_s float8) LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
BEGIN
    LOOP
        SELECT coalesce(sum(next_offset), 0) INTO s FROM rmq_offset WHERE consumer_group = grp;
        INSERT INTO bench_state
            SELECT grp, clock_timestamp(), coalesce(wait_event_type || ':' || wait_event, 'CPU')
            FROM pg_stat_activity WHERE backend_type = 'rocketmq_stream worker';
        COMMIT;
        EXIT WHEN s >= n;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'group % reached % of % messages in % s', grp, s, n, timeout_s;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
-- rmq_batch keeps the last 1000 batches per stream: copies kept for the report.
CREATE TABLE bench_batch (LIKE rmq_batch, PRIMARY KEY (id));
SQL
snap_batches() { q "INSERT INTO bench_batch SELECT * FROM rmq_batch WHERE stream = '$1' ON CONFLICT (id) DO NOTHING" >/dev/null; }

# Fill a topic; its messages must all be there.
fill() {  # fill TOPIC N B [json]
    q "SELECT rmq_create_topic('$1', 8)" >/dev/null
    log "filling $1 with $2 x $3 B ${4:-} ..."
    "$top/test/java/run.sh" BenchFill "$ns" "$1" "$2" "$3" ${4:-} >&2
    # The consume queues trail the commit log (the broker dispatches them
    # asynchronously): wait for them to hold every message.
    local total tries
    for ((tries = 0; tries < 600; tries++)); do
        total=$(q "SELECT sum(max_offset - min_offset) FROM rmq_queues('$1')")
        [[ $total == "$2" ]] && return 0
        sleep 0.1
    done
    die "expected $2 messages in $1, broker holds $total"
}

ticks() {  # utime+stime of a pid, in clock ticks
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) && [[ -n $s ]] || return 1
    s=${s##*) }
    awk '{print $12 + $13}' <<<"$s"
}
hz=$(getconf CLK_TCK)
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a}'; }

# ------------------------------------------------------ 3. write ceiling
write_ceiling() {  # write_ceiling TAG N B  -> sets W_RATE W_SECS
    local tag=$1 n=$2 b=$3 dir=$work/copy_$1
    mkdir -p "$dir"
    log "[$tag] generating $n rows in COPY binary files of $COPY_ROWS rows ..."
    python3 - "$n" "$b" "$COPY_ROWS" "$dir" <<'PY'
import struct, sys
n, b, per, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
hdr = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
pad = b"x" * b
offs = [0] * 8
i = k = 0
while i < n:
    last = min(n, i + per)
    parts = [hdr]
    for j in range(i, last):
        q = (j // 256) % 8          # like BenchFill: batch of 256 -> queue (batch mod 8)
        parts.append(struct.pack("!hiiiqi", 3, 4, q, 8, offs[q], b))
        parts.append((b"%d " % j + pad)[:b])
        offs[q] += 1
    parts.append(struct.pack("!h", -1))
    with open("%s/c%06d.bin" % (out, k), "wb") as f:
        f.write(b"".join(parts))
    i, k = last, k + 1
PY
    chmod -R a+rX "$dir"
    q "CREATE TABLE copy_$tag (queue_id int, queue_offset bigint, body bytea)"
    local f sql=$work/copy_$tag.sql
    for f in "$dir"/c*.bin; do echo "COPY copy_$tag FROM '$f' (FORMAT binary);"; done >"$sql"
    chmod a+r "$sql"
    q "CHECKPOINT"
    log "[$tag] COPY ..."
    local t0=$EPOCHREALTIME
    "${psql[@]}" -f "$sql" >/dev/null
    W_SECS=$(secs_since "$t0")
    local got
    got=$(q "SELECT count(*) FROM copy_$tag")
    [[ $got == "$n" ]] || die "COPY loaded $got rows, expected $n"
    W_RATE=$(awk -v n="$n" -v s="$W_SECS" 'BEGIN {printf "%.0f", n / s}')
    log "[$tag] write ceiling: $W_RATE rows/s ($W_SECS s)"
    q "DROP TABLE copy_$tag"
    rm -rf "$dir"
}

# ------------------------------------------------------- 2. read ceiling
read_ceiling() {  # read_ceiling TAG TOPIC N  -> sets R_RATE R_SECS
    local line
    log "[$1] LitePullBench ..."
    line=$("$top/test/java/run.sh" LitePullBench "$ns" "$2" "bench_java_$1" "$3" | tail -1)
    [[ $line == messages=$3\ * ]] || die "LitePullBench: $line"
    R_RATE=$(sed 's/.*rate=//' <<<"$line")
    R_SECS=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$line")
    log "[$1] read ceiling: $R_RATE msg/s ($R_SECS s)"
}

# -------------------------------------------------------- 4. user loop
user_loop() {  # user_loop TAG TOPIC N [rows] -> sets U_RATE U_SECS U_N U_XACTS (rows: V_*)
    local tag=$1${4:+_$4} line p=U rows=0
    [[ ${4:-} == rows ]] && p=V rows=1
    q "CREATE TABLE loop_$tag (queue_id int, queue_offset bigint, body bytea)"
    q "CREATE TABLE loop_offsets_$tag (queue_id int PRIMARY KEY, next_offset bigint NOT NULL)"
    q "CHECKPOINT"
    log "[$tag] JdbcLoop${4:+ ($4)} (at most $LOOP_MAX_S s) ..."
    line=$(JDBCLOOP_ROWS=$rows "$top/test/java/run.sh" JdbcLoop "$ns" "$2" "bench_loop_$tag" "$3" "$jdbc" \
        "loop_$tag" "loop_offsets_$tag" "$LOOP_MAX_S" | tail -1)
    [[ $line == messages=* ]] || die "JdbcLoop: $line"
    local un us ur ux
    un=$(sed 's/messages=\([0-9]*\).*/\1/' <<<"$line")
    us=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$line")
    ur=$(sed 's/.*rate=\([0-9]*\).*/\1/' <<<"$line")
    ux=$(sed 's/.*transactions=//' <<<"$line")
    printf -v "${p}_N" '%s' "$un"
    printf -v "${p}_SECS" '%s' "$us"
    printf -v "${p}_RATE" '%s' "$ur"
    printf -v "${p}_XACTS" '%s' "$ux"
    local got
    got=$(q "SELECT count(*) || ' ' || count(DISTINCT (queue_id, queue_offset)) || ' ' ||
                    (SELECT coalesce(sum(next_offset), 0) FROM loop_offsets_$tag) FROM loop_$tag")
    [[ $got == "$un $un $un" ]] || die "JdbcLoop reported $un messages; table rows, distinct, offsets: $got"
    log "[$tag] user loop${4:+ ($4)}: $ur msg/s ($un messages in $us s, $ux transactions)"
    q "DROP TABLE loop_$tag, loop_offsets_$tag"
}

# ------------------------------------------------------ 1. stream drain
worker_pid() {
    q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'rocketmq_stream worker' ORDER BY backend_start DESC LIMIT 1"
}

stream_drain() {  # stream_drain TAG TOPIC N STREAM GROUP SINK [COLUMNS FORMAT] -> sets S_* ; memory in $work/mem_TAG.tsv
    local tag=$1 topic=$2 n=$3 sname=$4 group=$5 sink=$6
    local cols=${7:-"queue_id int, queue_offset bigint, body bytea"} format=${8:-message}
    local memf=$work/mem_$tag.tsv outf=$work/drain_$tag.out
    q "CREATE TABLE $sink ($cols)"
    q "CHECKPOINT"
    log "[$tag] stream drain of $n messages ..."
    local b0 tstart=$EPOCHREALTIME
    b0=$(ticks "$broker_pid")
    "${psql[@]}" >"$outf" 2>&1 <<SQL &
SELECT rmq_create_stream('$sname', '$topic', '$group', '$sink', format => '$format', options => '$STREAM_OPTS');
SELECT 't0', extract(epoch FROM clock_timestamp());
CALL bench_wait('$group', $n, $DRAIN_TIMEOUT);
SELECT 't1', extract(epoch FROM clock_timestamp());
SQL
    local spid=$! wpid="" tries=0
    bgpids+=("$spid")
    until [[ -n $wpid ]]; do
        kill -0 "$spid" 2>/dev/null || break
        wpid=$(worker_pid)
        [[ -n $wpid ]] && break
        ((++tries < 600)) || die "no stream worker after 60 s"
        sleep 0.1
    done
    [[ -n $wpid ]] || { cat "$outf" >&2; die "stream $sname ended before its worker was seen"; }
    # Every second: seconds since creation, VmRSS, RssAnon, RssShmem, VmHWM (kB), CPU ticks.
    echo "# secs rss_kb anon_kb shmem_kb hwm_kb cpu_ticks" >"$memf"
    local last_ticks=0 last_hwm=0 nsnap=0 restarts=0 line
    while kill -0 "$spid" 2>/dev/null; do
        if [[ -r /proc/$wpid/status ]] &&
            line=$(awk '/^VmRSS/ {r = $2} /^RssAnon/ {a = $2} /^RssShmem/ {s = $2} /^VmHWM/ {h = $2}
                        END {print r, a, s, h}' "/proc/$wpid/status" 2>/dev/null) && [[ -n $line ]]; then
            local t
            t=$(ticks "$wpid" 2>/dev/null) || t=$last_ticks
            last_ticks=$t last_hwm=$(awk '{print $4}' <<<"$line")
            echo "$(secs_since "$tstart") $line $t" >>"$memf"
        else
            # The worker died (and was restarted by the launcher?).
            local w2
            w2=$(worker_pid)
            if [[ -n $w2 && $w2 != "$wpid" ]]; then
                log "[$tag] worker $wpid gone, now $w2"
                wpid=$w2 restarts=$((restarts + 1))
            fi
        fi
        if ((++nsnap % 5 == 0)); then snap_batches "$sname"; fi
        sleep 1
    done
    local rc=0
    wait "$spid" || rc=$?
    untrack "$spid"
    ((rc == 0)) || { cat "$outf" >&2; die "stream drain failed"; }
    # Final CPU and peak right after the drain (the worker is idle now).
    local cpu hwm b1
    cpu=$(ticks "$wpid") || cpu=$last_ticks
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$wpid/status" 2>/dev/null) || hwm=$last_hwm
    b1=$(ticks "$broker_pid")
    snap_batches "$sname"
    local t0 t1
    t0=$(grep '^t0|' "$outf" | cut -d'|' -f2) t1=$(grep '^t1|' "$outf" | cut -d'|' -f2)
    S_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
    S_RATE=$(awk -v n="$n" -v s="$S_SECS" 'BEGIN {printf "%.0f", n / s}')
    S_CPU_US=$(awk -v c="$cpu" -v hz="$hz" -v n="$n" 'BEGIN {printf "%.2f", c / hz * 1e6 / n}')
    S_BROKER_CPU_US=$(awk -v c="$((b1 - b0))" -v hz="$hz" -v n="$n" 'BEGIN {printf "%.2f", c / hz * 1e6 / n}')
    S_HWM_KB=$hwm S_RESTARTS=$restarts
    # Private memory (RssAnon) over the drain: the first samples at 10% and
    # at 50% of it, the last one within it, and the max; max VmRSS.
    read -r S_ANON_FIRST S_ANON_MID S_ANON_LAST S_ANON_MAX S_RSS_MAX S_SAMPLES < <(awk -v d="$S_SECS" '
        !/^#/ {k++; if (first == "" && $1 >= d / 10) first = $3; if (mid == "" && $1 >= d / 2) mid = $3;
               if ($3 > amax) amax = $3; if ($2 > rmax) rmax = $2; if ($1 <= d) last = $3}
        END {if (first == "") first = last; if (mid == "") mid = last
             print first + 0, mid + 0, last + 0, amax + 0, rmax + 0, k + 0}' "$memf")
    local chk
    chk=$(q "SELECT count(*) || ' ' || count(DISTINCT (queue_id, queue_offset)) FROM $sink")
    [[ $chk == "$n $n" ]] || die "sink $sink: count and distinct are $chk, expected $n $n"
    # Batches: how many, rows, end reasons, time inside batches vs between them.
    S_BATCHES=$(q "
        WITH b AS (SELECT *, lag(committed_at) OVER (ORDER BY id) AS prev FROM bench_batch WHERE stream = '$sname')
        SELECT count(*) || '|' || round(avg(rows)) || '|' || min(rows) || '|' || max(rows) || '|' ||
               (SELECT string_agg(end_reason || ' ' || c, ', ' ORDER BY end_reason)
                FROM (SELECT end_reason, count(*) c FROM bench_batch WHERE stream = '$sname' GROUP BY 1) r) || '|' ||
               round(extract(epoch FROM min(started_at)) - $t0, 2) || '|' ||
               round(extract(epoch FROM max(committed_at) - min(started_at)), 2) || '|' ||
               round(avg(extract(epoch FROM committed_at - started_at)) * 1000) || '|' ||
               round(coalesce(sum(extract(epoch FROM started_at - prev)) FILTER (WHERE prev IS NOT NULL), 0) * 1000) || '|' ||
               round(coalesce(max(extract(epoch FROM started_at - prev)), 0) * 1000) || '|' ||
               round(sum(rows) / extract(epoch FROM max(committed_at) - min(started_at)))
        FROM b")
    S_STATES=$(q "SELECT string_agg(state || ' ' || pct || '%', ', ' ORDER BY c DESC)
                  FROM (SELECT state, count(*) c, round(100.0 * count(*) / sum(count(*)) OVER ()) pct
                        FROM bench_state WHERE grp = '$group' GROUP BY state) s")
    log "[$tag] stream: $S_RATE msg/s ($S_SECS s), worker CPU $S_CPU_US us/msg, VmHWM $S_HWM_KB kB; batches $S_BATCHES"
    q "SELECT rmq_drop_stream('$sname')" >/dev/null
    for ((tries = 0; tries < 100; tries++)); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
    q "DROP TABLE $sink"
}

run_size() {  # run_size TAG TOPIC N B STREAM GROUP SINK -> sets <TAG>_* variables
    local tag=$1 topic=$2 n=$3 b=$4
    fill "$topic" "$n" "$b"
    write_ceiling "$tag" "$n" "$b"
    read_ceiling "$tag" "$topic" "$n"
    stream_drain "$tag" "$topic" "$n" "$5" "$6" "$7"
    user_loop "$tag" "$topic" "$n"
    V_RATE=- V_SECS=- V_N=- V_XACTS=-
    ((LOOP_ROWS)) && user_loop "$tag" "$topic" "$n" rows
    local v
    for v in W_RATE W_SECS R_RATE R_SECS S_RATE S_SECS S_CPU_US S_BROKER_CPU_US S_HWM_KB S_RESTARTS \
        S_ANON_FIRST S_ANON_MID S_ANON_LAST S_ANON_MAX S_RSS_MAX S_SAMPLES S_BATCHES S_STATES U_RATE U_SECS U_N U_XACTS \
        V_RATE V_SECS V_N V_XACTS; do
        printf -v "${tag}_$v" '%s' "${!v}"
    done
}

# ------------------------------------------------- 5. JSON into columns
JSON_COLS='queue_id int, queue_offset bigint, id bigint, "user" text, amount numeric, ok boolean, ts timestamptz'
json_drains() {  # -> sets JM_RATE JM_CPU_US JC_RATE JC_CPU_US JC_RUNS (rates: all messages / all drain time)
    local i fmt cols secs_m=0 secs_c=0 cpu_m=0 cpu_c=0
    fill bench_topic_json "$JSON_N" "$B" json
    JC_RUNS=""
    for ((i = 1; i <= JSON_RUNS; i++)); do
        for fmt in message json_columns; do
            cols=$([[ $fmt == message ]] && echo "queue_id int, queue_offset bigint, body bytea" || echo "$JSON_COLS")
            stream_drain "json_${fmt}_$i" bench_topic_json "$JSON_N" "bench_json_${fmt}_$i" "bench_json_group_${fmt}_$i" \
                "sink_json_${fmt}_$i" "$cols" "$fmt"
            JC_RUNS+="${JC_RUNS:+, }$fmt $S_RATE"
            if [[ $fmt == message ]]; then
                secs_m=$(awk -v a="$secs_m" -v b="$S_SECS" 'BEGIN {print a + b}')
                cpu_m=$(awk -v a="$cpu_m" -v b="$S_CPU_US" 'BEGIN {print a + b}')
            else
                secs_c=$(awk -v a="$secs_c" -v b="$S_SECS" 'BEGIN {print a + b}')
                cpu_c=$(awk -v a="$cpu_c" -v b="$S_CPU_US" 'BEGIN {print a + b}')
            fi
        done
    done
    JM_RATE=$(awk -v n="$JSON_N" -v r="$JSON_RUNS" -v s="$secs_m" 'BEGIN {printf "%.0f", n * r / s}')
    JC_RATE=$(awk -v n="$JSON_N" -v r="$JSON_RUNS" -v s="$secs_c" 'BEGIN {printf "%.0f", n * r / s}')
    JM_CPU_US=$(awk -v c="$cpu_m" -v r="$JSON_RUNS" 'BEGIN {printf "%.2f", c / r}')
    JC_CPU_US=$(awk -v c="$cpu_c" -v r="$JSON_RUNS" 'BEGIN {printf "%.2f", c / r}')
    log "[json] message $JM_RATE msg/s ($JM_CPU_US us/msg), json_columns $JC_RATE msg/s ($JC_CPU_US us/msg); runs: $JC_RUNS"
}

# ------------------------------------------------------------ 6. latency
lat_runs=0
latency() {  # latency INTERVAL_MS SYNCHRONOUS_COMMIT -> appends a line to $work/lat.dat
    lat_runs=$((lat_runs + 1))
    local iv=$1 sync=$2 k=$1_$2_$lat_runs
    local topic=bench_lat_$k sname=bench_lat_$k group=bench_lat_group_$k sink=lat_$k sc='{}'
    [[ $sync == default ]] || sc="{\"synchronous_commit\": \"$sync\"}"
    q "SELECT rmq_create_topic('$topic', 8)" >/dev/null
    q "CREATE TABLE $sink (queue_id int, queue_offset bigint, body bytea, born_timestamp timestamptz, store_timestamp timestamptz)"
    q "SELECT rmq_create_stream('$sname', '$topic', '$group', '$sink',
                                options => '{\"batch_interval\": $iv, \"batch_rows\": 10000}'::jsonb || '$LAT_EXTRA_OPTS' || '$sc')" >/dev/null
    # Ready when the worker has stored its 8 start offsets.
    local tries
    for ((tries = 0; tries < 300; tries++)); do
        [[ $(q "SELECT count(*) FROM rmq_offset WHERE consumer_group = '$group'") == 8 ]] && break
        sleep 0.1
    done
    ((tries < 300)) || die "latency stream $sname did not start"
    sleep 1
    log "[latency $k] producing $LAT_RATE msg/s for $LAT_SECONDS s ..."
    "$top/test/java/run.sh" LatencyProduce "$ns" "$topic" "$LAT_RATE" "$LAT_SECONDS" "$B" \
        >"$work/lat_$k.out" 2>"$work/lat_$k.err" &
    local ppid=$! wpid t_lat=$EPOCHREALTIME memf=$work/latmem_$k.tsv
    bgpids+=("$ppid")
    wpid=$(worker_pid)
    # The worker's private memory (RssAnon, kB) every 2 s: flat over a long
    # run (LAT_SECONDS=600) means no leak per batch.  And what it has
    # palloc'd (all memory contexts, pg_log_backend_memory_contexts) after
    # the warm-up and at the end: RssAnon also moves with malloc's heap.
    local warm=$(( LAT_SECONDS >= 120 ? 60 : LAT_SECONDS / 10 )) dumped=0
    : >"$memf"
    while kill -0 "$ppid" 2>/dev/null; do
        snap_batches "$sname"
        awk -v t="$(secs_since "$t_lat")" '/^RssAnon/ {print t, $2}' "/proc/$wpid/status" >>"$memf" 2>/dev/null || true
        if ((dumped == 0)) && awk -v t="$(secs_since "$t_lat")" -v w="$warm" 'BEGIN {exit !(t >= w)}'; then
            q "SELECT pg_log_backend_memory_contexts($wpid)" >/dev/null
            dumped=1
        fi
        sleep 2
    done
    q "SELECT pg_log_backend_memory_contexts($wpid)" >/dev/null
    sleep 1
    # After the first minute (or 10% of a short run), at the end, and the max.
    local mem
    mem=$(awk -v warm="$(( LAT_SECONDS >= 120 ? 60 : LAT_SECONDS / 10 ))" '
        {if (!w && $1 >= warm) {w = $2}; last = $2; if ($2 > mx) mx = $2; n++}
        END {if (n) printf "%.1f/%.1f/%.1f/%+.1f", w / 1024, last / 1024, mx / 1024, (last - w) / 1024; else print "-"}' "$memf")
    # "used" of the Grand total after each "logging memory contexts of PID
    # <worker>": the first and last dump of this run.
    mem+=/$(awk -v pid="$wpid" '
        /logging memory contexts of PID/ {on = ($NF == pid)}
        on && /Grand total:/ {sub(/.*; /, ""); sub(/ used.*/, ""); v[++n] = $0; on = 0}
        END {if (n >= 2) printf "%d/%d", v[1], v[n]; else printf "-/-"}' "$work/pg.log")
    local rc=0
    wait "$ppid" || rc=$?
    untrack "$ppid"
    ((rc == 0)) || { cat "$work/lat_$k.err" >&2; die "LatencyProduce failed"; }
    local line sent
    line=$(tail -1 "$work/lat_$k.out")
    sent=$(sed 's/sent=\([0-9]*\).*/\1/' <<<"$line")
    [[ $sent =~ ^[0-9]+$ ]] || die "LatencyProduce: $line"
    q "CALL bench_wait('$group', $sent, 120)"
    snap_batches "$sname"
    # Per row: commit time of its transaction (track_commit_timestamp) and,
    # as a cross-check, rmq_batch.committed_at of the batch whose range holds
    # it (set by the batch's last INSERT, just before COMMIT), minus born time.
    local res
    res=$("${psql[@]}" <<SQL
CREATE TEMP TABLE r AS
    SELECT (e->>'queue_id')::int AS q, (e->>'from')::bigint AS f, (e->>'until')::bigint AS u, b.committed_at
    FROM bench_batch b, jsonb_array_elements(b.ranges) e WHERE b.stream = '$sname' AND e ? 'queue_id';
CREATE INDEX ON r (q, f);
ANALYZE r;
WITH l AS (
    SELECT extract(epoch FROM pg_xact_commit_timestamp(s.xmin) - s.born_timestamp) * 1000 AS c,
           extract(epoch FROM x.committed_at - s.born_timestamp) * 1000 AS b,
           extract(epoch FROM pg_xact_commit_timestamp(s.xmin) - s.store_timestamp) * 1000 AS sc,
           extract(epoch FROM s.store_timestamp - s.born_timestamp) * 1000 AS bs
    FROM $sink s
    LEFT JOIN LATERAL (SELECT committed_at FROM r WHERE r.q = s.queue_id AND r.f <= s.queue_offset
                       AND s.queue_offset < r.u ORDER BY r.f DESC LIMIT 1) x ON true)
SELECT count(*), count(b),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY c)::numeric, 1),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY c)::numeric, 1),
       round(max(c)::numeric, 1), round(avg(c)::numeric, 1),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY b)::numeric, 1),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY b)::numeric, 1),
       round(max(b)::numeric, 1),
       (SELECT count(*) FROM bench_batch WHERE stream = '$sname' AND rows > 0),
       (SELECT round(avg(rows)) FROM bench_batch WHERE stream = '$sname' AND rows > 0),
       (SELECT round(avg(extract(epoch FROM committed_at - started_at)) * 1000) FROM bench_batch WHERE stream = '$sname' AND rows > 0),
       (SELECT round(max(extract(epoch FROM committed_at - started_at)) * 1000) FROM bench_batch WHERE stream = '$sname'),
       (SELECT count(*) FROM bench_batch WHERE stream = '$sname'
        AND committed_at - started_at > 2 * make_interval(secs => $iv / 1000.0)),
       (SELECT string_agg(end_reason || ':' || c, ',' ORDER BY end_reason)
        FROM (SELECT end_reason, count(*) c FROM bench_batch WHERE stream = '$sname' AND rows > 0 GROUP BY 1) e),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY bs)::numeric, 1) || '/' ||
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY bs)::numeric, 1) || '/' ||
       round(max(bs)::numeric, 1) || '/' ||
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY sc)::numeric, 1) || '/' ||
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY sc)::numeric, 1) || '/' ||
       round(max(sc)::numeric, 1)
FROM l;
SQL
)
    res=$(awk 'BEGIN {FS = OFS = "|"} {for (i = 1; i <= NF; i++) if ($i == "") $i = "-"; print}' <<<"$res")
    local rows
    rows=$(cut -d'|' -f1 <<<"$res")
    [[ $rows == "$sent" ]] || die "latency sink has $rows rows, $sent were sent"
    echo "$iv/$sync/#$lat_runs $(tr '|' ' ' <<<"$res") $(sed 's/.*rate=\([0-9]*\).*late_max_ms=\([0-9.]*\).*/\1 \2/' <<<"$line") $mem" >>"$work/lat.dat"
    log "[latency $k] rows, with batch, p50 p99 max avg (commit ts), p50 p99 max (batch), batches, rows/batch, ms/batch avg max, slow batches, end reasons: $res"
    q "SELECT rmq_drop_stream('$sname')" >/dev/null
    q "DROP TABLE $sink"
}

# ------------------------------------------------------------------ run
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# The WAL device's flush time, for reading the latency results (each batch's
# COMMIT waits for one unless synchronous_commit is off).
fdatasync_us=$(pg "$bindir/pg_test_fsync" -s 1 -f "$work/fsync.test" 2>/dev/null |
               awk '$1 == "fdatasync" && /ops\/sec/ {print $(NF - 1); exit}') || true
rm -f "$work/fsync.test"
t_run=$EPOCHREALTIME
run_size s100 bench_topic "$N" "$B" bench bench_group sink
if ((N1K > 0)); then
    run_size s1k bench_topic_1k "$N1K" "$B1K" bench_1k bench_group_1k sink_1k
fi
((JSON_N > 0)) && json_drains
: >"$work/lat.dat"
if ((LAT_SECONDS > 0)); then
    q "ALTER SYSTEM SET track_commit_timestamp = on" >/dev/null
    pg "$bindir/pg_ctl" -D "$work/pg" -l "$work/pg.log" -m fast -w restart >/dev/null
    # Let the drains' aftermath (writeback, the broker's flushes) pass: the
    # first latency run right after them had a p99 twice the later ones.
    log "[latency] settling for $LAT_SETTLE s ..."
    sleep "$LAT_SETTLE"
    for iv in $LAT_INTERVALS; do
        for sync in $LAT_SYNC; do latency "$iv" "$sync"; done
    done
fi
run_secs=$(secs_since "$t_run")
[[ $(sha256sum "$so" | cut -d' ' -f1) == "$so_sum" ]] ||
    so_desc+=" — **WARNING: the installed library changed during the run (by someone else's make install?)**"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
# What the server logged at WARNING and above (the streams' trouble shows here).
log_problems=$(grep -E '(WARNING|ERROR|FATAL|PANIC): ' "$work/pg.log" | sed -E 's/^.*(WARNING|ERROR|FATAL|PANIC): /\1: /' |
    sort | uniq -c | sort -rn | head -n 8 || true)

# --------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "-"}'; }
min2() { awk -v a="$1" -v b="$2" 'BEGIN {print (a < b ? a : b)}'; }
val() { local v="${1}_$2"; printf '%s' "${!v:--}"; }
bf() { cut -d'|' -f"$1" <<<"$(val "$2" S_BATCHES)"; }
tags=(s100) labels=("$B B x $N")
if ((N1K > 0)); then tags+=(s1k) labels+=("$B1K B x $N1K"); fi
row() {  # row LABEL FIELD...
    local label=$1 t; shift
    printf '| %s |' "$label"
    for t in "${tags[@]}"; do printf ' %s |' "$("$@" "$t")"; done
    echo
}
f() { val "$2" "$1"; }
lower() { min2 "$(val "$1" R_RATE)" "$(val "$1" W_RATE)"; }
r_ceil() { ratio "$(val "$1" S_RATE)" "$(lower "$1")"; }
# The user loops: U_* batched, V_* row at a time (P = U or V, default U).
r_loop() { ratio "$(val "$1" S_RATE)" "$(val "$1" "${2:-U}_RATE")"; }
r_loop_rows() { r_loop "$1" V; }
loopdesc_rows() { loopdesc "$1" V; }
table_head() {
    printf '| | %s |\n' "$(IFS='|'; echo "${labels[*]}" | sed 's/|/ | /g')"
    printf '|---|%s\n' "$(for t in "${tags[@]}"; do printf -- '---|'; done)"
}
steady_ratio() { ratio "$(bf 11 "$1")" "$(lower "$1")"; }
loopdesc() { local p=${2:-U}; echo "$(val "$1" "${p}_N") msgs, $(val "$1" "${p}_SECS") s, $(val "$1" "${p}_XACTS") xacts"; }
anondesc() {
    awk -v a="$(val "$1" S_ANON_FIRST)" -v b="$(val "$1" S_ANON_MID)" -v c="$(val "$1" S_ANON_LAST)" \
        -v m="$(val "$1" S_ANON_MAX)" 'BEGIN {printf "%.1f / %.1f / %.1f (max %.1f)", a / 1024, b / 1024, c / 1024, m / 1024}'
}
batchrows() { echo "$(bf 2 "$1") ($(bf 3 "$1")–$(bf 4 "$1"))"; }
gaps() { echo "$(bf 9 "$1") / $(bf 10 "$1")"; }
mb() { awk -v k="$(val "$2" "$1")" 'BEGIN {printf "%.1f", k / 1024}'; }
anon_growth() { awk -v a="$(val "$1" S_ANON_MID)" -v b="$(val "$1" S_ANON_LAST)" 'BEGIN {printf "%+.1f", (b - a) / 1024}'; }

{
    echo "# Streams vs their ceilings and the user loop"
    echo
    echo "Run: \`N=$N B=$B N1K=$N1K JSON_N=$JSON_N JSON_RUNS=$JSON_RUNS LOOP_MAX_S=$LOOP_MAX_S LAT_RATE=$LAT_RATE LAT_SECONDS=$LAT_SECONDS LAT_INTERVALS=\"$LAT_INTERVALS\" LAT_SYNC=\"$LAT_SYNC\" bash bench/stream_bench.sh\`"
    echo "on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo);"
    echo "load average $load_start at the start, $load_end at the end; whole run $(printf '%.0f' "$run_secs") s."
    echo "One local broker (RocketMQ 5.3.3, ASYNC_FLUSH), topics of 8 queues; PostgreSQL $(pg "$bindir/postgres" -V | awk '{print $3}')"
    echo "with default settings (synchronous_commit on, shared_buffers 128MB) plus max_worker_processes = 16."
    echo "Disk: fdatasync of one 8 kB write takes ${fdatasync_us:-?} µs (pg_test_fsync). Streams commit with"
    echo "their own synchronous_commit, off unless a run below says on."
    echo "Tree $git_desc; rocketmq_stream.so $so_desc."
    echo "Drain options: \`$STREAM_OPTS\`; latency streams: batch_interval as below, batch_rows 10000, plus \`$LAT_EXTRA_OPTS\`."
    if awk -v s="$(val s100 S_SECS)" 'BEGIN {exit !(s < 60)}'; then
        echo
        echo "The $B B drain took $(val s100 S_SECS) s (< 60 s); for one of about 75 s:" \
            "N=$(awk -v r="$(val s100 S_RATE)" 'BEGIN {printf "%d", int(r * 75 / 1e6 + 1) * 1000000}')."
    fi
    if ((N < 2000000)); then
        echo
        echo "**Small run (N < 2000000): a check of the script, not a measurement.**"
    fi
    echo
    echo "## Throughput"
    echo
    table_head
    row "**stream** drain, msg/s (rmq_create_stream until offsets sum to N)" f S_RATE
    row "drain time, s" f S_SECS
    row "steady rate, msg/s (first batch start → last batch commit)" bf 11
    row "read ceiling: Java LitePullBench, msg/s" f R_RATE
    row "read time, s" f R_SECS
    row "write ceiling: COPY binary, $COPY_ROWS rows/transaction, rows/s" f W_RATE
    row "COPY time, s" f W_SECS
    row "user loop: JdbcLoop (lite pull + JDBC, 1 transaction/poll), msg/s" f U_RATE
    row "done in" loopdesc
    row "**stream / min(read, write ceiling)** (target ≥ 0.8)" r_ceil
    row "steady stream rate / min(ceilings)" steady_ratio
    row "**stream / user loop** (target ≥ 10)" r_loop
    row "user loop written row at a time (JDBCLOOP_ROWS=1: executeUpdate per message), msg/s" f V_RATE
    row "done in (row at a time)" loopdesc_rows
    row "stream / row-at-a-time loop" r_loop_rows
    echo
    echo "## The stream worker during the drain"
    echo
    table_head
    row "worker CPU, µs/msg (utime+stime of the worker process)" f S_CPU_US
    row "broker CPU during the drain, µs/msg (for context)" f S_BROKER_CPU_US
    row "worker peak RSS (VmHWM), MB" mb S_HWM_KB
    row "max sampled VmRSS, MB (includes shared buffers touched)" mb S_RSS_MAX
    row "private memory (RssAnon) at 10% / 50% / end of the drain, MB" anondesc
    row "RssAnon growth over the second half of the drain, MB (flat ≈ 0)" anon_growth
    row "memory samples (1/s)" f S_SAMPLES
    row "worker restarts during the drain" f S_RESTARTS
    row "worker state, sampled 10/s (Extension = waiting for the broker; CPU = not waiting)" f S_STATES
    row "batches" bf 1
    row "rows/batch: avg (min–max)" batchrows
    row "end reasons" bf 5
    row "start-up: creation → first batch start, s" bf 6
    row "avg batch duration (start → commit), ms" bf 8
    row "commit → next batch start (includes the COMMIT's WAL flush): total / max, ms" gaps
    echo
    echo "Memory over time (1 s samples) is in the plot; VmRSS counts the shared-buffer pages the worker"
    echo "touched, so RssAnon (private memory) is the one that shows growth."
    echo
    if ((JSON_N > 0)); then
        echo "## JSON bodies into columns ($JSON_N x $B B, $JSON_RUNS drain(s) of each format, alternately)"
        echo
        echo "The same topic of JSON objects (\`{\"id\":…,\"user\":…,\"amount\":…,\"ok\":…,\"ts\":…,\"pad\":…}\`) drained"
        echo "into \`(queue_id, queue_offset, body bytea)\` with format message and into"
        echo "\`($JSON_COLS)\` with format json_columns."
        echo
        echo "| | message | json_columns |"
        echo "|---|---|---|"
        echo "| drain, msg/s (all messages / all drain time) | $JM_RATE | $JC_RATE |"
        echo "| worker CPU, µs/msg (mean of the drains) | $JM_CPU_US | $JC_CPU_US |"
        echo "| **json_columns / message** (target ≥ 0.7) | | **$(ratio "$JC_RATE" "$JM_RATE")** |"
        echo "| each drain, msg/s | $JC_RUNS | |"
        echo
    fi
    if [[ -s $work/lat.dat ]]; then
        echo "## End-to-end latency at $LAT_RATE msg/s for $LAT_SECONDS s ($B B bodies)"
        echo
        echo "Latency of a row = the commit timestamp of the transaction that inserted it"
        echo "(\`pg_xact_commit_timestamp(xmin)\`, track_commit_timestamp = on; taken just before the commit's"
        echo "WAL flush) − the message's born timestamp (set by the producer at send, millisecond precision, same"
        echo "clock). Cross-check: \`rmq_batch.committed_at\` of the batch whose range holds the row (set by the"
        echo "batch's last INSERT, a little earlier still). Split at the broker's store timestamp (same clock,"
        echo "millisecond precision): born → stored is the producer's send and the broker's store, stored →"
        echo "committed is the stream's share (long-poll wake-up, linger, COPY, commit)."
        echo
        echo "| batch_interval, ms / synchronous_commit / run | rows | p50, ms | p99, ms | max, ms | avg, ms | of which born → stored (producer + broker) p50 / p99 / max, ms | stored → committed (the stream) p50 / p99 / max, ms | via rmq_batch p50 / p99 / max, ms | batches with rows | rows/batch | batch duration avg / max, ms | batches > 2 × interval | end reasons | producer rate, msg/s (worst lag, ms) | worker RssAnon after warm-up / at the end / max (growth), MB | worker palloc'd (all memory contexts) after warm-up / at the end, bytes |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        while read -r iv rows wb p50 p99 mx av bp50 bp99 bmx nb rpb dur dmax slow why split prate plate mem; do
            IFS=/ read -r m1 m2 m3 m4 m5 m6 <<<"$mem"
            IFS=/ read -r x1 x2 x3 y1 y2 y3 <<<"$split"
            echo "| $iv | $rows | $p50 | **$p99** | $mx | $av | $x1 / $x2 / $x3 | $y1 / **$y2** / $y3 | $bp50 / $bp99 / $bmx ($wb rows matched) | $nb | $rpb | $dur / $dmax | $slow | ${why//,/, } | $prate ($plate) | $m1 / $m2 / $m3 ($m4) | $m5 / $m6 |"
        done <"$work/lat.dat"
        echo
        echo "Target: p99 ≤ 25 ms at 1000 msg/s."
        echo
    fi
    echo "Server log, WARNING and above (count, message):"
    echo
    echo '```'
    echo "${log_problems:-(none)}"
    echo '```'
    echo
    echo "![rates, worker memory, latency]($(basename "$png"))"
} >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"

# ----------------------------------------------------------------- plot
if command -v gnuplot >/dev/null; then
    {
        for t in stream:S_RATE "read ceiling":R_RATE "write ceiling":W_RATE "user loop":U_RATE; do
            printf '"%s"' "${t%%:*}"
            printf ' %s' "$(val s100 "${t#*:}")" "$(val s1k "${t#*:}" | sed 's/^-$/0/')"
            echo
        done
    } >"$work/rates.dat"
    plots=("'$work/mem_s100.tsv' using 1:(\$2/1024) with linespoints pt 7 ps 0.4 lw 2 title 'VmRSS $B B'"
           "'' using 1:(\$3/1024) with linespoints pt 7 ps 0.4 lw 2 title 'RssAnon $B B'")
    if [[ -s $work/mem_s1k.tsv ]]; then
        plots+=("'$work/mem_s1k.tsv' using 1:(\$2/1024) with linespoints pt 7 ps 0.4 lw 2 dt 2 title 'VmRSS $B1K B'"
                "'' using 1:(\$3/1024) with linespoints pt 7 ps 0.4 lw 2 dt 2 title 'RssAnon $B1K B'")
    fi
    ncols=2 latplot=""
    if [[ -s $work/lat.dat ]]; then
        ncols=3
        latplot="set title 'End-to-end latency at $LAT_RATE msg/s (commit ts - born ts)'
set xlabel 'batch_interval (ms)'
set ylabel 'ms (log scale)'
set logscale y
set yrange [*:*]
set key inside top left
set bmargin
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
plot '$work/lat.dat' using 4:xtic(1) title 'p50', '' using 5 title 'p99', '' using 6 title 'max'"
    fi
    gnuplot <<GP || log "gnuplot failed"
set terminal pngcairo noenhanced size $((ncols * 600)),560 font ',10'
set output '$png'
set multiplot layout 1,$ncols
set title 'Rates, msg/s, log scale ($N x $B B; $N1K x $B1K B)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [1000:*]
set key top right
plot '$work/rates.dat' using 2:xtic(1) title '$B B', '' using 3 title '$B1K B'
unset logscale y
set key outside below
set bmargin 7
set title 'Stream worker memory during the drain (1 s samples)'
set xlabel 'seconds since rmq_create_stream'
set ylabel 'MB'
set yrange [0:*]
plot $(IFS=,; echo "${plots[*]}")
$latplot
unset multiplot
GP
    [[ -s $png ]] && log "plot: $png"
fi
log "results: $out"
