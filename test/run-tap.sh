#!/usr/bin/env bash
# The TAP tests (test/t/*.pl) with PostgreSQL::Test::Cluster, against the
# broker in $RMQ_NAMESRV.  As root they run as the "postgres" user, which
# PostgreSQL requires, from a scratch directory it owns.  TAP_ONLY=00 runs
# only the files whose names start so.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${RMQ_NAMESRV:?set RMQ_NAMESRV to the test name server, host:port}"
pgxs=$(dirname "$(pg_config --pgxs)")/..
work=$(mktemp -d "${TMPDIR:-/tmp}/rmq_tap.XXXXXX")
cp -r "$top/test" "$work/test"
# The Java programs are built once, here, where the test user can read them.
export RMQ_JAVA_BUILD=${RMQ_JAVA_BUILD:-$work/java-classes}
"$top/test/java/build.sh"
run=(env)
if [[ $(id -u) == 0 ]]; then
    chown -R postgres "$work"
    run=(runuser -u postgres -- env)
fi
status=0
(cd "$work" && "${run[@]}" PATH="$(pg_config --bindir):$PATH" RMQ_NAMESRV="$RMQ_NAMESRV" \
    RMQ_LIB="$RMQ_LIB" RMQ_JAVA_BUILD="$RMQ_JAVA_BUILD" RMQ_HOME="${RMQ_HOME:-$work}" \
    RMQ_NAMESRV_PORT="${RMQ_NAMESRV_PORT:-}" RMQ_BROKER_PORT="${RMQ_BROKER_PORT:-}" \
    RMQ_TEST_DIR="$work/test" TESTDIR="$work" PG_REGRESS="$pgxs/test/regress/pg_regress" \
    prove -I "$pgxs/test/perl" -I "$work/test/t" ${PROVE_FLAGS:-} "$work"/test/t/${TAP_ONLY:-}*.pl) \
    > >(tee "$work/prove.out") 2>&1 || status=$?
if [[ $status != 0 ]]; then
    # Only the failed files' logs, and the verdict last: CI keeps the tail of
    # what a run prints, and that tail must say which test failed and why.
    sleep 1
    failed=$(grep -oE '/test/t/[0-9]+_[a-z0-9_]+\.pl +\(Wstat' "$work/prove.out" | grep -oE '[0-9]+_[a-z0-9_]+' || true)
    for t in ${failed:-}; do
        f="$work/tmp_check/log/regress_log_$t"
        [[ -f $f ]] || continue
        echo "----- $f (not ok and its neighbours, then the end)"
        grep -n -B5 -A8 '^\[[0-9:.]*\]([0-9.]*s) not ok' "$f" | head -n 120 || true
        tail -n 30 "$f"
    done
    echo "----- TAP summary (work directory kept: $work)"
    sed -n '/^Test Summary Report/,$p' "$work/prove.out"
    exit $status
fi
rm -rf "$work"
