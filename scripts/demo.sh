#!/usr/bin/env bash
# The embedded default: installs what it needs, builds hasteward, and runs `hasteward demo`
# (a throwaway PostgreSQL and restic repository: backup, list, verify, restore, compare).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --locked -p hasteward
exec "${CARGO_TARGET_DIR:-target}/release/hasteward" demo "$@"
