#!/usr/bin/env bash
# Builds the desktop app's Debian package (target/debian/kotodama_*.deb) and says how to install
# it: for people who only want to use the app. Installs what the build needs when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

ensure_rust
ensure_apt pkg-config libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev \
  libayatana-appindicator3-dev librsvg2-dev libasound2-dev
ensure_cargo_deb
echo "==> building the package (release): about 20 minutes the first time on 2 cores; cargo shows its progress"
started=$SECONDS
cargo deb -p kotodama-desktop
deb=$(ls -t target/debian/kotodama_*.deb | head -n1)
echo "==> built $deb in $((SECONDS - started)) s. Install it (then start Kotodama from the app menu):"
echo "    sudo apt install ./$deb"
