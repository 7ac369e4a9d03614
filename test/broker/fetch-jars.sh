#!/usr/bin/env bash
# Download Apache RocketMQ 5.3.3 (namesrv, broker, tools, client) and every
# runtime dependency from Maven Central into one flat directory, so the broker
# and the Java interop programs can run with plain `java -cp "$RMQ_LIB/*"`.
#
#   RMQ_LIB   target directory (default $HOME/.cache/rocketmq_stream/lib)
#
# Idempotent: a marker file records the sha256 of pom.xml; when it matches,
# nothing is done (no Maven start-up, no network).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib=${RMQ_LIB:-$HOME/.cache/rocketmq_stream/lib}
pom=$here/pom.xml
marker=$lib/.fetched
want=$(sha256sum "$pom" | cut -d' ' -f1)

if [[ -f $marker && $(cat "$marker") == "$want" ]]; then
    exit 0
fi

command -v mvn >/dev/null || { echo "fetch-jars.sh: mvn not found (run scripts/install-deps.sh)" >&2; exit 1; }

# Drop old jars first so a changed pom never leaves stale ones behind (two
# versions of a library on a wildcard classpath fail in subtle ways).  Only
# *.jar: RMQ_LIB may point somewhere that holds other files too.
mkdir -p "$lib"
rm -f "$marker"
find "$lib" -maxdepth 1 -name '*.jar' -delete
echo "fetch-jars.sh: fetching RocketMQ jars into $lib" >&2
# Maven's output (errors included) is shown only on failure; on success it
# is just stray colour escapes.
if ! out=$(mvn -B -q -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime 2>&1); then
    echo "$out" >&2
    echo "fetch-jars.sh: mvn failed (is Maven Central reachable?)" >&2
    exit 1
fi
n=$(find "$lib" -maxdepth 1 -name '*.jar' | wc -l)
if (( n < 20 )); then
    echo "fetch-jars.sh: only $n jars in $lib; something went wrong" >&2
    exit 1
fi
echo "$want" > "$marker"
echo "fetch-jars.sh: $n jars in $lib" >&2
