#!/usr/bin/env bash
# Build the one-file binary dist/dcosd (x86-64 Linux) from this checkout:
#
#     packaging/build.sh [--clean]
#
# - a build venv, .venv-build, gets exactly packaging/requirements-build.txt (reinstalled when that
#   file changes); the machine needs python3 (built with --enable-shared, as Debian's and pyenv's
#   are), python3-venv, gcc, pkg-config and libsystemd-dev (pystemd compiles) — scripts/setup.sh
#   installs them;
# - the commit, build time and bundled pystemd version go into a generated module,
#   build/gen/_dcosd_build_info.py, that only the binary carries (`dcosd --version` shows them);
# - PyInstaller runs packaging/dcosd.spec; then the binary must answer `--version` with an empty
#   environment, or the build fails.
# Concurrent builds of one checkout take turns (flock on build/.lock).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
clean=()
[ "${1:-}" = --clean ] && clean=(--clean)

mkdir -p build/gen dist
exec 9>build/.lock
flock 9

python=${PYTHON:-python3}
"$python" packaging/check_pins.py
venv=.venv-build
req=packaging/requirements-build.txt
if [ "$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("Py_ENABLE_SHARED"))')" != 1 ]; then
  echo "build.sh: $python has no shared libpython; PyInstaller needs one (Debian's python3 has it)" >&2
  exit 1
fi
stamp=$(sha256sum "$req" | cut -c1-16)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$stamp" ]; then
  echo "build.sh: installing $req into $venv"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  # (this machine's pip.conf may name local indexes that do not exist: their warnings are noise)
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$stamp" > "$venv/.requirements"
fi

commit=unknown dirty=0
if git rev-parse --git-dir >/dev/null 2>&1; then
  commit=$(git rev-parse --short=12 HEAD)
  git diff --quiet HEAD -- dcosd packaging systemd pyproject.toml 2>/dev/null || dirty=1
fi
pystemd_version=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("pystemd"))')
cat > build/gen/_dcosd_build_info.py <<INFO
# Written by packaging/build.sh; read by dcosd/version.py.
COMMIT = "$commit"
DIRTY = "$dirty"
BUILT = "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
PYSTEMD = "$pystemd_version"
INFO

# PYTHONPATH: the spec's collect_* helpers import dcosd in a subprocess of their own.
PYTHONPATH="$repo:$repo/build/gen" "$venv/bin/pyinstaller" --noconfirm --log-level WARN "${clean[@]}" \
  --distpath dist --workpath build/pyinstaller packaging/dcosd.spec

env -i dist/dcosd --version
echo "build.sh: dist/dcosd, $(du -m dist/dcosd | cut -f1) MB, commit $commit$([ "$dirty" = 1 ] && echo ' (dirty)')"
