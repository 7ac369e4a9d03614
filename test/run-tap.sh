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
    prove -I "$pgxs/test/perl" -I "$work/test/t" ${PROVE_FLAGS:-} "$work"/test/t/${TAP_ONLY:-}*.pl) || status=$?
if [[ $status != 0 ]]; then
    for f in "$work"/tmp_check/log/regress_log_*; do
        [[ -f $f ]] && { echo "----- $f"; tail -n 60 "$f"; }
    done
    exit $status
fi
rm -rf "$work"
