#!/usr/bin/env bash
# Runs Kotodama with embedded defaults (mock LLM, no keys, no Redis), installing what it needs.
# With a display it runs the desktop app, else headless `kotodama serve`; extra arguments go to
# either (e.g. --bind 127.0.0.1:8001). KOTODAMA_HEADLESS=1 runs headless even with a display.
#
# Both binaries come from one cargo invocation when a display is there, so they share every
# compiled dependency (same features), and a second run with nothing changed builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

ensure_rust
ensure_apt pkg-config espeak-ng
target="${CARGO_TARGET_DIR:-target}/release"

# Says how long the build will take: a first build compiles everything, a later one only what
# changed (nothing: a few seconds).
build() { # what, first-build estimate, cargo args…
  local what=$1 estimate=$2
  shift 2
  if [ -x "$target/$what" ]; then
    echo "==> checking the $what build (seconds if nothing changed)"
  else
    echo "==> first build of $what (release): about $estimate on 2 cores, cargo shows its progress below"
  fi
  local started=$SECONDS
  cargo build --release "$@"
  echo "==> built in $((SECONDS - started)) s"
}

desktop_build=(-p kotodama-desktop --features kotodama-desktop/custom-protocol -p koto-server
  --bin kotodama-desktop --bin kotodama)
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "${KOTODAMA_HEADLESS:-0}" != 1 ]; then
  ensure_apt libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libayatana-appindicator3-dev \
    librsvg2-dev libasound2-dev
  build kotodama-desktop "20 minutes" "${desktop_build[@]}"
  echo "==> starting the desktop app: window, tray, stop hotkey (KOTODAMA_HEADLESS=1 for kotodama serve)"
  exec "$target/kotodama-desktop" "$@"
fi
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "==> KOTODAMA_HEADLESS=1: running headless although a display is there"
else
  echo "==> no display (\$DISPLAY and \$WAYLAND_DISPLAY are unset): running headless, without a window"
fi
if [ -x "$target/kotodama-desktop" ]; then
  # The desktop app was built here: the same invocation builds nothing new.
  build kotodama "20 minutes" "${desktop_build[@]}"
else
  build kotodama "10 minutes" -p koto-server --bin kotodama
fi
echo "==> starting headless: kotodama serve"
exec "$target/kotodama" serve "$@"
