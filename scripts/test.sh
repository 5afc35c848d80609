#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine: installs what it needs, then
# format check, clippy (with and without optional features) and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

ensure_rust
# Test-time parts: real Redis, real espeak-ng, headless Chromium, Xvfb, sox for audio checks.
ensure_apt pkg-config redis-server espeak-ng chromium xvfb sox python3 python3-pip libasound2-dev
ensure_piper

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The workspace build enables koto-events' `redis` feature (koto-server's default); check the
# crate without it too, so the embedded-only build stays clean and tested.
cargo clippy -p koto-events --all-targets --quiet -- -D warnings
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p koto-events --no-fail-fast --failure-output final   # without Redis
  cargo nextest run --workspace --no-fail-fast --failure-output final      # with Redis
else
  cargo test -p koto-events --no-fail-fast
  cargo test --workspace --no-fail-fast
fi
