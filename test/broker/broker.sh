#!/usr/bin/env bash
# A single-node Apache RocketMQ 5.3.3 (name server + one master broker) for
# tests, run straight from the Maven Central jars fetched by fetch-jars.sh.
#
#   broker.sh start                    start (no-op if already running)
#   broker.sh stop                     stop both processes (TERM, then KILL)
#   broker.sh status                   exit 0 if both are running, else 3
#   broker.sh create-topic T [QUEUES]  create topic T (default 8 r/w queues)
#                                      and wait for its route; with
#                                      RMQ_USE_MQADMIN=1 via mqadmin updateTopic
#   broker.sh env                      print export lines for tests, e.g.
#                                      eval "$(test/broker/broker.sh env)"
#   broker.sh delete-expired           ask the broker to delete its expired
#                                      commit-log files now (what mqadmin
#                                      deleteExpiredCommitLog does)
#
# Environment (defaults):
#   RMQ_HOME=/tmp/rmq_stream_broker   state: configs, store, logs, pid files
#   RMQ_NAMESRV_PORT=9876
#   RMQ_BROKER_PORT=10911             the broker also binds PORT-2 and PORT+1
#   RMQ_LIB=$HOME/.cache/rocketmq_stream/lib
#   RMQ_START_TIMEOUT=120             seconds
#   RMQ_BROKER_NAME=broker-a
#   RMQ_JOIN_NAMESRV=                 host:port of a running name server:
#                                      start only a broker (another
#                                      RMQ_BROKER_NAME, RMQ_HOME and port) in
#                                      its cluster, for multi-broker tests
#   RMQ_BROKER_CONF_EXTRA=            lines appended to broker.conf (later
#                                      lines win), e.g. for a broker that
#                                      loses data on purpose (t/105)
#
# Everything listens on 127.0.0.1 (the HA port via LoopbackHAService.java)
# and lives under RMQ_HOME: configs, store/, logs/ (*.out = stdout,
# rocketmqlogs/ = RocketMQ's own logs), *.pid.  user.home is pointed there
# too, so RocketMQ's ${user.home}/logs and ~/store defaults never touch the
# real home directory.  start and stop lock RMQ_HOME against each other.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RMQ_HOME=${RMQ_HOME:-/tmp/rmq_stream_broker}
RMQ_NAMESRV_PORT=${RMQ_NAMESRV_PORT:-9876}
RMQ_BROKER_PORT=${RMQ_BROKER_PORT:-10911}
RMQ_LIB=${RMQ_LIB:-$HOME/.cache/rocketmq_stream/lib}
RMQ_START_TIMEOUT=${RMQ_START_TIMEOUT:-120}

namesrv_addr=${RMQ_JOIN_NAMESRV:-127.0.0.1:$RMQ_NAMESRV_PORT}
broker_addr=127.0.0.1:$RMQ_BROKER_PORT
broker_name=${RMQ_BROKER_NAME:-broker-a}
cluster=DefaultCluster
logs=$RMQ_HOME/logs

die() { echo "broker.sh: $*" >&2; exit 1; }

# Common JVM flags.  rocketmq.home.dir must be set or the mains exit with -2;
# nothing is read from it.
# java.io.tmpdir: the servers' permissive-TLS set-up writes a self-signed
# key and certificate there on every start, and never removes them.
jvm_common=(
    -Duser.home="$RMQ_HOME"
    -Drocketmq.home.dir="$RMQ_HOME"
    -Djava.io.tmpdir="$RMQ_HOME/tmp"
    -Dfile.encoding=UTF-8
    -XX:+UseG1GC
    -XX:-OmitStackTraceInFastThrow
)
# The broker is Java 8 code; these module openings keep Java 17 happy on the
# non-default paths that touch JDK internals (see protocol doc §7.4).
jvm_opens=(
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-exports java.base/sun.nio.ch=ALL-UNNAMED
)

# Is something accepting connections on 127.0.0.1:$1?  (bash /dev/tcp, no deps)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Is the process in pid file $1 alive and really our java main $2, started
# for this RMQ_HOME?  Checking the command line guards against a recycled pid
# (after a crash or reboot) that now belongs to someone else's process.
pid_alive() {
    local f=$1 main=$2 pid cmd
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$main"* && $cmd == *"-c $RMQ_HOME/"* ]]
}

# During start-up the pid may still be the subshell or nohup that is about to
# exec java, whose command line does not name the main class yet: only ask
# whether the process exists.
proc_alive() { local pid; pid=$(<"$1"); kill -0 "$pid" 2>/dev/null; }

