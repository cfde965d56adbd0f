#!/usr/bin/env bash
# Clip captioning on synthetic clips end to end: scenes and clips (an object moves,
# appears or disappears, or nothing happens), pretraining (the clips' words go into
# the vocabulary), captioning of single scenes (the vision encoder learns colours
# and shapes), then clip captioning from that model with the vision encoder frozen
# (a temporal encoder over the frames' image tokens, read by the caption decoder),
# and the held-out evaluation: BLEU, CIDEr-D, events told, reversed clips.
# Sizes come from the environment; the defaults are the measured run of
# docs/results-clips.md.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${TRAIN:-10000}
CLIPS=${CLIPS:-6000}
TEST_CLIPS=${TEST_CLIPS:-1000}
FRAMES=${FRAMES:-8}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-100}
CAPTION_STEPS=${CAPTION_STEPS:-1500}
CLIP_STEPS=${CLIP_STEPS:-2000}
OUT=${OUT:-out/clips}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/edgevlm}
QUIET=${QUIET:-}

start=$(date +%s)
say() { echo "[$(($(date +%s) - start))s] $*"; }

say "generating $TRAIN scenes and $CLIPS clips of $FRAMES frames to train on, $TEST_CLIPS held-out clips"
"$BIN" data synth --out "$OUT/train" --n "$TRAIN" --clips "$CLIPS" --clip-frames "$FRAMES" --seed 1 >/dev/null
"$BIN" data synth --out "$OUT/test" --n 200 --clips "$TEST_CLIPS" --clip-frames "$FRAMES" --seed 2 >/dev/null

if [ ! -f "$OUT/caption/model.bpk" ]; then
  say "pretraining ($PRETRAIN_STEPS steps), then captioning scenes ($CAPTION_STEPS steps, vision included)"
  "$BIN" pretrain --data "$OUT/train" --out "$OUT/pretrained" --max-steps "$PRETRAIN_STEPS" \
    --batch-size 32 --lr 1e-3 --checkpoint-every 50 $QUIET
  "$BIN" finetune caption --from "$OUT/pretrained" --out "$OUT/caption" --data "$OUT/train" \
    --max-steps "$CAPTION_STEPS" --batch-size 32 --lr 1e-3 --checkpoint-every 250 $QUIET
fi

say "captioning clips ($CLIP_STEPS steps of 16 clips; vision frozen)"
"$BIN" finetune clip-caption --from "$OUT/caption" --out "$OUT/model" --data "$OUT/train" \
  --freeze vision --max-steps "$CLIP_STEPS" --batch-size 16 --lr 1e-3 --checkpoint-every 250 $QUIET

say "evaluating on the held-out clips"
"$BIN" eval clip-caption --model "$OUT/model" --data "$OUT/test"
say "done; try: $BIN caption-clip $OUT/test/clips/000000 --model $OUT/model [--reversed]"
