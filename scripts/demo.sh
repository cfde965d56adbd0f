#!/usr/bin/env bash
# The main job end to end on the embedded default: set up, build, then on synthetic
# scenes generate data → pretrain → fine-tune for VQA and captions → evaluate on
# held-out scenes (a few minutes on 2 cores after the build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/debug/edgevlm" OUT=out/demo scripts/synthetic.sh
