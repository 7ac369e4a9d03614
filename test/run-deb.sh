#!/usr/bin/env bash
# The Debian package: builds postgresql-15-rocketmq-stream_<version>_<arch>.deb
# from debian/ with dpkg-buildpackage (pg_buildext), from a scratch copy of
# the work tree's files, and checks what it holds: the module, its bitcode,
# the control file and every SQL script, byte for byte, where the system's
# PostgreSQL 15 looks for them (pg_config of /usr/lib/postgresql/15), and
# its dependencies.  The .deb is left in $RMQ_DEB_DIR (default dist/).
#
# RMQ_DEB_INSTALL=1 (run-all.sh sets it under CI) also installs it with
# dpkg -i and runs pg_regress (the broker in $RMQ_NAMESRV; its expected
# output names port 19876) and pgTAP against the installed files, then
# removes the package again and reinstalls the work tree's build, as
# `make install` had left it.  Without it nothing is installed.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pgbin=/usr/lib/postgresql/15/bin
pkg=postgresql-15-rocketmq-stream
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
deb=${pkg}_${version}_$(dpkg --print-architecture).deb
out=${RMQ_DEB_DIR:-$top/dist}
work=$(mktemp -d /tmp/rmq_deb.XXXXXX)
fail() { echo "run-deb: $*" >&2; exit 1; }

# Tracked and new files as they are now; no build products.
mkdir -p "$work/src"
(cd "$top" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -C "$work/src" -xf -
(cd "$work/src" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
    dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1) ||
    { tail -n 60 "$work/build.log"; fail "dpkg-buildpackage failed"; }
[[ -f $work/$deb ]] || fail "dpkg-buildpackage made no $deb"
mkdir -p "$out"
cp "$work/$deb" "$out/"
echo "run-deb: built $out/$deb"

# --- what it holds ------------------------------------------------------------
dpkg-deb -c "$work/$deb" | awk '{print $6}' >"$work/contents"
dpkg-deb -x "$work/$deb" "$work/root"
libdir=$("$pgbin/pg_config" --pkglibdir)
extdir=$("$pgbin/pg_config" --sharedir)/extension
problems=0
check() {  # check COMMAND...: counts and names what does not hold
    "$@" || { echo "run-deb: does not hold: $*" >&2; problems=$((problems + 1)); }
}
check test -f "$work/root$libdir/rocketmq_stream.so"
check grep -qx "./${libdir#/}/rocketmq_stream.so" "$work/contents"
check grep -qx "./${libdir#/}/bitcode/rocketmq_stream.index.bc" "$work/contents"
for f in "$top"/rocketmq_stream.control "$top"/rocketmq_stream--*.sql; do
    check cmp -s "$f" "$work/root$extdir/$(basename "$f")"
done
# Nothing the package would put anywhere else but its docs.
others=$(grep -v -e "^\./$" -e "^\./usr/$" -e "^\./usr/lib/$" -e "^\./usr/share/$" \
    -e "^\./usr/share/doc/" -e "^\./usr/lib/postgresql/" -e "^\./usr/share/postgresql/" "$work/contents" || true)
check test -z "$others"
nm -D --defined-only "$work/root$libdir/rocketmq_stream.so" >"$work/symbols"
check grep -qw Pg_magic_func "$work/symbols"
check grep -qw _PG_init "$work/symbols"
depends=$(dpkg-deb -f "$work/$deb" Depends)
for d in postgresql-15 libssl3 liblz4-1 libzstd1 zlib1g; do
    check grep -qw "$d" <<<"$depends"
done
((problems == 0)) || fail "$problems check(s) of $deb failed"
echo "run-deb: $deb holds the module and $(ls "$work/root$extdir" | wc -l) extension files where $pgbin/pg_config looks"

# --- installed -----------------------------------------------------------------
if [[ ${RMQ_DEB_INSTALL:-0} != 1 ]]; then
    echo "run-deb: not installing it (RMQ_DEB_INSTALL=1 does)"
    rm -rf "$work"
    exit 0
fi
[[ $(id -u) == 0 ]] || fail "RMQ_DEB_INSTALL=1 needs root for dpkg -i"
: "${RMQ_NAMESRV:?set RMQ_NAMESRV to the test name server, host:port}"
was_installed=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
restore() {
    [[ $was_installed == "install ok installed" ]] && return
    dpkg -r "$pkg" >/dev/null || true
    # What `make install` had put there is gone with the package's files.
    if [[ -f $top/rocketmq_stream.so ]]; then make -C "$top" -s install PG_CONFIG="$pgbin/pg_config" >/dev/null; fi
}
trap restore EXIT
dpkg -i "$work/$deb"
owner=$(dpkg -S "$libdir/rocketmq_stream.so" | cut -d: -f1)
[[ $owner == "$pkg" ]] || fail "$libdir/rocketmq_stream.so belongs to '$owner', not $pkg"
status=0
PATH=$pgbin:$PATH bash "$top/test/run-regress.sh" || status=1
PATH=$pgbin:$PATH bash "$top/test/run-pgtap.sh" || status=1
rm -rf "$work"
exit $status
