#!/usr/bin/env bash
# A single-node Apache RocketMQ 5.3.3 (name server + one master broker) for
# tests, run straight from the Maven Central jars fetched by fetch-jars.sh.
#
#   broker.sh start                    start (no-op if already running)
#   broker.sh stop                     stop both processes (TERM, then KILL)
#   broker.sh status                   exit 0 if both are running, else 3
#   broker.sh kill broker|namesrv      SIGKILL one of them (an outage, at once)
#   broker.sh revive                   start what is not running, same store
#   broker.sh create-topic T [QUEUES]  create topic T (default 8 r/w queues)
#                                      and wait for its route; with
#                                      RMQ_USE_MQADMIN=1 via mqadmin updateTopic
#   broker.sh env                      print export lines for tests, e.g.
#                                      eval "$(test/broker/broker.sh env)"
#                                      (plus RMQ_ACL_* / RMQ_TLS_* in the
#                                      secured modes below)
#   broker.sh delete-expired           ask the broker to delete its expired
#                                      commit-log files now (what mqadmin
#                                      deleteExpiredCommitLog does)
#   broker.sh admin SUB ARGS...        the official admin CLI (mqadmin SUB)
#                                      against this name server
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
# Secured modes (opt-in, read by start; without them nothing changes).  The
# mode a broker was started in is recorded in RMQ_HOME/secure.mode, so the
# other commands (env, create-topic, delete-expired) follow it without the
# variables, and start refuses to "reuse" a running broker of another mode.
#   RMQ_ACL=1      ACL 2.0 on the broker: authentication and authorization
#                  enabled (the name server has no ACL in 5.3.3).  Created at
#                  start-up (signed requests from rmq_probe.py, ~2 s):
#                    Super user      RMQ_ACL_ADMIN_USER / _SECRET
#                    topics          RMQ_ACL_TOPIC (4 queues), RMQ_ACL_OTHER_TOPIC
#                                    (granted to no ordinary user)
#                    groups          RMQ_ACL_GROUP, RMQ_ACL_OTHER_GROUP (granted
#                                    to no one)
#                    users, each with an Allow policy on Topic:RMQ_ACL_TOPIC
#                    and Group:RMQ_ACL_GROUP for the actions:
#                      RMQ_ACL_USER / RMQ_ACL_SECRET              Pub,Sub,Get
#                      RMQ_ACL_NOPUB_USER / RMQ_ACL_NOPUB_SECRET  Sub,Get
#                      RMQ_ACL_NOSUB_USER / RMQ_ACL_NOSUB_SECRET  Pub,Get
#                      RMQ_ACL_NOGET_USER / RMQ_ACL_NOGET_SECRET  Pub,Sub
#                  all printed by "broker.sh env".  conf/tools.yml holds the
#                  Super user for mqadmin.  Requests from this script are
#                  signed as the Super user.  Users live in store/config
#                  (RocksDB) and survive a restart; start re-applies them.
#   RMQ_ACL_ADMIN_SECRET=rmq_admin_secret   the Super user's password
#   RMQ_TLS=1      TLS enforced on the name server's and the broker's
#                  remoting ports (tls.server.mode=enforcing: a plain-text
#                  connection is closed at its first bytes, though 5.3.3
#                  still executes that first frame), with a CA and a
#                  server certificate (CN 127.0.0.1, SAN IP:127.0.0.1 and
#                  DNS:localhost) made with openssl in RMQ_TLS_DIR, plus a
#                  client certificate from the same CA and a second,
#                  unrelated CA (wrong_ca.pem) for negative tests.  The
#                  broker registers with the name server over TLS, verifying
#                  its certificate against the CA.  Combinable with RMQ_ACL=1.
#   RMQ_TLS_DIR=$RMQ_HOME/tls         where the certificates live (made if
#                                      missing; share it with a joining broker)
#   RMQ_TLS_CLIENT_AUTH=none          none | optional | require: ask for
#                                      (require: insist on) a client
#                                      certificate signed by the CA
#   What each mode answers to what: ACL_TLS_NOTES.md, acl_matrix.py,
#   tls_matrix.py; the Java side: test/java/SecureCheck.java.
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

