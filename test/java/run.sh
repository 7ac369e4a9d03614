#!/usr/bin/env bash
# Run one of the Java programs of this directory (building them first if
# needed):  test/java/run.sh CLASS ARGS...
# e.g.      test/java/run.sh InteropProduce 127.0.0.1:9876 t1 /tmp/sent.tsv
#
# Client logging goes to stderr at WARN (rmq.quiet.logback.xml), and
# user.home points at RMQ_HOME so the client never writes under $HOME.
# Extra JVM flags: JAVA_OPTS (default -Xmx512m).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export RMQ_HOME=${RMQ_HOME:-/tmp/rmq_stream_broker}
export RMQ_LIB=${RMQ_LIB:-$HOME/.cache/rocketmq_stream/lib}
out=${RMQ_JAVA_BUILD:-$RMQ_HOME/java-classes}
(($# >= 1)) || { echo "usage: $0 CLASS ARGS..." >&2; exit 2; }

"$here/build.sh"
mkdir -p "$RMQ_HOME"
# shellcheck disable=SC2086  # JAVA_OPTS is a list of flags
exec java ${JAVA_OPTS:--Xmx512m} -XX:+UseG1GC \
    -Duser.home="$RMQ_HOME" -Drocketmq.home.dir="$RMQ_HOME" -Dfile.encoding=UTF-8 \
    -Drmq.logback.configurationFile="$here/../broker/rmq.quiet.logback.xml" \
    -cp "$out:$RMQ_LIB/*" "$@"
