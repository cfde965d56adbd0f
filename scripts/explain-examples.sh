#!/usr/bin/env bash
# Regenerates the occlusion maps in docs/explain/ on the CC0 scikit-image photos
# (models/pretrained/samples, fetched by scripts/setup.sh):
#
#   scripts/explain-examples.sh CAPTION_MODEL VQA_MODEL
#
# CAPTION_MODEL: a photo model folder (`train --recipe flickr8k`), explained by its
# image-text similarity; VQA_MODEL: one fine-tuned with `finetune vqa` on it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 CAPTION_MODEL VQA_MODEL" >&2; exit 2; }
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/edgevlm}
samples=models/pretrained/samples
out=docs/explain
mkdir -p "$out"
"$BIN" explain "$samples/chelsea.png" --model "$1" --out "$out/chelsea-caption.png"
"$BIN" explain "$samples/coffee.png" --model "$1" --text "a cup of coffee on a table" --out "$out/coffee-text.png"
"$BIN" explain "$samples/motorcycle_left.png" --model "$2" --question "what colour is the motorcycle?" \
  --out "$out/motorcycle-answer.png"
