#!/usr/bin/env bash
# Checks the `cuda` feature on a CUDA machine: training throughput (burn LibTorch vs
# PyTorch on the same GPU) and a short synthetic training run (pretrain → VQA →
# caption) on the GPU, evaluated on held-out scenes. Not run by CI (no GPU there).
#
#   eval "$(scripts/libtorch.sh)" && cargo build --release -p edgevlm --features cuda
#   scripts/cuda-check.sh                      # BIN=… OUT=… PRETRAIN_STEPS=… to change
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/edgevlm}
OUT=${OUT:-out/cuda-check}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-800}
VQA_STEPS=${VQA_STEPS:-1200}
CAPTION_STEPS=${CAPTION_STEPS:-400}
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

export EDGEVLM_BACKEND=cuda
stamp "bench train (burn LibTorch, cuda)"
"$BIN" bench train --steps 20 --report "$OUT/bench-burn-cuda.json"
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  stamp "bench (PyTorch, cuda)"
  python3 bench/pytorch_reference.py --device cuda --threads 8 --json "$OUT/bench-torch-cuda.json"
fi

stamp "synthetic scenes: 10,000 training, 1,000 held-out"
"$BIN" data synth --out "$OUT/train" --n 10000 --seed 1 >/dev/null
"$BIN" data synth --out "$OUT/test" --n 1000 --seed 2 >/dev/null
stamp "pretraining ($PRETRAIN_STEPS steps)"
"$BIN" pretrain --data "$OUT/train" --heldout "$OUT/test" --out "$OUT/pre" \
  --max-steps "$PRETRAIN_STEPS" --batch-size 32 --lr 1e-3 --checkpoint-every 200 --quiet
stamp "VQA ($VQA_STEPS steps)"
"$BIN" finetune vqa --from "$OUT/pre" --data "$OUT/train" --out "$OUT/vqa" \
  --max-steps "$VQA_STEPS" --batch-size 16 --lr 1e-3 --checkpoint-every 200 --quiet
stamp "captioning ($CAPTION_STEPS steps)"
"$BIN" finetune caption --from "$OUT/vqa" --data "$OUT/train" --out "$OUT/caption" \
  --max-steps "$CAPTION_STEPS" --batch-size 32 --lr 1e-3 --freeze vision --checkpoint-every 200 --quiet
stamp "evaluating (CPU)"
unset EDGEVLM_BACKEND
"$BIN" eval vqa --model "$OUT/vqa" --data "$OUT/test"
"$BIN" eval caption --model "$OUT/caption" --data "$OUT/test"
stamp done
