#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine: installs what it needs, then
# format check, clippy (with and without optional features) and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

ensure_rust
# Test-time parts: real Redis, real espeak-ng, headless Chromium, Xvfb, sox for audio checks.
ensure_apt pkg-config redis-server espeak-ng chromium xvfb sox python3 python3-pip
# The desktop shell (src-tauri, a workspace member): WebKitGTK & co. to build it; D-Bus, xdotool
# and ImageMagick for its smoke test under Xvfb.
ensure_apt libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libayatana-appindicator3-dev \
  librsvg2-dev libasound2-dev dbus xdotool x11-utils imagemagick curl
ensure_piper

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Each step's line says when it began (seconds since the start), so a slow step shows in the log.
step() { echo "==> [${SECONDS}s] $*"; }
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy (-D warnings)"
# One feature set for clippy, the build and the tests (`bench`: `kotodama bench` and its fakes are
# built and tested here, though the binary streamers run leaves them out).
FEATURES=(--features koto-server/bench)
cargo clippy --workspace --all-targets "${FEATURES[@]}" --quiet -- -D warnings
# The workspace build enables koto-events' `redis` feature (koto-server's default); check the
# crate without it too, so the embedded-only build stays clean and tested.
cargo clippy -p koto-events --all-targets --quiet -- -D warnings
# One build of everything, with one feature resolution: the desktop binary, `kotodama` and every
# test binary. The smoke and browser tests below run these binaries and `cargo test` reuses them,
# so the workspace is compiled once for code (and once more for clippy's checks), not per step.
step "cargo build --workspace --all-targets"
cargo build --workspace --all-targets "${FEATURES[@]}" --quiet
BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug"
# The real desktop binary in a real (virtual) window: start, single instance, hotkey STOP, busy
# port page, clean quit. KOTODAMA_SKIP_DESKTOP=1 skips it (the mock-runtime tests above still run).
if [ "${KOTODAMA_SKIP_DESKTOP:-0}" = 1 ]; then
  step "desktop smoke test skipped (KOTODAMA_SKIP_DESKTOP=1)"
else
  step "desktop smoke test (tests/desktop/smoke.sh; screenshots in artifacts/)"
  KOTODAMA_DESKTOP_BIN="$BIN_DIR/kotodama-desktop" tests/desktop/smoke.sh
fi
# The real kotodama.exe, cross-built with mingw-w64, under Wine: folders, a turn, bad starts,
# Ctrl+C. KOTODAMA_SKIP_WINDOWS=1 skips it; where the target or Wine cannot be installed it
# prints a SKIPPED line.
if [ "${KOTODAMA_SKIP_WINDOWS:-0}" = 1 ]; then
  step "Windows smoke test skipped (KOTODAMA_SKIP_WINDOWS=1)"
else
  step "Windows smoke test (tests/windows/wine-smoke.sh: cross-build, then Wine)"
  tests/windows/wine-smoke.sh
fi
# The control panel and OBS overlay in headless Chromium (tests/ui, Node >= 18 + playwright-core).
command -v node >/dev/null || ensure_apt nodejs npm
if [ -x /usr/bin/chromium ] && command -v node >/dev/null && command -v npm >/dev/null; then
  step "browser tests (tests/ui/run.sh; screenshots in artifacts/ui/)"
  KOTODAMA_BIN="$BIN_DIR/kotodama" tests/ui/run.sh
else
  step "browser tests SKIPPED: they need /usr/bin/chromium and Node.js >= 18 with npm (apt-get install chromium nodejs npm)"
fi
# The real local ASR (scripts/asr-server.sh: faster-whisper + the offline Whisper base model),
# started once for the tests that use it (KOTODAMA_TEST_ASR_URL); without it they start their
# own, or print a skip line when faster-whisper cannot be installed.
if ensure_asr; then
  asr_log="$(mktemp -t kotodama-asr-XXXXXX)"
  python3 scripts/asr_server.py --port 0 >"$asr_log" 2>&1 &
  asr_pid=$!
  trap 'kill "$asr_pid" 2>/dev/null || true; rm -f "$asr_log"' EXIT
  for _ in $(seq 1 600); do
    grep -q 'asr-server ready:' "$asr_log" && break
    kill -0 "$asr_pid" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q 'asr-server ready:' "$asr_log"; then
    KOTODAMA_TEST_ASR_URL="$(sed -nE 's/.*ready: (http:[^ ]+).*/\1/p' "$asr_log")"
    export KOTODAMA_TEST_ASR_URL
    step "real ASR for the tests at $KOTODAMA_TEST_ASR_URL"
  else
    step "real ASR did not start; its tests start their own or skip:"; cat "$asr_log"
  fi
else
  step "real ASR not installed (faster-whisper); its tests will print a skip line"
fi
# Two minutes of a live session compressed in time (`kotodama soak`): random inputs, barge-ins
# on every stop path, settings changes, clients joining and leaving, Redis restarted halfway.
# It exits non-zero on a fatal error, a chunk after STOP_ACK, an unacknowledged STOP or an
# undelivered event. KOTODAMA_SKIP_SOAK=1 skips it and the crash step below.
if [ "${KOTODAMA_SKIP_SOAK:-0}" = 1 ]; then
  step "soak skipped (KOTODAMA_SKIP_SOAK=1)"
else
  step "soak: 2 minutes at speed 10, Redis restarted halfway (kotodama soak)"
  "$BIN_DIR/kotodama" soak --minutes 2 --speed 10 --redis
  # Crash durability: the real `kotodama serve` SIGKILLed six times at random points (mid-LLM,
  # mid-speech, mid-outbox, idle) and restarted; exits non-zero on a lost turn or event, a row
  # left open or a failed integrity_check. The closing notes' figure is `--kills 200`.
  step "crash durability: 6 SIGKILLs of kotodama serve (kotodama crash)"
  "$BIN_DIR/kotodama" crash --kills 6 --redis
fi
# Rust tests last, so the run ends with the test runner's own summary line.
step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p koto-events --no-fail-fast --failure-output final   # without Redis
  cargo nextest run --workspace "${FEATURES[@]}" --no-fail-fast --failure-output final  # with Redis
else
  cargo test -p koto-events --no-fail-fast
  cargo test --workspace "${FEATURES[@]}" --no-fail-fast
fi
