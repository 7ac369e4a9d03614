#!/usr/bin/env bash
# PGXN: `make dist`, and what PGXN needs of the archive: one top directory
# rocketmq_stream-<version>/ holding META.json, whose name, version, license
# and provided extension agree with the control file, the Makefile, the
# Debian changelog and the SQL scripts in the archive, and an upgrade path
# to this version from every older one shipped.  The full meta-spec check
# is PGXN's own validator (cargo install pgxn_meta; pgxn_meta META.json),
# run here when it is on PATH.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d /tmp/rmq_dist.XXXXXX)
trap 'rm -rf "$work"' EXIT
version=$(sed -n 's/^EXTVERSION = //p' "$top/Makefile")
make -C "$top" -s dist
mv "$top/rocketmq_stream-$version.zip" "$work/"
deb_version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version 2>/dev/null || echo unknown)

python3 - "$work/rocketmq_stream-$version.zip" "$version" "$deb_version" <<'PY'
import json, re, sys, zipfile

path, version, deb_version = sys.argv[1:]
top = f"rocketmq_stream-{version}/"
z = zipfile.ZipFile(path)
names = z.namelist()
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)

semver = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
licenses = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd", "gfdl_1_2",
            "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1",
            "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source", "restricted",
            "unrestricted", "unknown"}

check(all(n.startswith(top) for n in names), f"every file under {top}")
meta = json.loads(z.read(top + "META.json"))
for key in ("name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"):
    check(key in meta, f"META.json has {key}")
check(meta.get("name") == "rocketmq_stream", "META.json name is rocketmq_stream")
check(meta.get("version") == version, f"META.json version is the Makefile's {version}")
check(bool(semver.match(meta.get("version", ""))), "META.json version is a SemVer")
check(meta.get("meta-spec", {}).get("version") == "1.0.0", "meta-spec 1.0.0")
m = meta.get("maintainer")
check(isinstance(m, str) and m or isinstance(m, list) and m and all(isinstance(x, str) and x for x in m),
      "maintainer: a name or a list of them")
lic = meta.get("license")
check(lic in licenses if isinstance(lic, str) else False, "license: a PGXN license string")
ext = meta.get("provides", {}).get("rocketmq_stream", {})
check(ext.get("version") == version, "provides rocketmq_stream at this version")
check(top + ext.get("file", "-") in names, "the provided extension's file is in the archive")
check("PostgreSQL" in meta.get("prereqs", {}).get("runtime", {}).get("requires", {}),
      "a runtime prerequisite on PostgreSQL")

control = z.read(top + "rocketmq_stream.control").decode()
check(f"default_version = '{version}'" in control, f"the control file's default_version is {version}")
scripts = [n[len(top):] for n in names if re.match(re.escape(top) + r"rocketmq_stream--[^/]*\.sql$", n)]
check(f"rocketmq_stream--{version}.sql" in scripts, "the install script of this version")
steps = {}
for s in scripts:
    mo = re.match(r"rocketmq_stream--([^-]+)--([^-]+)\.sql$", s)
    if mo:
        steps.setdefault(mo.group(1), []).append(mo.group(2))
for s in scripts:
    mo = re.match(r"rocketmq_stream--([^-]+)\.sql$", s)
    if mo and mo.group(1) != version:
        # ALTER EXTENSION ... UPDATE follows upgrade scripts one after another.
        seen, todo = set(), [mo.group(1)]
        while todo:
            v = todo.pop()
            if v not in seen:
                seen.add(v)
                todo.extend(steps.get(v, []))
        check(version in seen, f"an upgrade path from {mo.group(1)} to {version}")
check(deb_version.split("-")[0] == version, f"debian/changelog's version {deb_version} is {version}")

for p in problems:
    print(f"run-dist: not so: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"run-dist: {path.rsplit('/', 1)[-1]}: {len(names)} entries under {top}, META.json consistent")
PY

if command -v pgxn_meta >/dev/null; then
    pgxn_meta "$top/META.json"
fi
