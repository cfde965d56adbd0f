#!/usr/bin/env bash
# Checks the `cuda` feature on a CUDA machine: training throughput (burn LibTorch vs
# PyTorch on the same GPU), then the full-size synthetic pipeline (scripts/synthetic.sh)
# with every training job on the GPU. Not run by CI (no GPU there).
#
#   eval "$(scripts/libtorch.sh)"
#   cargo build --release -p edgevlm -p edgevlm-device --features edgevlm/cuda
#   scripts/cuda-check.sh                      # BIN=… OUT=… PRETRAIN_STEPS=… to change
set -euo pipefail
cd "$(dirname "$0")/.."
export BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/edgevlm}
export OUT=${OUT:-out/cuda-check}
mkdir -p "$OUT"

export EDGEVLM_BACKEND=cuda
echo "bench train (burn LibTorch, cuda)"
"$BIN" bench train --steps 20 --report "$OUT/bench-burn-cuda.json"
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  echo "bench (PyTorch, cuda)"
  python3 bench/pytorch_reference.py --device cuda --threads 8 --json "$OUT/bench-torch-cuda.json"
fi

TRAIN=${TRAIN:-10000} TEST=${TEST:-1000} PRETRAIN_STEPS=${PRETRAIN_STEPS:-800} \
  VQA_STEPS=${VQA_STEPS:-1200} CAPTION_STEPS=${CAPTION_STEPS:-1500} BASELINE=${BASELINE:-1} \
  QUIET=--quiet scripts/synthetic.sh