# A joining broker's name server is someone else's: only ask if it listens.
namesrv_running() {
    if [[ -n ${RMQ_JOIN_NAMESRV:-} ]]; then
        (exec 3<>"/dev/tcp/${RMQ_JOIN_NAMESRV%:*}/${RMQ_JOIN_NAMESRV##*:}") 2>/dev/null
        return
    fi
    pid_alive "$RMQ_HOME/namesrv.pid" NamesrvStartup && port_open "$RMQ_NAMESRV_PORT"; }
broker_running() { pid_alive "$RMQ_HOME/broker.pid" BrokerStartup && port_open "$RMQ_BROKER_PORT"; }

need_jars() {
    [[ -f $RMQ_LIB/.fetched ]] || RMQ_LIB=$RMQ_LIB "$here/fetch-jars.sh"
}

# Compile LoopbackHAService (binds the HA port to 127.0.0.1; see the file)
# into $RMQ_HOME/ext together with its service registration.
build_ext() {
    local ext=$RMQ_HOME/ext src=$here/LoopbackHAService.java
    if [[ ! -f $ext/LoopbackHAService.class || $src -nt $ext/LoopbackHAService.class ]]; then
        mkdir -p "$ext/META-INF/service"
        javac -nowarn -d "$ext" -cp "$RMQ_LIB/*" "$src"
        echo LoopbackHAService >"$ext/META-INF/service/org.apache.rocketmq.store.ha.HAService"
    fi
}

show_logs() {
    local f
    for f in "$logs"/namesrv.out "$logs"/broker.out "$logs"/rocketmqlogs/namesrv.log "$logs"/rocketmqlogs/broker.log; do
        [[ -f $f ]] || continue
        echo "----- tail of $f" >&2
        # The probes' connections fill the logs with Netty pipeline lines.
        grep -v -e 'PIPELINE' -e '|-INFO in ' "$f" | tail -n 20 >&2 || true
    done
}

# Start-up failed: show why, and do not leave half a test bed running.
fail_start() {
    show_logs
    cmd_stop >/dev/null 2>&1 || true
    die "$@"
}

write_configs() {
    mkdir -p "$logs" "$RMQ_HOME/store" "$RMQ_HOME/namesrv" "$RMQ_HOME/tmp"
    cat >"$RMQ_HOME/namesrv.conf" <<EOF
listenPort=$RMQ_NAMESRV_PORT
bindAddress=127.0.0.1
kvConfigPath=$RMQ_HOME/namesrv/kvConfig.json
configStorePath=$RMQ_HOME/namesrv/namesrv.properties
EOF
    # Small files keep a fresh store cheap: 64 MiB commit-log files instead
    # of 1 GiB, 30000-entry consume-queue files, a small timer log, and no
    # message index (~420 MB).  The timer wheel stays on: messages with a
    # delay in seconds or a delivery time need it.  Transactions left
    # unknown are checked back after 1 s instead of 6-30 s, so the interop
    # test need not wait.  cleanFileForciblyEnable=false stops
    # the broker from deleting old commit-log files when the disk is >85%
    # used (errata §1); it cannot stop the 90% "disk full" rejection.
    cat >"$RMQ_HOME/broker.conf" <<EOF
brokerClusterName=$cluster
brokerName=$broker_name
brokerId=0
brokerRole=ASYNC_MASTER
flushDiskType=ASYNC_FLUSH
namesrvAddr=$namesrv_addr
brokerIP1=127.0.0.1
bindAddress=127.0.0.1
listenPort=$RMQ_BROKER_PORT
haListenPort=$((RMQ_BROKER_PORT + 1))
storePathRootDir=$RMQ_HOME/store
storePathCommitLog=$RMQ_HOME/store/commitlog
autoCreateTopicEnable=true
autoCreateSubscriptionGroup=true
mappedFileSizeCommitLog=67108864
mappedFileSizeConsumeQueue=600000
timerWheelEnable=true
mappedFileSizeTimerLog=8388608
messageIndexEnable=false
transactionTimeOut=1000
transactionCheckInterval=1000
cleanFileForciblyEnable=false
diskMaxUsedSpaceRatio=95
${RMQ_BROKER_CONF_EXTRA:-}
EOF
}

