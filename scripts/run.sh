#!/usr/bin/env bash
# Runs Kotodama with embedded defaults (mock LLM, no keys, no Redis), installing what it needs.
# Extra arguments go to `kotodama serve` (e.g. --bind 127.0.0.1:8001).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

ensure_rust
ensure_apt pkg-config espeak-ng
echo "==> building kotodama (release; the first build takes a few minutes)"
cargo build --release --quiet -p koto-server --bin kotodama
echo "==> starting headless: kotodama serve"
exec target/release/kotodama serve "$@"
