#!/usr/bin/env bash
# Fuzzes what meets outside bytes first (agent frames and conversations, bundles,
# MQTT packets, camera frames, image files) with cargo-fuzz
# (libFuzzer + AddressSanitizer). Not run by CI: it runs for minutes.
#
#   scripts/fuzz.sh                 # each target 600 s
#   FUZZ_SECONDS=60 scripts/fuzz.sh wire_frame
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes -Z flags; the stable toolchain accepts them with this set.
export RUSTC_BOOTSTRAP=1
SECONDS_EACH=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire_frame bundle_manifest agent_conversation mqtt_packet camera_frame preprocess_image)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${SECONDS_EACH}s"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -max_len=4096 2>&1 |
    tee "fuzz-$t.log" | grep -E "^#[0-9]+.*(DONE|pulse)|Done [0-9]+ runs|ERROR|panicked" || true
  grep -q "Done [0-9]* runs" "fuzz-$t.log" || { echo "fuzz: $t did not finish cleanly (see fuzz/fuzz-$t.log)" >&2; exit 1; }
done
