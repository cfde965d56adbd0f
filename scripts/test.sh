#!/usr/bin/env bash
# Runs every check CI runs: formatting, the workspace build and all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
# The end-to-end tests drive the real binaries: build them first.
cargo build --workspace --bins
cargo test --workspace
