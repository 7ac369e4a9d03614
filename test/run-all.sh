#!/usr/bin/env bash
# The whole test suite, from a fresh Debian bookworm machine (as root):
# installs what is missing, builds and installs the extension, starts a
# private RocketMQ name server and broker on loopback with an empty store,
# then runs codec unit tests, bounded fuzzing seeded with frames captured
# from that broker, pg_regress, pgTAP, the TAP tests and the Debian package
# (built; under CI also installed and tested).  Stops the broker by pid.
#
#   FUZZ_SECONDS   per fuzz target (default 30)
set -uo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
# Jars live where the unprivileged test user can read them.
export RMQ_LIB=${RMQ_LIB:-/var/cache/rocketmq_stream/lib}
# A broker of our own, away from the demo's default ports.
export RMQ_HOME=${RMQ_TEST_HOME:-/tmp/rmq_stream_test}
export RMQ_NAMESRV_PORT=19876 RMQ_BROKER_PORT=20911
export RMQ_NAMESRV=127.0.0.1:$RMQ_NAMESRV_PORT

passed=0 failed=0 failures=()
# Each stage's output is also kept, so a failed stage's last lines can be
# printed again at the very end, where a CI log's tail shows them.
stage_logs=$(mktemp -d)
stage() {  # stage NAME COMMAND...
    local name=$1; shift
    echo "=== $name"
    # Not a pipe: a process a stage leaves behind must not hold the stage open.
    if "$@" > >(tee "$stage_logs/$((passed + failed)).log") 2>&1; then
        passed=$((passed + 1)); echo "=== $name: ok"
    else
        failed=$((failed + 1)); failures+=("$name:$((passed + failed - 1))"); echo "=== $name: FAILED"
    fi
}

bash scripts/install-deps.sh || { echo "run-all: could not install dependencies" >&2; exit 1; }
make -s clean >/dev/null
make -s && make -s install || { echo "run-all: build failed" >&2; exit 1; }

# The broker runs as the same unprivileged user as the TAP tests, which
# stop and restart it to test failures.
as_test_user=()
if [[ $(id -u) == 0 ]]; then
    as_test_user=(runuser -u postgres -- env RMQ_LIB="$RMQ_LIB" RMQ_HOME="$RMQ_HOME"
                  RMQ_NAMESRV_PORT="$RMQ_NAMESRV_PORT" RMQ_BROKER_PORT="$RMQ_BROKER_PORT")
fi
# The clone may sit in a directory that user cannot read: it runs a copy.
broker() { "${as_test_user[@]}" bash "$RMQ_HOME/bin/broker.sh" "$@"; }
[[ -x $RMQ_HOME/bin/broker.sh ]] && broker stop >/dev/null 2>&1
rm -rf "$RMQ_HOME"
mkdir -p "$RMQ_HOME/bin"
cp -r test/broker/. "$RMQ_HOME/bin/"
[[ $(id -u) == 0 ]] && chown -R postgres "$RMQ_HOME"
trap 'broker stop' EXIT
broker start || { echo "run-all: the broker did not start" >&2; exit 1; }

# The committed allocation vectors are what the official client computes.
alloc_check() {
    local tmp; tmp=$(mktemp -d)
    RMQ_JAVA_BUILD=$tmp/classes bash test/java/run.sh AllocVectors > "$tmp/v.tsv" &&
        cmp "$tmp/v.tsv" test/unit/alloc_vectors.tsv
    local rc=$?; rm -rf "$tmp"; return $rc
}
stage "allocation vectors from the Java client" alloc_check
stage "codec unit tests" make -s unit
stage "PGXN dist" bash test/run-dist.sh
captured=$(mktemp -d /tmp/rmq_captured.XXXXXX)
stage "seed capture from the real broker" python3 test/fuzz/capture_seeds.py \
    "$RMQ_NAMESRV" "127.0.0.1:$RMQ_BROKER_PORT" rmq_seed_topic "$captured"
stage "bounded fuzzing" env FUZZ_CAPTURED="$captured" bash test/run-fuzz.sh "${FUZZ_SECONDS:-30}"
stage "pg_regress" bash test/run-regress.sh
stage "pgTAP" bash test/run-pgtap.sh
stage "TAP" bash test/run-tap.sh
# Under CI the package is also installed and checked with pg_regress and
# pgTAP (run-deb.sh then puts back what `make install` left), last, as it
# replaces the installed files.
deb_install=0
[[ ${CI:-} == true ]] && deb_install=1
# pg_regress's expected output is that of a broker with an empty store: the
# installed package's run gets one.
fresh_broker() { broker stop >/dev/null && rm -rf "$RMQ_HOME/store" && broker start; }
if [[ ${RMQ_DEB_INSTALL:-$deb_install} == 1 ]]; then
    fresh_broker || echo "run-all: could not restart the broker with an empty store" >&2
fi
stage "Debian package" env RMQ_DEB_INSTALL="${RMQ_DEB_INSTALL:-$deb_install}" bash test/run-deb.sh
rm -rf "$captured"
broker stop
trap - EXIT

echo
for f in "${failures[@]}"; do
    echo "===== the end of what failed stage \"${f%:*}\" printed"
    tail -n 60 "$stage_logs/${f##*:}.log"
done
rm -rf "$stage_logs"
for f in "${failures[@]}"; do echo "failed: ${f%:*}"; done
echo "suites: $passed passed, $failed failed"
((failed == 0))