# ---- secured modes (RMQ_ACL / RMQ_TLS; see the header) ----------------------
# start takes the mode from the environment and records it in secure.mode;
# every other command reads it back from there (absent = default mode).
mode_file=$RMQ_HOME/secure.mode
if [[ ${1:-} == start ]]; then
    acl=${RMQ_ACL:-0} tls=${RMQ_TLS:-0}
    tls_client_auth=${RMQ_TLS_CLIENT_AUTH:-none}
    tls_dir=${RMQ_TLS_DIR:-$RMQ_HOME/tls}
    acl_admin_secret=${RMQ_ACL_ADMIN_SECRET:-rmq_admin_secret}
    [[ $acl == [01] && $tls == [01] ]] || die "RMQ_ACL and RMQ_TLS take 0 or 1"
    [[ $tls_client_auth == @(none|optional|require) ]] || die "RMQ_TLS_CLIENT_AUTH takes none, optional or require"
else
    acl=0 tls=0 tls_client_auth=none tls_dir=$RMQ_HOME/tls acl_admin_secret=rmq_admin_secret
    # shellcheck disable=SC1090  # written by write_mode below
    if [[ -f $mode_file ]]; then source "$mode_file"; fi
fi
acl_admin_user=rmq_admin
acl_topic=acl_topic acl_other_topic=acl_other_topic
acl_group=acl_group acl_other_group=acl_other_group
# name:password:actions granted on Topic:$acl_topic and Group:$acl_group
acl_users=(app:app_secret:Pub,Sub,Get app_nopub:app_nopub_secret:Sub,Get
    app_nosub:app_nosub_secret:Pub,Get app_noget:app_noget_secret:Pub,Sub)

# What this script's own requests (rmq_probe.py) need in the current mode:
# the Super user's signature, TLS verified against our CA, our client
# certificate.
probe_opts=()
if ((acl)); then probe_opts+=(--access-key "$acl_admin_user" --secret-key "$acl_admin_secret"); fi
if ((tls)); then
    probe_opts+=(--tls --tls-ca "$tls_dir/ca.pem")
    if [[ $tls_client_auth != none ]]; then
        probe_opts+=(--tls-cert "$tls_dir/client.pem" --tls-key "$tls_dir/client.key")
    fi
fi
probe() { python3 "$here/rmq_probe.py" "${probe_opts[@]}" "$@"; }

mode_desc() {  # mode_desc ACL TLS CLIENT_AUTH
    if (($2)); then echo "acl=$1 tls=$2 client_auth=$3"; else echo "acl=$1 tls=$2"; fi
}

write_mode() {
    rm -f "$mode_file"
    if ((acl || tls)); then
        printf 'acl=%s\ntls=%s\ntls_client_auth=%s\ntls_dir=%q\nacl_admin_secret=%q\n' \
            "$acl" "$tls" "$tls_client_auth" "$tls_dir" "$acl_admin_secret" >"$mode_file"
    fi
}

# The mode the running pair was started in (from secure.mode).
running_mode() {
    local acl=0 tls=0 tls_client_auth=none tls_dir acl_admin_secret
    # shellcheck disable=SC1090
    if [[ -f $mode_file ]]; then source "$mode_file"; fi
    mode_desc "$acl" "$tls" "$tls_client_auth"
}

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

