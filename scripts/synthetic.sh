#!/usr/bin/env bash
# The synthetic-scenes pipeline end to end: generate scenes, pretrain (ITC, ITM, MLM,
# masked image features), fine-tune for captioning (the vision encoder learns with
# the decoder) and for VQA (vision and decoder frozen; side by side for the spatial
# head, then joined into one model), with BASELINE=1 also VQA from scratch for the
# same steps, evaluate on the held-out scenes, quantize and export one device bundle
# that captions and answers, let the device runtime answer and caption held-out
# scenes, and print a summary. Sizes come from the environment. The defaults are the
# demo's (scripts/demo.sh), chosen by measurement to reach VQA > 90 % and BLEU-4 > 60
# on the held-out scenes in under 15 minutes on 2 cores (release build; see
# docs/results-synthetic.md); the full-size run reaches 99.8 % (25 min):
#
#   TRAIN=10000 TEST=1000 PRETRAIN_STEPS=300 CAPTION_STEPS=1500 VQA_STEPS=5000 scripts/synthetic.sh
#
# VQA_HEAD=fused trains the ALBEF-style head on the fused [CLS] instead of the
# spatial one (16 images × 8 questions a step); with BASELINE=1 it shows what
# pretraining is worth to the head that reads the pretrained encoders.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${TRAIN:-10000}
TEST=${TEST:-200}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-60}
CAPTION_STEPS=${CAPTION_STEPS:-1500}
VQA_STEPS=${VQA_STEPS:-3000}
BASELINE=${BASELINE:-0}
VQA_HEAD=${VQA_HEAD:-spatial}
OUT=${OUT:-out/synthetic}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/edgevlm}
DEVICE=${DEVICE:-$(dirname "$BIN")/edgevlm-device}
QUIET=${QUIET:-}

start=$(date +%s)
stage_name=""
stage_start=$start
stage_times=()
# Closes the running stage (its time goes into the summary) and opens the next.
stage() {
  local now
  now=$(date +%s)
  [ -n "$stage_name" ] && stage_times+=("$stage_name $((now - stage_start)) s")
  stage_name=$1
  stage_start=$now
  [ -z "$2" ] || echo "[$((now - start))s] $2"
}

stage data "generating $TRAIN training and $TEST held-out scenes"
"$BIN" data synth --out "$OUT/train" --n "$TRAIN" --seed 1 >/dev/null
"$BIN" data synth --out "$OUT/test" --n "$TEST" --seed 2 >/dev/null

stage pretraining "pretraining ($PRETRAIN_STEPS steps)"
"$BIN" pretrain --data "$OUT/train" --heldout "$OUT/test" --out "$OUT/pretrained" \
  --max-steps "$PRETRAIN_STEPS" --batch-size 32 --lr 1e-3 --checkpoint-every 50 $QUIET
echo "held-out objective losses (first and last checkpoint):"
head -n 1 "$OUT/pretrained/heldout.jsonl"; tail -n 1 "$OUT/pretrained/heldout.jsonl"

# Captions teach the vision encoder colours, shapes and their order densely (every
# word is a target); frozen, the pretrained encoder held captions at BLEU-4 38.
CAPTION_ARGS=(--data "$OUT/train" --max-steps "$CAPTION_STEPS" --batch-size 32 --lr 1e-3
  --checkpoint-every 250 $QUIET)

# The spatial VQA head reads the pixels through its grid encoder (CNN cells with
# coordinates): the questions ask where things are, which caption-trained image
# tokens do not keep. (Pretraining the grid with --grid slowed VQA; see docs/.)
case "$VQA_HEAD" in
  spatial) QUESTIONS_PER_IMAGE=16 ;;
  fused) QUESTIONS_PER_IMAGE=8 ;;
  *) echo "VQA_HEAD must be spatial or fused, not '$VQA_HEAD'" >&2; exit 2 ;;
esac
# The text encoder learns at a tenth of the head's rate: steadier question vectors
# while the head learns (VQA 98.4 % against 97.7 % at the full rate; see docs/).
# Vision and decoder stay frozen so the model captions exactly as the caption model.
VQA_ARGS=(--data "$OUT/train" --max-steps "$VQA_STEPS" --vqa-head "$VQA_HEAD" --batch-size 16
  --questions-per-image "$QUESTIONS_PER_IMAGE" --lr 1e-3 --slow text --slow-lr-ratio 0.1
  --checkpoint-every 100 $QUIET)

MODEL="$OUT/model"
if [ "$VQA_HEAD" = spatial ]; then
  # Captioning trains vision and decoder; the spatial head trains text, grid and
  # itself and reads neither of the other two. So both start from the pretrained
  # model side by side, each on its own share of the cores (this CPU backend gains
  # little from a second thread on these small matrices), and `edgevlm join` gives
  # exactly the model that VQA fine-tuned after captioning would (tested).
  threads=$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))
  stage "captioning + VQA" "fine-tuning captioning ($CAPTION_STEPS steps, vision included) and VQA ($VQA_STEPS steps, spatial head) side by side, $threads thread(s) each; logs: $OUT/{caption,vqa}.log"
  RAYON_NUM_THREADS=$threads "$BIN" finetune caption --from "$OUT/pretrained" --out "$OUT/caption" \
    "${CAPTION_ARGS[@]}" >"$OUT/caption.log" 2>&1 &
  caption_pid=$!
  RAYON_NUM_THREADS=$threads "$BIN" finetune vqa --from "$OUT/pretrained" --out "$OUT/vqa" \
    --freeze vision,decoder "${VQA_ARGS[@]}" >"$OUT/vqa.log" 2>&1 &
  vqa_pid=$!
  for job in caption:$caption_pid vqa:$vqa_pid; do
    if ! wait "${job#*:}"; then
      echo "fine-tuning ${job%%:*} failed:" >&2
      tail -n 20 "$OUT/${job%%:*}.log" >&2
      exit 1
    fi
  done
  "$BIN" join --model "$OUT/vqa" --from "$OUT/caption" --parts vision,decoder --out "$MODEL"
