#!/usr/bin/env bash
# The main job end to end on the embedded default: set up, build, generate a
# synthetic scene dataset and print what it holds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
bin="${CARGO_TARGET_DIR:-target}/debug/edgevlm"
out=out/demo
"$bin" data synth --out "$out/train" --n 2000 --seed 1
"$bin" data synth --out "$out/test" --n 200 --seed 2
echo
echo "== training scenes"
"$bin" data stats jsonl "$out/train"
echo
echo "== training captions"
"$bin" data stats text-image "$out/train"
echo
echo "== held-out scenes"
"$bin" data stats jsonl "$out/test"
echo
echo "example:"
head -n 3 "$out/test/questions.jsonl"
