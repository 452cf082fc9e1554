#!/bin/sh
# Install Salon from this source tree into a virtualenv at PREFIX, then check it.
#
#   deploy/install.sh PREFIX [SOURCE_DIR]
#
# The container image (deploy/Dockerfile) runs exactly this script, and
# tests/deploy/test_install.py runs it as-is as an unprivileged user: what the
# image installs is what the test installed. It needs python3 (3.11 or newer,
# $PYTHON to choose another) and the package index for Salon's dependencies;
# Salon itself comes from SOURCE_DIR (default: the tree this script is in),
# which is only read: the build happens in a temporary copy.
set -eu

usage() {
    echo "usage: $0 PREFIX [SOURCE_DIR]" >&2
    exit 2
}
fail() {
    echo "install.sh: error: $*" >&2
    exit 1
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
prefix=$1
src=${2:-$(dirname "$0")/..}
src=$(cd "$src" && pwd) || fail "source dir ${2:-} not found"
python=${PYTHON:-python3}

for f in pyproject.toml README.md src/salon/__init__.py deploy/salon.yaml deploy/healthcheck.py; do
    [ -f "$src/$f" ] || fail "$src/$f is missing: SOURCE_DIR must be Salon's source tree"
done
command -v "$python" >/dev/null 2>&1 || fail "$python not found (set PYTHON)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "Salon needs Python 3.11 or newer ($python is $("$python" -V 2>&1))"
if [ -e "$prefix" ] && [ -n "$(ls -A "$prefix" 2>/dev/null)" ] && [ ! -x "$prefix/bin/python" ]; then
    fail "$prefix exists and is not a virtualenv; give an empty or new directory"
fi

# Build from a copy: the source tree may be read-only (a container's COPY, a
# checkout owned by someone else), and setuptools writes *.egg-info next to src/.
build=$(mktemp -d "${TMPDIR:-/tmp}/salon-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
cp -R "$src/pyproject.toml" "$src/README.md" "$src/src" "$build/"
chmod -R u+w "$build"   # a read-only source gives read-only copies

echo "install.sh: installing Salon from $src into $prefix"
"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
    --no-warn-script-location "$build[postgres]"
# The image can use either store: SQLite in /data, or PostgreSQL (store.url).
"$prefix/bin/python" -c 'import asyncpg' || fail "the postgres extra (asyncpg) did not install"
# The container's HEALTHCHECK (and compose's) runs this file.
install -m 0644 "$src/deploy/healthcheck.py" "$prefix/healthcheck.py"

# The installed CLI starts, and the shipped config is one it accepts (with
# placeholder values for the variables it names: nothing secret is involved).
"$prefix/bin/salon" run --help >/dev/null || fail "salon run --help failed"
env SALON_HOMESERVER_URL=http://synapse:8008 SALON_SERVER_NAME=example.org \
    SALON_REGISTRATION_SECRET=install-check SALON_API_TOKEN=install-check \
    "$prefix/bin/salon" config check -c "$src/deploy/salon.yaml" \
    || fail "deploy/salon.yaml does not pass 'salon config check'"
echo "install.sh: done: $prefix/bin/salon"