else
  # The fused head reads the caption-trained image tokens: VQA waits for captioning.
  stage captioning "fine-tuning captioning, vision included ($CAPTION_STEPS steps)"
  "$BIN" finetune caption --from "$OUT/pretrained" --out "$OUT/caption" "${CAPTION_ARGS[@]}"
  stage VQA "fine-tuning VQA ($VQA_HEAD head) from the captioning model ($VQA_STEPS steps)"
  "$BIN" finetune vqa --from "$OUT/caption" --out "$MODEL" --freeze vision,decoder "${VQA_ARGS[@]}"
fi
if [ "$BASELINE" = 1 ]; then
  stage baseline "fine-tuning VQA from scratch, same steps (baseline)"
  "$BIN" finetune vqa --scratch --from "$OUT/pretrained" --out "$OUT/vqa-scratch" "${VQA_ARGS[@]}"
fi

stage evaluation "evaluating on the held-out scenes"
"$BIN" eval vqa --model "$MODEL" --data "$OUT/test"
if [ "$BASELINE" = 1 ]; then
  echo "-- from scratch:"
  "$BIN" eval vqa --model "$OUT/vqa-scratch" --data "$OUT/test"
fi
"$BIN" eval caption --model "$MODEL" --data "$OUT/test"

stage bundle "quantizing (int8 weights) and exporting a device bundle"
BUNDLE="$OUT/synthetic.bundle"
"$BIN" quantize --model "$MODEL" --out "$BUNDLE" --data "$OUT/test"
"$DEVICE" selftest --bundle "$BUNDLE"

stage device "the device runtime (tract, int8 bundle) on held-out scenes"
# Eight scenes, one question each, each of another family.
asked=$(python3 - "$OUT/test/questions.jsonl" <<'PY'
import json, sys
families, images = set(), set()
for line in open(sys.argv[1]):
    q = json.loads(line)
    if q["family"] not in families and q["image"] not in images and len(images) < 8:
        families.add(q["family"])
        images.add(q["image"])
        print("\t".join((q["image"], q["question"], q["answer"])))
PY
)
device_lines=()
device_right=0
device_asked=0
while IFS=$'\t' read -r image question truth; do
  answer=$("$DEVICE" ask "$OUT/test/$image" "$question" --bundle "$BUNDLE" 2>"$OUT/ask.log")
  ms=$(tail -n 1 "$OUT/ask.log" | sed 's/.*(\(.*\))/\1/')
  device_asked=$((device_asked + 1))
  if [ "$answer" = "$truth" ]; then
    device_right=$((device_right + 1))
    device_lines+=("  ✓ $image: $question -> $answer ($ms)")
  else
    device_lines+=("  ✗ $image: $question -> $answer (truth: $truth; $ms)")
  fi
done <<<"$asked"
for image in 000000 000001 000002; do
  caption=$("$DEVICE" caption "$OUT/test/images/$image.png" --bundle "$BUNDLE" 2>"$OUT/caption.log")
  device_lines+=("  images/$image.png: \"$caption\" ($(tail -n 1 "$OUT/caption.log"))")
done
stage "" ""

# The summary a person reads at a glance: quality, the device, time, where things are.
quality=$(python3 - "${BUNDLE%.bundle}.quantize.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f, q = r["f32"], r["int8"]
print(f"  VQA accuracy   {f['vqa_accuracy']:6.1f} %   int8 {q['vqa_accuracy']:6.1f} %")
print(f"  BLEU-4         {f['bleu4']:6.1f}     int8 {q['bleu4']:6.1f}")
print(f"  CIDEr-D        {f['cider_d']:6.1f}     int8 {q['cider_d']:6.1f}")
print(f"  bundle size    {f['bytes'] / 1e6:6.1f} MB   int8 {q['bytes'] / 1e6:6.1f} MB")
PY
)
total=$(($(date +%s) - start))
release=$(dirname "$BIN")
echo
echo "================================ summary ================================"
echo "held-out scenes ($TEST, never trained on), f32 model and int8 bundle:"
echo "$quality"
echo "the device runtime answered $device_right of $device_asked (int8 bundle):"
printf '%s\n' "${device_lines[@]}"
echo "time: $(IFS=,; echo "${stage_times[*]}" | sed 's/,/, /g'); total $total s"
echo "model:  $MODEL (burn; evaluation reports eval-*.json beside it)"
echo "bundle: $BUNDLE (int8; f32 twin ${BUNDLE%.bundle}.f32.bundle)"
echo "next:"
echo "  $release/edgevlm-device caption $OUT/test/images/000005.png --bundle $BUNDLE"
echo "  $release/edgevlm-device ask $OUT/test/images/000005.png \"how many circles are there?\" --bundle $BUNDLE"
echo "  $release/edgevlm ask $OUT/test/images/000005.png \"what shape is the red object?\" --model $MODEL"
echo "  $release/edgevlm keygen --out keys   # once: keys/edgevlm.key signs, keys/edgevlm.pub goes on the board"
echo "  $release/edgevlm sign $BUNDLE --key keys/edgevlm.key   # then flash it: README, Deploying"
