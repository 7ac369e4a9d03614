#!/usr/bin/env bash
# pg_regress against a real broker: a temporary PostgreSQL 15 instance with
# the extension preloaded, pointed at the name server in $RMQ_NAMESRV.
#
# PostgreSQL will not run as root, so when we are root the suite runs as the
# "postgres" user from a copy of sql/ and expected/ it can read.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${RMQ_NAMESRV:?set RMQ_NAMESRV to the test name server, host:port}"
bindir=$(pg_config --bindir)
pg_regress=$(dirname "$(pg_config --pgxs)")/../test/regress/pg_regress
work=$(mktemp -d /tmp/rmq_regress.XXXXXX)
# Order matters: rmq_setup creates the topics the others use.
tests=$(grep -v "^#" "$top/test/regress_schedule")

cp -r "$top/sql" "$top/expected" "$work/"
cat > "$work/regress.conf" <<CONF
shared_preload_libraries = 'rocketmq_stream'
rocketmq_stream.namesrv_addr = '$RMQ_NAMESRV'
max_prepared_transactions = 0
CONF
run=()
if [[ $(id -u) == 0 ]]; then
    chown -R postgres "$work"
    run=(runuser -u postgres --)
fi
status=0
(cd "$work" && "${run[@]}" "$pg_regress" --bindir="$bindir" --temp-instance="$work/tmp_check" \
    --temp-config="$work/regress.conf" --inputdir="$work" --outputdir="$work" \
    --port="${PGPORT_REGRESS:-57432}" $tests) || status=$?
if [[ $status != 0 && -f $work/regression.diffs ]]; then
    cp "$work/regression.diffs" "$top/regression.diffs" 2>/dev/null || true
    cat "$work/regression.diffs" | head -200
    # Keep actual output for `cp results/*.out expected/` after review.
    rm -rf "$top/results" && cp -r "$work/results" "$top/results"
fi
[[ $status == 0 ]] && rm -rf "$work"
exit $status