start_java() {  # start_java NAME MAIN JVM-ARGS... -- PROGRAM-ARGS...
    local name=$1 main=$2 cp="$RMQ_LIB/*"; shift 2
    if [[ $name == broker ]]; then cp=$RMQ_HOME/ext:$cp; fi
    local -a jvm=() prog=()
    while (($#)) && [[ $1 != -- ]]; do jvm+=("$1"); shift; done
    shift
    prog=("$@")
    # exec keeps the pid of the background subshell = the pid of java, and
    # setsid detaches it from the caller's process group and terminal so a
    # Ctrl-C in a test run does not take the broker down with it.
    # 9>&- : the daemons must not inherit (and so hold forever) the lock fd.
    (
        cd "$RMQ_HOME"
        exec 9>&- setsid nohup java "${jvm_common[@]}" "${jvm[@]}" -cp "$cp" \
            "$main" "${prog[@]}" </dev/null >"$logs/$name.out" 2>&1
    ) &
    echo $! >"$RMQ_HOME/$name.pid"
}

port_free_or_die() {
    local p
    for p in "$@"; do
        port_open "$p" && die "port $p on 127.0.0.1 is already in use (not by our broker; see RMQ_*_PORT)"
    done
    return 0
}

cmd_start() {
    if namesrv_running && broker_running; then
        echo "broker.sh: already running ($namesrv_addr, $broker_addr)" >&2
        return 0
    fi
    command -v java >/dev/null || die "java not found (run scripts/install-deps.sh)"
    need_jars
    build_ext
    # A half-running pair (one died) is restarted from scratch.
    cmd_stop >/dev/null 2>&1 || true
    if [[ -n ${RMQ_JOIN_NAMESRV:-} ]]; then
        namesrv_running || die "no name server listening at $RMQ_JOIN_NAMESRV"
    else
        port_free_or_die "$RMQ_NAMESRV_PORT"
    fi
    port_free_or_die "$((RMQ_BROKER_PORT - 2))" "$RMQ_BROKER_PORT" "$((RMQ_BROKER_PORT + 1))"
    write_configs
    local t0=$SECONDS deadline=$((SECONDS + RMQ_START_TIMEOUT))

    # Both JVMs start at once (start-up is mostly JVM and class loading, so
    # this saves ~2 s).  The broker's own registration at boot may then find
    # no name server, hence --nudge below.
    if [[ -z ${RMQ_JOIN_NAMESRV:-} ]]; then
        start_java namesrv org.apache.rocketmq.namesrv.NamesrvStartup \
            -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 \
            -Drmq.logback.configurationFile=rmq.namesrv.logback.xml -- -c "$RMQ_HOME/namesrv.conf"
    fi
    start_java broker org.apache.rocketmq.broker.BrokerStartup \
        -Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m "${jvm_opens[@]}" \
        -Drmq.logback.configurationFile=rmq.broker.logback.xml \
        -- -c "$RMQ_HOME/broker.conf"

    # Ready = the name server lists the broker.  --nudge: 5.3.3 registers at
    # boot only with name servers its client has already found reachable (an
    # asynchronous scan that often loses the race, even when the name server
    # was up first), and otherwise only 10 s later; the probe makes the broker
    # register again (see rmq_probe.py).
    until python3 "$here/rmq_probe.py" --timeout 1 --nudge cluster "$namesrv_addr" "$broker_name" "$broker_addr" 2>/dev/null; do
        [[ -n ${RMQ_JOIN_NAMESRV:-} ]] || proc_alive "$RMQ_HOME/namesrv.pid" || fail_start "name server exited during start-up"
        proc_alive "$RMQ_HOME/broker.pid" || fail_start "broker exited during start-up"
        ((SECONDS < deadline)) || fail_start "broker not registered with the name server within ${RMQ_START_TIMEOUT}s"
    done
    echo "broker.sh: started in $((SECONDS - t0))s (namesrv $namesrv_addr, broker $broker_name $broker_addr, home $RMQ_HOME)" >&2
}

# TERM every live pid in the given pid files at once (each RocketMQ
# shutdown hook takes 5-10 s, mostly fixed sleeps, so doing both in parallel
# halves the wait), give them 20 s, then KILL what is left.
stop_pids() {  # stop_pids NAME:MAIN...
    local spec name main f pid i
    local -a pids=() names=()
    for spec in "$@"; do
        name=${spec%%:*} main=${spec#*:} f=$RMQ_HOME/$name.pid
        if pid_alive "$f" "$main"; then
            pid=$(<"$f")
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid") names+=("$name")
        fi
    done
    for ((i = 0; i < 200; i++)); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[i]}" 2>/dev/null; then
            echo "broker.sh: ${names[i]} (pid ${pids[i]}) ignored TERM for 20s; killing" >&2
            kill -KILL "${pids[i]}" 2>/dev/null || true
        fi
    done
    for spec in "$@"; do rm -f "$RMQ_HOME/${spec%%:*}.pid"; done
}

cmd_stop() {
    stop_pids broker:BrokerStartup namesrv:NamesrvStartup
    echo "broker.sh: stopped" >&2
}

cmd_status() {
    local rc=0
    if [[ -n ${RMQ_JOIN_NAMESRV:-} ]]; then
        if namesrv_running; then echo "namesrv: $namesrv_addr (joined, not ours)"; else echo "namesrv: $namesrv_addr not listening"; rc=3; fi
    elif namesrv_running; then echo "namesrv: running, pid $(<"$RMQ_HOME/namesrv.pid"), $namesrv_addr"; else echo "namesrv: not running"; rc=3; fi
    if broker_running; then echo "broker:  running, pid $(<"$RMQ_HOME/broker.pid"), $broker_addr"; else echo "broker:  not running"; rc=3; fi
    return $rc
}

# Run the admin CLI with quiet logging and a small, quickly started JVM.
mqadmin() {
    java "${jvm_common[@]}" -Xmx128m -XX:TieredStopAtLevel=1 \
        -Drmq.logback.configurationFile="$here/rmq.quiet.logback.xml" \
        -cp "$RMQ_LIB/*" org.apache.rocketmq.tools.command.MQAdminStartup "$@"
}

# Topic creation talks to the broker directly (UPDATE_AND_CREATE_TOPIC, the
# request mqadmin updateTopic sends) because the admin CLI costs ~3.5 s per
# call; RMQ_USE_MQADMIN=1 uses the official CLI instead, as a cross-check.
cmd_create_topic() {
    local topic=${1:?usage: broker.sh create-topic TOPIC [QUEUES]} queues=${2:-8} out
    broker_running || die "broker is not running (broker.sh start)"
    if [[ ${RMQ_USE_MQADMIN:-0} == 1 ]]; then
        out=$(mqadmin updateTopic -n "$namesrv_addr" -c "$cluster" -t "$topic" -r "$queues" -w "$queues" 2>&1) ||
            die "updateTopic failed: $out"
    else
        python3 "$here/rmq_probe.py" create-topic "$broker_addr" "$topic" "$queues" ||
            die "creating topic $topic failed"
        out=""
    fi
    # The broker pushes the new topic to the name server synchronously, but
    # poll the route anyway; also catches mqadmin failures that exit 0.
    python3 "$here/rmq_probe.py" --timeout 30 route "$namesrv_addr" "$topic" ||
        die "topic $topic has no route after creation ${out:+: $out}"
}

# DELETE_EXPIRED_COMMITLOG: the broker's cleaner then deletes, on its next
# rounds, every commit-log file but the one being written that is older than
# fileReservedTime hours.  The consume queues' min offsets follow.
cmd_delete_expired() {
    broker_running || die "broker is not running (broker.sh start)"
    python3 "$here/rmq_probe.py" delete-expired "$broker_addr" || die "DELETE_EXPIRED_COMMITLOG failed"
}

cmd_env() {
    cat <<EOF
export RMQ_HOME=$RMQ_HOME
export RMQ_LIB=$RMQ_LIB
export RMQ_NAMESRV_PORT=$RMQ_NAMESRV_PORT
export RMQ_BROKER_PORT=$RMQ_BROKER_PORT
export RMQ_NAMESRV=$namesrv_addr
export RMQ_BROKER=$broker_addr
export RMQ_BROKER_NAME=$broker_name
export RMQ_CLUSTER=$cluster
EOF
}

# start and stop hold an exclusive lock on RMQ_HOME, so concurrent callers
# (parallel test runs sharing the default broker) serialize: the second
# start finds the broker running and returns, instead of racing the first.
lock_home() {
    mkdir -p "$RMQ_HOME"
    exec 9>"$RMQ_HOME/.lock"
    flock -w 180 9 || die "timed out waiting for the lock on $RMQ_HOME"
}

case ${1:-} in
    start) lock_home; cmd_start ;;
    stop) lock_home; cmd_stop ;;
    status) cmd_status ;;
    create-topic) shift; cmd_create_topic "$@" ;;
    env) cmd_env ;;
    delete-expired) cmd_delete_expired ;;
    *) echo "usage: $0 start|stop|status|create-topic TOPIC [QUEUES]|env|delete-expired" >&2; exit 2 ;;
esac
