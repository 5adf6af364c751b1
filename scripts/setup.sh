#!/usr/bin/env bash
# Install what dcosd needs on a Debian/Ubuntu machine (as root) into ./.venv.
#   scripts/setup.sh          runtime dependencies
#   scripts/setup.sh test     runtime + everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-run}

apt_packages=(python3 python3-venv python3-dev gcc pkg-config libsystemd-dev)
if [ "$want" = test ]; then
  # systemd + dbus: the real systemd sandbox of tests/system; dnsutils: dig; iproute2: network namespaces;
  # redis-server: a default catalogue package exercised by the package tests.
  apt_packages+=(systemd dbus dnsutils iproute2 util-linux procps redis-server)
  # memcached: the memcached catalogue package (tests/integration/test_packages_install.py).
  apt_packages+=(memcached)
  # the one-file binary, built by tests/system/test_binary.py through packaging/build.sh: binutils
  # (strip, objdump for PyInstaller), git (the commit it shows); the compilers are above.
  apt_packages+=(binutils git)
  # the web UI's browser tests (tests/browser): Debian's Chromium, driven by the Python playwright package
  # with executable_path=/usr/bin/chromium — playwright never downloads a browser of its own here.
  apt_packages+=(chromium)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
extras=systemd
[ "$want" = test ] && extras=systemd,test
# (this machine's pip.conf names local indexes that may not exist: their warnings are noise)
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]" 2> >(grep -v "is ignored: it is neither" >&2)

if [ "$want" = test ]; then
  # tests/compat: pymesos 0.3.15, as COMPAT.md §1 says. Its dependency http-parser does not compile on
  # Python 3.11, so pymesos goes in without dependencies and http-parser's pure-Python parser
  # (http_parser.pyparser, which pymesos falls back to) is unpacked from the sdist into site-packages.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps pymesos==0.3.15 six addict \
    2> >(grep -v "is ignored: it is neither" >&2)
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [ ! -f "$site/http_parser/pyparser.py" ]; then
    tmp=$(mktemp -d)
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$tmp" \
      http-parser==0.9.0 2> >(grep -v "is ignored: it is neither" >&2)
    tar -xzf "$tmp"/http-parser-0.9.0.tar.gz -C "$tmp"
    mkdir -p "$site/http_parser"
    cp "$tmp"/http-parser-0.9.0/http_parser/{__init__,_socketio,http,pyparser,reader,util}.py "$site/http_parser/"
    rm -rf "$tmp"
  fi
fi
