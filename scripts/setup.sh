#!/usr/bin/env bash
# Everything a fresh Debian machine needs to build, test and run this project, as root.
# Idempotent and quick when already done: each step checks before it works.
#   scripts/setup.sh            system packages, CRIU bundle, npm dependencies, build
# Environment: SNAP_SETUP_BENCH=1 also installs fio, hyperfine and the AWS CLI for the benchmarks.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
say() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "run as root (FUSE mounts, CRIU and apt need it): sudo $0"
  exit 1
fi

# 1. System packages: FUSE, redis-server (the local cloud runs its own instance, never the
#    system service), util-linux (unshare), and a toolchain for native npm modules.
#    s3fs and rclone too: test/bench/fs-targets.test.ts mounts every benchmark peer.
#    libxxhash-dev: the xxHash header that native/page-hash is built with.
pkgs=(fuse libfuse2 redis-server util-linux ca-certificates debian-archive-keyring python3 make g++ zstd libxxhash-dev s3fs rclone)
if [ "${SNAP_SETUP_BENCH:-0}" = 1 ]; then pkgs+=(fio hyperfine awscli); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the system redis on install; ours never uses it, so keep it out of the way.
  if [[ " ${missing[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
fi

# 2. Node.js >= 20.
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  say "Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none)); install a current LTS"
  exit 1
fi

# 3. The self-contained CRIU (Debian forky's criu 4.2 with its own loader and libraries).
criu/bundle/install.sh

# 4. npm dependencies, native modules included (package.json's allowScripts approves their
#    install scripts; its postinstall applies patches/, rebuilds fuse-native from source and
#    builds this project's own native module, native/page-hash).
#    Re-run only when package-lock.json, a patch or native/page-hash changed, or its build is gone.
stamp=node_modules/.snap-setup-stamp
want=$(cat package-lock.json patches/*.patch native/page-hash/binding.gyp native/page-hash/*.c | sha256sum | cut -d' ' -f1)
[ -f native/page-hash/build/Release/page_hash.node ] || rm -f "$stamp"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing npm dependencies"
  npm install --no-audit --no-fund --loglevel=error >/dev/null
  node -e 'require("fuse-native"); require("zstd-napi"); require("./native/page-hash/build/Release/page_hash.node")' ||
    { say "native modules do not load"; exit 1; }
  # node-gyp-build falls back to fuse-native's unpatched prebuild if the postinstall build is missing.
  node -e 'const p = require("node-gyp-build").path("node_modules/fuse-native"); if (!p.includes("/build/Release/")) throw new Error(p)' ||
    { say "fuse-native loads its unpatched prebuild, not the build from patches/"; exit 1; }
  echo "$want" > "$stamp"
fi

# 5. Build (TypeScript to dist/), so that bin/snapctl.js runs.
npx tsc -p tsconfig.build.json
say "ready"
