#!/usr/bin/env bash
# Runs every check CI runs: formatting, the workspace build, all tests, and the
# aarch64 firmware build checked under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
# The end-to-end tests drive the real binaries: build them first.
cargo build --workspace --bins
cargo test --workspace
# The firmware for aarch64 boards, tested under qemu against the x86 build.
scripts/cross.sh
