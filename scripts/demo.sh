#!/usr/bin/env bash
# The main job end to end on the embedded default: set up, build, then on synthetic
# scenes generate data → pretrain → fine-tune for VQA and captions → evaluate on
# held-out scenes. A release build: on 2 cores it takes about as long as a debug one
# from cold, and trains about twice as fast.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/release/edgevlm" OUT=out/demo scripts/synthetic.sh
