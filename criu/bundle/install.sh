#!/usr/bin/env bash
# Installs a self-contained CRIU (Debian forky's criu 4.2.x with its own glibc and
# libraries) into a private prefix, without touching the system's apt sources,
# package lists or libraries. Debian bookworm's criu 3.17 fails on current kernels
# ("Unexpected rt vDSO area bounds"); trixie's 4.1.1 cannot dump a task holding any
# TCP/UDP socket on Linux >= 6.16 (checkpoint-restore/criu#2705, fixed in 4.2); forky's
# needs a newer glibc, so it runs under its own loader. SNAP_CRIU_SUITE=trixie gets 4.1.1
# back. Idempotent: a second run with the bundle in place returns at once.
#
# Usage: criu/bundle/install.sh [PREFIX]     (default: <repo>/.local/criu)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
prefix=${1:-${SNAP_CRIU_PREFIX:-$repo/.local/criu}}
suite=${SNAP_CRIU_SUITE:-forky}
mirror=${SNAP_CRIU_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
stamp="$prefix/.bundle-complete"
want="suite=$suite mirror=$mirror"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$prefix/root/usr/sbin/criu" ]; then
  exit 0
fi

for tool in apt-get apt-cache dpkg; do
  command -v "$tool" >/dev/null || { echo "criu bundle: '$tool' not found; this installer needs a Debian-based system" >&2; exit 1; }
done
[ -r "$keyring" ] || { echo "criu bundle: $keyring missing; run: apt-get install -y debian-archive-keyring" >&2; exit 1; }

work="$prefix/.apt"
rm -rf "$prefix/root" "$stamp"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$prefix/root"
echo "deb [signed-by=$keyring] $mirror $suite main" > "$work/sources.list"
: > "$work/status"

# A private apt: own sources list, own package lists, empty dpkg status (so the whole
# dependency closure is resolved), own cache. Nothing under /etc/apt or /var/lib is read or written.
apt_opts=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=/dev/null"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::State::status=$work/status"
  -o "Dir::Cache=$work/cache"
  -o "APT::Get::List-Cleanup=false"
  -o "APT::Sandbox::User=root"
)
echo "criu bundle: reading $suite package lists" >&2
apt-get "${apt_opts[@]}" -qq update

pkgs=$(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests \
  --no-conflicts --no-breaks --no-replaces --no-enhances --no-pre-depends criu \
  | grep -v '^ ' | grep -v '^<' | sort -u)
echo "criu bundle: downloading $(echo "$pkgs" | wc -l) packages" >&2
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download $pkgs)

for deb in "$work/debs"/*.deb; do
  dpkg-deb -x "$deb" "$prefix/root"
done

lib="$prefix/root/usr/lib/x86_64-linux-gnu"
case "$(dpkg --print-architecture)" in
  amd64) lib="$prefix/root/usr/lib/x86_64-linux-gnu"; loader="$lib/ld-linux-x86-64.so.2" ;;
  arm64) lib="$prefix/root/usr/lib/aarch64-linux-gnu"; loader="$lib/ld-linux-aarch64.so.1" ;;
  *) echo "criu bundle: unsupported architecture $(dpkg --print-architecture)" >&2; exit 1 ;;
esac
[ -x "$loader" ] || { echo "criu bundle: loader $loader missing after unpacking" >&2; exit 1; }

# The one launcher every caller uses: the bundle's loader and libraries, never the system's.
cat > "$prefix/criu" <<LAUNCH
#!/bin/sh
exec "$loader" --library-path "$lib" "$prefix/root/usr/sbin/criu" "\$@"
LAUNCH
chmod +x "$prefix/criu"
"$prefix/criu" --version >/dev/null
rm -rf "$work/cache" "$work/debs"
echo "$want" > "$stamp"
echo "criu bundle: installed $("$prefix/criu" --version | head -1) in $prefix" >&2
