#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (CI adds fmt and clippy).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --doc
cargo nextest run --workspace --profile ci
