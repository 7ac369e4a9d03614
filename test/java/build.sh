#!/usr/bin/env bash
# Compile the Java interop/benchmark programs in this directory with plain
# javac against the RocketMQ jars (no Maven project needed).
#
#   RMQ_LIB         jar directory (default $HOME/.cache/rocketmq_stream/lib)
#   RMQ_JAVA_BUILD  output directory (default $RMQ_HOME/java-classes,
#                   RMQ_HOME default /tmp/rmq_stream_broker)
#
# Skips the compile when a stamp newer than every source exists.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RMQ_HOME=${RMQ_HOME:-/tmp/rmq_stream_broker}
RMQ_LIB=${RMQ_LIB:-$HOME/.cache/rocketmq_stream/lib}
out=${RMQ_JAVA_BUILD:-$RMQ_HOME/java-classes}
stamp=$out/.built

[[ -f $RMQ_LIB/.fetched ]] || RMQ_LIB=$RMQ_LIB "$here/../broker/fetch-jars.sh"

if [[ -f $stamp ]]; then
    stale=$(find "$here" -maxdepth 1 -name '*.java' -newer "$stamp" | head -n 1)
    [[ -z $stale && ! $RMQ_LIB/.fetched -nt $stamp ]] && exit 0
fi
rm -rf "$out"
mkdir -p "$out"
javac -encoding UTF-8 -Xlint:-options -nowarn -d "$out" -cp "$RMQ_LIB/*" "$here"/*.java
touch "$stamp"
