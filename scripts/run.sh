#!/usr/bin/env bash
# Runs Kotodama with embedded defaults (mock LLM, no keys, no Redis), installing what it needs.
# With a display it runs the desktop app, else headless `kotodama serve`; extra arguments go to
# either (e.g. --bind 127.0.0.1:8001).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

ensure_rust
ensure_apt pkg-config espeak-ng
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "${KOTODAMA_HEADLESS:-0}" != 1 ]; then
  ensure_apt libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libayatana-appindicator3-dev \
    librsvg2-dev libasound2-dev
  echo "==> display found: building the desktop app (release; the first build takes several minutes)"
  cargo build --release --quiet -p kotodama-desktop --features custom-protocol
  echo "==> starting the desktop app: window, tray, stop hotkey (KOTODAMA_HEADLESS=1 for serve)"
  exec "${CARGO_TARGET_DIR:-target}/release/kotodama-desktop" "$@"
fi
echo "==> no display (\$DISPLAY and \$WAYLAND_DISPLAY unset): running headless"
echo "==> building kotodama (release; the first build takes a few minutes)"
cargo build --release --quiet -p koto-server --bin kotodama
echo "==> starting headless: kotodama serve"
exec "${CARGO_TARGET_DIR:-target}/release/kotodama" serve "$@"
