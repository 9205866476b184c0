#!/usr/bin/env bash
# The local mesh demo on embedded defaults: a control plane, two services and their
# sidecars on 127.0.0.1. Pass --check to run it non-interactively.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bins
exec target/release/palisadectl demo "$@"
