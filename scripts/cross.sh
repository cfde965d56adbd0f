#!/usr/bin/env bash
# Cross-builds edgevlm-device for aarch64 (static musl: runs on any ARM64 Linux)
# and checks it under qemu-aarch64 against the x86 build: the device's unit tests,
# the golden self-test, and answers/captions equal to the x86 ones on held-out scenes.
#
#   scripts/cross.sh            # uses the dev profile (dependencies optimised)
#   PROFILE=release scripts/cross.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-musl
PROFILE=${PROFILE:-dev}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
HOST_BIN=$TARGET_DIR/debug
ARM_BIN=$TARGET_DIR/$TARGET/$DIR/edgevlm-device
start=$(date +%s)
stamp() { echo "[cross $(( $(date +%s) - start ))s] $*"; }

stamp "building edgevlm-device for $TARGET ($PROFILE)"
cargo build -p edgevlm-device --target "$TARGET" --profile "$PROFILE"
file "$ARM_BIN" 2>/dev/null | grep -q "ARM aarch64" || { echo "cross: $ARM_BIN is not an aarch64 binary" >&2; exit 1; }
# Includes the V4L2 layout check: the emulated test binary has
# aarch64-linux-gnu-gcc compare its structures with the arm64 videodev2.h.
stamp "unit tests of shared and device under qemu-aarch64"
cargo test -p edgevlm-shared -p edgevlm-device --target "$TARGET" --profile "$PROFILE" --lib

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
stamp "training a tiny model and exporting bundles (x86)"
"$HOST_BIN/edgevlm" data synth --out "$WORK/train" --n 48 --size 32 --seed 21 --clips 24 --clip-frames 4 >/dev/null
"$HOST_BIN/edgevlm" data synth --out "$WORK/test" --n 1 --size 32 --seed 22 --clips 1 --clip-frames 4 >/dev/null
common=(--quiet --batch-size 8 --max-steps 10 --seed 3)
"$HOST_BIN/edgevlm" pretrain --tiny "${common[@]}" --data "$WORK/train" --out "$WORK/pre" >/dev/null
"$HOST_BIN/edgevlm" finetune vqa "${common[@]}" --from "$WORK/pre" --data "$WORK/train" --out "$WORK/vqa" >/dev/null
"$HOST_BIN/edgevlm" finetune caption "${common[@]}" --from "$WORK/vqa" --data "$WORK/train" --out "$WORK/model" >/dev/null
"$HOST_BIN/edgevlm" export --model "$WORK/model" --out "$WORK/m.bundle" >/dev/null
"$HOST_BIN/edgevlm" export --model "$WORK/model" --out "$WORK/m8.bundle" --int8 >/dev/null
"$HOST_BIN/edgevlm" finetune clip-caption "${common[@]}" --freeze vision --from "$WORK/model" --data "$WORK/train" \
  --out "$WORK/clips" >/dev/null
"$HOST_BIN/edgevlm" export --model "$WORK/clips" --out "$WORK/clips.bundle" >/dev/null
for task in reasoning dialog; do
  "$HOST_BIN/edgevlm" finetune "$task" "${common[@]}" --from "$WORK/pre" --data "$WORK/train" --out "$WORK/$task" >/dev/null
  "$HOST_BIN/edgevlm" export --model "$WORK/$task" --out "$WORK/$task.bundle" >/dev/null
done

stamp "comparing aarch64 (qemu) with x86"
run_both() {
  local x86 arm
  x86=$("$HOST_BIN/edgevlm-device" "$@" 2>/dev/null)
  arm=$(qemu-aarch64 "$ARM_BIN" "$@" 2>/dev/null)
  if [ "$x86" != "$arm" ]; then
    echo "cross: aarch64 and x86 differ on: $*" >&2
    echo "  x86:     $x86" >&2
    echo "  aarch64: $arm" >&2
    exit 1
  fi
  echo "  same: ${x86//$'\n'/ | }"
}
# The same with stdin (a conversation for `chat`).
run_both_stdin() {
  local input=$1 x86 arm
  shift
  x86=$(printf '%s' "$input" | "$HOST_BIN/edgevlm-device" "$@" 2>/dev/null)
  arm=$(printf '%s' "$input" | qemu-aarch64 "$ARM_BIN" "$@" 2>/dev/null)
  if [ "$x86" != "$arm" ]; then
    echo "cross: aarch64 and x86 differ on: $*" >&2
    echo "  x86:     $x86" >&2
    echo "  aarch64: $arm" >&2
    exit 1
  fi
  echo "  same: ${x86//$'\n'/ | }"
}
# Each emulated run spends ~20 s optimising the graphs, so one image is checked
# through every command (f32) and the int8 bundle through its self-test.
qemu-aarch64 "$ARM_BIN" selftest --bundle "$WORK/m8.bundle"
qemu-aarch64 "$ARM_BIN" selftest --bundle "$WORK/m.bundle"
image="$WORK/test/images/000000.png"
run_both caption "$image" --bundle "$WORK/m.bundle"
run_both caption "$image" --bundle "$WORK/m.bundle" --beam 3
run_both ask "$image" "how many objects are there?" --bundle "$WORK/m.bundle"
run_both match "$image" "a red circle" "a blue square" --bundle "$WORK/m.bundle"
run_both verify "$image" "there are more circles than squares" --bundle "$WORK/reasoning.bundle"
run_both_stdin $'what colour is the leftmost object?\nwhat shape is it?\nwhat colour is the object closest to it?\n' \
  chat "$image" --bundle "$WORK/dialog.bundle"
