#!/usr/bin/env bash
# Fetches libtorch for the `cuda` feature from the PyTorch wheel on PyPI (the only
# registry these machines reach; burn-cuda's build downloads LLVM from elsewhere) and
# unpacks its headers and libraries. Idempotent. Prints the environment to build with:
#
#   eval "$(scripts/libtorch.sh)"
#   cargo build --release -p edgevlm --features cuda
#   EDGEVLM_BACKEND=cuda target/release/edgevlm bench train
#
# At run time the libraries must match the ones built against: the same PyTorch version
# (TORCH_VERSION, default 2.11.0). LD_LIBRARY_PATH from the printed environment points
# at the unpacked copy; on a machine with that PyTorch installed, its torch/lib works too.
set -euo pipefail

version="${TORCH_VERSION:-2.11.0}"
root="${LIBTORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/edgevlm/libtorch-$version}"

if [ ! -f "$root/torch/lib/libtorch_cuda.so" ]; then
    wheels="$root.wheel"
    mkdir -p "$wheels"
    python3 -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        "torch==$version" -d "$wheels" >&2
    staging="$root.partial"
    rm -rf "$staging"
    mkdir -p "$staging"
    unzip -q -o "$wheels"/torch-"$version"-*.whl 'torch/lib/*' 'torch/include/*' -d "$staging"
    rm -rf "$root"
    mv "$staging" "$root"
    rm -rf "$wheels"
fi

echo "export LIBTORCH='$root/torch'"
echo "export LIBTORCH_BYPASS_VERSION_CHECK=1"
echo "export LD_LIBRARY_PATH='$root/torch/lib'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
