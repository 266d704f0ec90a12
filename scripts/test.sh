#!/usr/bin/env bash
# The test command: set-up, lint and format check, type check, then every test against
# real components (s3rver, redis-server, FUSE, CRIU). Usage: scripts/test.sh [vitest args]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scripts/setup.sh
npx biome check .
npx tsc -p tsconfig.json --noEmit
npx vitest run "$@"
