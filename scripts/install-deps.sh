#!/usr/bin/env bash
# Install everything rocketmq_stream needs to build and test on Debian 12
# (bookworm), then fetch the RocketMQ broker/client jars from Maven Central.
# Idempotent and quick on a prepared machine: apt runs only when `dpkg-query`
# reports a listed package as not installed, and fetch-jars.sh returns at
# once when its marker matches.  Run as root (or with sudo available).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

pkgs=(
    # PostgreSQL 15 server, headers/PGXS, pgTAP (+ pg_prove) and the Perl
    # TAP test modules
    postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
    libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
    # compression and TLS libraries the extension links against
    zlib1g-dev liblz4-dev libzstd-dev libssl-dev
    # compilers; libclang-rt-dev holds libFuzzer's runtime, which clang only
    # "recommends"
    build-essential clang libclang-rt-dev
    # the Debian package: dpkg-buildpackage with debhelper; pg_buildext comes
    # with postgresql-common
    debhelper
    # the real-broker test bed: Java 17 for RocketMQ, Maven to fetch it,
    # python3 for the protocol probes and seed capture
    openjdk-17-jdk-headless maven python3
)

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    # env, not export: sudo would drop an exported DEBIAN_FRONTEND.
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q)
    if ((EUID != 0)); then
        command -v sudo >/dev/null || { echo "install-deps.sh: run as root to install: ${missing[*]}" >&2; exit 1; }
        apt=(sudo "${apt[@]}")
    fi
    echo "install-deps.sh: installing ${missing[*]}" >&2
    "${apt[@]}" update
    # Only the missing ones: naming an installed package would upgrade it.
    "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
fi

"$root/test/broker/fetch-jars.sh"
