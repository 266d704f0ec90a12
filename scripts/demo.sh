#!/usr/bin/env bash
# The main command: set-up, then the main job on the embedded local cloud.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scripts/setup.sh
exec node bin/snapctl.js demo "$@"