# RMQ_TLS: a test CA, a server certificate for 127.0.0.1/localhost signed by
# it, a client certificate signed by it (for RMQ_TLS_CLIENT_AUTH), and an
# unrelated CA with a client certificate of its own (negative tests: a
# client that trusts wrong_ca.pem must refuse the server; a server that
# requires client certificates must refuse wrong_client.pem).  Keys are
# unencrypted PKCS#8 (what Netty's SslContextBuilder reads).  Made once per
# RMQ_TLS_DIR; delete the directory to get new ones.
make_certs() {
    local d=$tls_dir f
    local -a files=(ca.pem server.pem server.key client.pem client.key wrong_ca.pem wrong_client.pem wrong_client.key)
    for f in "${files[@]}"; do [[ -s $d/$f ]] || break; done
    if [[ -s $d/$f ]] && openssl x509 -checkend 86400 -noout -in "$d/server.pem" >/dev/null 2>&1; then
        return 0
    fi
    command -v openssl >/dev/null || die "openssl not found (needed for RMQ_TLS=1)"
    mkdir -p "$d"
    cat >"$d/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF
    (
        set -e
        cd "$d"
        ossl() { openssl "$@" 2>/dev/null; }
        for ca in ca wrong_ca; do
            ossl req -config openssl.cnf -x509 -newkey rsa:2048 -nodes -days 3650 -extensions ca \
                -subj "/CN=rocketmq_stream test $ca" -keyout $ca.key -out $ca.pem
        done
        leaf() {  # leaf NAME CA EXTENSIONS SUBJECT
            ossl req -config openssl.cnf -new -newkey rsa:2048 -nodes -subj "$4" -keyout "$1.key" -out "$1.csr"
            ossl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 8)" \
                -days 3650 -extfile openssl.cnf -extensions "$3" -out "$1.pem"
            rm -f "$1.csr"
        }
        leaf server ca server /CN=127.0.0.1
        leaf client ca client "/CN=rocketmq_stream test client"
        leaf wrong_client wrong_ca client "/CN=rocketmq_stream wrong client"
        chmod 600 ./*.key
    ) || die "making the TLS certificates in $d failed"
}

# JVM flags of both servers for RMQ_TLS (RocketMQ reads TLS settings only
# from system properties, or from tls.config.file, which we point at a file
# that does not exist so that a machine-wide /etc/rocketmq/tls.properties
# cannot interfere).  The client half is for the broker's own connections
# to the name server: TLS, verifying the name server's certificate against
# the CA (the Java client checks the chain only, never the host name).
tls_jvm_flags() {
    local d=$tls_dir
    tls_jvm=(
        -Dtls.config.file="$d/tls.properties.unused"
        -Dtls.server.mode=enforcing
        -Dtls.test.mode.enable=false
        -Dtls.server.certPath="$d/server.pem"
        -Dtls.server.keyPath="$d/server.key"
        -Dtls.server.need.client.auth="$tls_client_auth"
        -Dtls.enable=true
        -Dtls.client.authServer=true
        -Dtls.client.trustCertPath="$d/ca.pem"
    )
    if [[ $tls_client_auth != none ]]; then
        tls_jvm+=(
            -Dtls.server.authClient=true
            -Dtls.server.trustCertPath="$d/ca.pem"
            -Dtls.client.certPath="$d/client.pem"
            -Dtls.client.keyPath="$d/client.key"
        )
    fi
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
    local acl_lines
    acl_lines=$(acl_conf)
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
${acl_lines:+$acl_lines
}${RMQ_BROKER_CONF_EXTRA:-}
EOF
    if ((acl)); then
        # mqadmin signs with ${rocketmq.home.dir}/conf/tools.yml (harmless
        # if left behind: a broker without ACL ignores signatures)
        mkdir -p "$RMQ_HOME/conf"
        printf 'accessKey: %s\nsecretKey: %s\n' "$acl_admin_user" "$acl_admin_secret" >"$RMQ_HOME/conf/tools.yml"
    fi
}

# broker.conf lines for RMQ_ACL=1 (ACL 2.0; AuthConfig fields).  Without a
# metadata provider every request fails; the providers and strategies named
# are also the defaults, spelled out.  Stateless strategies check every
# request (the stateful ones cache a verdict per connection for 60 s).
# The initial user is created as a Super user; the inner-client
# credentials sign the broker's own requests to other brokers.
acl_conf() {
    ((acl)) || return 0
    local p=org.apache.rocketmq.auth
    cat <<EOF
authenticationEnabled=true
authenticationProvider=$p.authentication.provider.DefaultAuthenticationProvider
authenticationMetadataProvider=$p.authentication.provider.LocalAuthenticationMetadataProvider
authenticationStrategy=$p.authentication.strategy.StatelessAuthenticationStrategy
authorizationEnabled=true
authorizationProvider=$p.authorization.provider.DefaultAuthorizationProvider
authorizationMetadataProvider=$p.authorization.provider.LocalAuthorizationMetadataProvider
authorizationStrategy=$p.authorization.strategy.StatelessAuthorizationStrategy
initAuthenticationUser={"username":"$acl_admin_user","password":"$acl_admin_secret"}
innerClientAuthenticationCredentials={"accessKey":"$acl_admin_user","secretKey":"$acl_admin_secret"}
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
        local want have
        want=$(mode_desc "$acl" "$tls" "$tls_client_auth") have=$(running_mode)
        [[ $want == "$have" ]] ||
            die "already running in another mode ($have, not $want); broker.sh stop first"
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
    write_mode
    local t0=$SECONDS deadline=$((SECONDS + RMQ_START_TIMEOUT))
    local -a tls_jvm=()
    if ((tls)); then
        make_certs
        tls_jvm_flags
    fi

    # Both JVMs start at once (start-up is mostly JVM and class loading, so
    # this saves ~2 s).  The broker's own registration at boot may then find
    # no name server, hence --nudge below.
    if [[ -z ${RMQ_JOIN_NAMESRV:-} ]]; then
        start_java namesrv org.apache.rocketmq.namesrv.NamesrvStartup \
            -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 "${tls_jvm[@]}" \
            -Drmq.logback.configurationFile=rmq.namesrv.logback.xml -- -c "$RMQ_HOME/namesrv.conf"
    fi
    start_java broker org.apache.rocketmq.broker.BrokerStartup \
        -Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m "${jvm_opens[@]}" "${tls_jvm[@]}" \
        -Drmq.logback.configurationFile=rmq.broker.logback.xml \
        -- -c "$RMQ_HOME/broker.conf"

    # Ready = the name server lists the broker.  --nudge: 5.3.3 registers at
    # boot only with name servers its client has already found reachable (an
    # asynchronous scan that often loses the race, even when the name server
    # was up first), and otherwise only 10 s later; the probe makes the broker
    # register again (see rmq_probe.py).
    until probe --timeout 1 --nudge cluster "$namesrv_addr" "$broker_name" "$broker_addr" 2>/dev/null; do
        [[ -n ${RMQ_JOIN_NAMESRV:-} ]] || proc_alive "$RMQ_HOME/namesrv.pid" || fail_start "name server exited during start-up"
        proc_alive "$RMQ_HOME/broker.pid" || fail_start "broker exited during start-up"
        ((SECONDS < deadline)) || fail_start "broker not registered with the name server within ${RMQ_START_TIMEOUT}s"
    done
    local m="" t1=$SECONDS
    if ((acl)); then acl_setup || fail_start "creating the ACL users failed"; fi
    if ((acl || tls)); then m=", $(mode_desc "$acl" "$tls" "$tls_client_auth")"; fi
    if ((acl)); then m+=", ACL set-up $((SECONDS - t1))s"; fi
    echo "broker.sh: started in $((SECONDS - t0))s (namesrv $namesrv_addr, broker $broker_name $broker_addr, home $RMQ_HOME$m)" >&2
}

# RMQ_ACL: the test topics and users (see the header), created (or updated)
# with requests signed as the Super user.
acl_setup() {
    local u name pass actions
    cmd_create_topic "$acl_topic" 4 >/dev/null
    cmd_create_topic "$acl_other_topic" 4 >/dev/null
    for u in "${acl_users[@]}"; do
        IFS=: read -r name pass actions <<<"$u"
        probe create-user "$broker_addr" "$name" "$pass" Normal || return 1
        probe create-acl "$broker_addr" "$name" "Topic:$acl_topic,Group:$acl_group" "$actions" Allow || return 1
    done
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

# For outage tests: SIGKILL one of the two (a crash, and instant: a clean
# shutdown takes 15-20 s of RocketMQ's fixed sleeps), keeping its store.
cmd_kill() {
    local name=${1:?usage: broker.sh kill broker|namesrv} main f
    case $name in
        broker) main=BrokerStartup ;;
        namesrv) main=NamesrvStartup ;;
        *) die "kill: broker or namesrv, not $name" ;;
    esac
    f=$RMQ_HOME/$name.pid
    pid_alive "$f" "$main" || die "$name is not running"
    kill -KILL "$(<"$f")"
    while kill -0 "$(<"$f")" 2>/dev/null; do sleep 0.05; done
    rm -f "$f"
    echo "broker.sh: killed $name" >&2
}

# Start whichever of the two is not running, with the configs and store it
# had, and wait until the name server lists the broker again.
cmd_revive() {
    local t0=$SECONDS deadline=$((SECONDS + RMQ_START_TIMEOUT))
    local -a tls_jvm=()
    [[ -f $RMQ_HOME/broker.conf ]] || die "nothing to revive in $RMQ_HOME (broker.sh start)"
    ((tls)) && tls_jvm_flags
    if [[ -z ${RMQ_JOIN_NAMESRV:-} ]] && ! pid_alive "$RMQ_HOME/namesrv.pid" NamesrvStartup; then
        start_java namesrv org.apache.rocketmq.namesrv.NamesrvStartup \
            -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 "${tls_jvm[@]}" \
            -Drmq.logback.configurationFile=rmq.namesrv.logback.xml -- -c "$RMQ_HOME/namesrv.conf"
    fi
    if ! pid_alive "$RMQ_HOME/broker.pid" BrokerStartup; then
        start_java broker org.apache.rocketmq.broker.BrokerStartup \
            -Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m "${jvm_opens[@]}" "${tls_jvm[@]}" \
            -Drmq.logback.configurationFile=rmq.broker.logback.xml \
            -- -c "$RMQ_HOME/broker.conf"
    fi
    until probe --timeout 1 --nudge cluster "$namesrv_addr" "$broker_name" "$broker_addr" 2>/dev/null; do
        proc_alive "$RMQ_HOME/broker.pid" || die "broker exited during start-up"
        ((SECONDS < deadline)) || die "broker not registered with the name server within ${RMQ_START_TIMEOUT}s"
    done
    echo "broker.sh: revived in $((SECONDS - t0))s" >&2
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
# RMQ_ACL: it signs as the Super user of conf/tools.yml by itself.
# RMQ_TLS: TLS, verifying the servers against our CA (and our client
# certificate if they ask for one).
mqadmin() {
    local -a tls_cli=()
    if ((tls)); then
        tls_cli=(-Dtls.enable=true -Dtls.test.mode.enable=false -Dtls.config.file="$tls_dir/tls.properties.unused"
            -Dtls.client.authServer=true -Dtls.client.trustCertPath="$tls_dir/ca.pem")
        if [[ $tls_client_auth != none ]]; then
            tls_cli+=(-Dtls.client.certPath="$tls_dir/client.pem" -Dtls.client.keyPath="$tls_dir/client.key")
        fi
    fi
    java "${jvm_common[@]}" -Xmx128m -XX:TieredStopAtLevel=1 "${tls_cli[@]}" \
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
        probe create-topic "$broker_addr" "$topic" "$queues" ||
            die "creating topic $topic failed"
        out=""
    fi
    # The broker pushes the new topic to the name server synchronously, but
    # poll the route anyway; also catches mqadmin failures that exit 0.
    probe --timeout 30 route "$namesrv_addr" "$topic" ||
        die "topic $topic has no route after creation ${out:+: $out}"
}

# DELETE_EXPIRED_COMMITLOG: the broker's cleaner then deletes, on its next
# rounds, every commit-log file but the one being written that is older than
# fileReservedTime hours.  The consume queues' min offsets follow.
cmd_delete_expired() {
    broker_running || die "broker is not running (broker.sh start)"
    probe delete-expired "$broker_addr" || die "DELETE_EXPIRED_COMMITLOG failed"
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
    if ((acl)); then
        local u name pass actions var
        echo "export RMQ_ACL=1"
        echo "export RMQ_ACL_ADMIN_USER=$acl_admin_user"
        echo "export RMQ_ACL_ADMIN_SECRET=$(printf %q "$acl_admin_secret")"
        echo "export RMQ_ACL_TOPIC=$acl_topic RMQ_ACL_OTHER_TOPIC=$acl_other_topic"
        echo "export RMQ_ACL_GROUP=$acl_group RMQ_ACL_OTHER_GROUP=$acl_other_group"
        for u in "${acl_users[@]}"; do
            IFS=: read -r name pass actions <<<"$u"
            var=RMQ_ACL${name#app}           # app -> RMQ_ACL, app_nopub -> RMQ_ACL_nopub
            var=${var^^}
            echo "export ${var}_USER=$name ${var}_SECRET=$pass"
        done
    fi
    if ((tls)); then
        cat <<EOF
export RMQ_TLS=1
export RMQ_TLS_CLIENT_AUTH=$tls_client_auth
export RMQ_TLS_DIR=$tls_dir
export RMQ_TLS_CA=$tls_dir/ca.pem
export RMQ_TLS_CLIENT_CERT=$tls_dir/client.pem RMQ_TLS_CLIENT_KEY=$tls_dir/client.key
export RMQ_TLS_WRONG_CA=$tls_dir/wrong_ca.pem
export RMQ_TLS_WRONG_CLIENT_CERT=$tls_dir/wrong_client.pem RMQ_TLS_WRONG_CLIENT_KEY=$tls_dir/wrong_client.key
EOF
    fi
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
    kill) lock_home; cmd_kill "${2:-}" ;;
    revive) lock_home; cmd_revive ;;
    status) cmd_status ;;
    create-topic) shift; cmd_create_topic "$@" ;;
    env) cmd_env ;;
    delete-expired) cmd_delete_expired ;;
    # The official admin CLI against this name server, e.g. admin consumerConnection -g G
    admin) shift; sub=${1:?usage: broker.sh admin SUBCOMMAND ARGS...}; shift
        mqadmin "$sub" -n "$namesrv_addr" "$@" ;;
    *) echo "usage: $0 start|stop|status|kill broker|namesrv|revive|create-topic TOPIC [QUEUES]|env|delete-expired|admin SUBCOMMAND ARGS..." >&2; exit 2 ;;
esac
