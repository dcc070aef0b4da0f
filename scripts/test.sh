#!/usr/bin/env bash
# The whole test suite, on a fresh machine of this project's kind: installs the real components
# (restic, PostgreSQL, MariaDB/Galera), checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# A one-shot build: incremental artifacts would only double the target directory (7 of 15 GB
# before), on machines with a few GB to spare.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