run_both caption-clip "$WORK/test/clips/000000" --bundle "$WORK/clips.bundle"
run_both caption-clip "$WORK/test/clips/000000" --reversed --bundle "$WORK/clips.bundle"

stamp "the run loop under qemu: directory camera, GPIO button on a value file"
"$HOST_BIN/edgevlm" data synth --out "$WORK/frames" --n 2 --size 32 --seed 23 >/dev/null
mkdir "$WORK/inbox"
cp "$WORK/frames/images/000000.png" "$WORK/inbox/a.png"
cp "$WORK/frames/images/000001.png" "$WORK/inbox/b.png"
# Renamed into place: the loop must never read a half-written value file.
set_pin() { echo "$1" >"$WORK/gpio.new" && mv "$WORK/gpio.new" "$WORK/gpio"; }
set_pin 0
cat >"$WORK/device.toml" <<TOML
device = "qemu-board"
bundle = "m.bundle"
unsigned_bundle = true    # a bench under qemu: the signed path is tested in tests/
tick_ms = 20
questions = ["how many objects are there?"]
events.file = "events.jsonl"
[camera]
kind = "directory"
path = "inbox"
existing = true
[trigger]
kind = "button"
file = "gpio"
active_low = false
debounce_ms = 40
TOML
qemu-aarch64 "$ARM_BIN" run --config "$WORK/device.toml" --max-events 2 2>"$WORK/run.log" &
loop_pid=$!
events() { [ -f "$WORK/events.jsonl" ] && wc -l <"$WORK/events.jsonl" || echo 0; }
wait_events() {
  for _ in $(seq 600); do [ "$(events)" -ge "$1" ] && return 0; sleep 0.5; done
  echo "cross: the aarch64 run loop produced $(events) events, expected $1" >&2
  cat "$WORK/run.log" >&2; kill "$loop_pid" 2>/dev/null; exit 1
}
set_pin 1   # press
wait_events 1
set_pin 0   # release, then press again
sleep 1
set_pin 1
wait_events 2
wait "$loop_pid"
for name in a b; do
  want=$("$HOST_BIN/edgevlm-device" caption "$WORK/inbox/$name.png" --bundle "$WORK/m.bundle" 2>/dev/null)
  grep -F "\"source\":\"$WORK/inbox/$name.png\"" "$WORK/events.jsonl" | grep -qF "\"caption\":\"$want\"" || {
    echo "cross: the aarch64 loop's event for $name.png lacks the x86 caption \"$want\"" >&2
    cat "$WORK/events.jsonl" >&2; exit 1
  }
  echo "  same: $name.png -> $want"
done
stamp "the real-photo model (EfficientNet-Lite0 + MiniLM) under qemu, on real photos"
# A small model trained on the fixture photos (tests/fixtures/photos) by the recipe.
photos="$WORK/photos"
mkdir -p "$photos/Images"
cp tests/fixtures/photos/*.txt "$photos"/
while read -r name; do cp "models/pretrained/samples/$name" "$photos/Images/"; done \
  <tests/fixtures/photos/Flickr_8k.trainImages.txt
"$HOST_BIN/edgevlm" train --recipe flickr8k --data "$photos" --out "$WORK/photo" --cache "$WORK/cache" \
  --towers models/pretrained --align-epochs 40 --caption-epochs 12 --patience 12 --beam 3 >/dev/null 2>&1
"$HOST_BIN/edgevlm" export --model "$WORK/photo" --out "$WORK/p.bundle" >/dev/null
# Beam 3 and consensus reranking, as the bundle asks.
run_both caption models/pretrained/samples/chelsea.png --bundle "$WORK/p.bundle"
run_both caption models/pretrained/samples/motorcycle_left.png --bundle "$WORK/p.bundle"
run_both match models/pretrained/samples/coffee.png "a cup of coffee" "a rocket" --bundle "$WORK/p.bundle"
# The fused VQA head on the photo model, on a question set of the fixture photos.
while read -r name; do
  printf '{"image": "%s", "question": "what is this a photo of?", "answer": "%s"}\n' \
    "$PWD/models/pretrained/samples/$name" "${name%.*}"
done <tests/fixtures/photos/Flickr_8k.trainImages.txt >"$WORK/photo-questions.jsonl"
"$HOST_BIN/edgevlm" finetune vqa --from "$WORK/photo" --data "$WORK/photo-questions.jsonl" --out "$WORK/photo-vqa" \
  --cache "$WORK/cache" --max-steps 60 --batch-size 10 --lr 0.001 --quiet >/dev/null
"$HOST_BIN/edgevlm" export --model "$WORK/photo-vqa" --out "$WORK/pv.bundle" >/dev/null
run_both ask models/pretrained/samples/chelsea.png "what is this a photo of?" --bundle "$WORK/pv.bundle"
stamp "aarch64 device ok"
