#!/usr/bin/env bash
# pgTAP (test/pgtap/*.sql) with pg_prove: the extension's schema,
# privileges and row-level security asserted object by object, against a
# temporary PostgreSQL 15 instance with the extension preloaded.  The same
# files run twice: on a fresh install (database rmq_pgtap, the launcher's,
# where streams can be made) and on 0.1.0 updated to the default version
# (rmq_pgtap_upgraded), so an object the upgrade script lacks fails here
# too.  No broker is needed: no stream ever commits.
#
# As root the instance runs as the "postgres" user, which PostgreSQL
# requires, from a scratch directory it owns.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bindir=$(pg_config --bindir)
port=${PGTAP_PORT:-57433}
work=$(mktemp -d /tmp/rmq_pgtap.XXXXXX)
cp -r "$top/test/pgtap" "$work/pgtap"
run=()
if [[ $(id -u) == 0 ]]; then
    chown -R postgres "$work"
    run=(runuser -u postgres --)
fi
as_pg() { "${run[@]}" env PATH="$bindir:$PATH" PGHOST="$work" PGPORT="$port" PGUSER=postgres "$@"; }

as_pg initdb -D "$work/data" -A trust -U postgres --no-sync >"$work/initdb.log"
cat >>"$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
fsync = off
shared_preload_libraries = 'rocketmq_stream'
rocketmq_stream.database = 'rmq_pgtap'
# Nothing listens there; no stream commits, so nothing asks.
rocketmq_stream.namesrv_addr = '127.0.0.1:1'
CONF
as_pg pg_ctl -D "$work/data" -l "$work/server.log" -w start >/dev/null
stop() { as_pg pg_ctl -D "$work/data" -m fast -w stop >/dev/null || true; }
trap stop EXIT

sql() { as_pg psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
for db in rmq_pgtap rmq_pgtap_upgraded; do
    sql postgres "CREATE DATABASE $db"
    # pgTAP in a schema of its own, so that the extension's schema holds
    # only the extension's objects.
    sql "$db" "CREATE SCHEMA tap; CREATE EXTENSION pgtap SCHEMA tap"
done
sql rmq_pgtap "CREATE EXTENSION rocketmq_stream"
sql rmq_pgtap_upgraded "CREATE EXTENSION rocketmq_stream VERSION '0.1.0'; ALTER EXTENSION rocketmq_stream UPDATE"

status=0
for db in rmq_pgtap rmq_pgtap_upgraded; do
    echo "--- pgTAP on $db"
    (cd "$work" && as_pg pg_prove -d "$db" ${PG_PROVE_FLAGS:-} pgtap/*.sql) || status=1
done
if [[ $status != 0 ]]; then
    tail -n 40 "$work/server.log"
    exit $status
fi
stop
trap - EXIT
rm -rf "$work"
