#!/usr/bin/env bash
# Browser tests of the control panel and the OBS overlay in headless Chromium.
#
# Installs the node dependency (playwright-core, `npm ci` from the committed lock file) when
# missing, builds `kotodama`, starts `kotodama serve` on a free loopback port with a temp data
# dir and the mock TTS, runs every tests/ui/*.test.js with node's test runner (one file at a
# time: 2-core machines), then stops the server. Screenshots go to artifacts/ui/.
# Env: CHROMIUM (default /usr/bin/chromium), KOTODAMA_BIN (a built binary; skips the build).
# Exit 2: a prerequisite is missing (the message says which).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/tests/lib/cleanup.sh"
# A relative KOTODAMA_BIN means relative to where the script was started.
if [ -n "${KOTODAMA_BIN:-}" ]; then KOTODAMA_BIN="$(realpath "$KOTODAMA_BIN")"; fi

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "tests/ui: no Chromium at $CHROMIUM (apt-get install chromium, or set CHROMIUM=/path)" >&2
  exit 2
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tests/ui: needs Node.js >= 18 with npm (apt-get install nodejs npm)" >&2
  exit 2
fi
if [ "$(node -p 'Number(process.versions.node.split(".")[0])')" -lt 18 ]; then
  echo "tests/ui: needs Node.js >= 18, found $(node --version)" >&2
  exit 2
fi

cd "$here"
if [ ! -f node_modules/playwright-core/package.json ]; then
  echo "==> npm ci (tests/ui: playwright-core; uses the npm cache when it can)"
  npm ci --prefer-offline --no-audit --no-fund --loglevel=error
fi

if [ -z "${KOTODAMA_BIN:-}" ]; then
  echo "==> cargo build -p koto-server --bin kotodama"
  (cd "$root" && cargo build --quiet -p koto-server --bin kotodama)
  KOTODAMA_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/kotodama"
fi
export KOTODAMA_BIN CHROMIUM

data_dir="$(mktemp -d -t kotodama-ui-XXXXXX)"
TTS_PROVIDER=mock KOTODAMA_TOKEN='' RUST_LOG="${RUST_LOG:-warn}" \
  "$KOTODAMA_BIN" serve --bind 127.0.0.1:0 --data-dir "$data_dir" >"$data_dir/ready.txt" 2>"$data_dir/serve.log" &
server_pid=$!
stop_server() {
  local status=$?
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" || echo "tests/ui: kotodama exited with $? on SIGTERM" >&2
  fi
  remove_tree "$data_dir"
  exit "$status"
}
trap stop_server EXIT

# The ready line says where it listens (port 0 = a free one) and the token.
for _ in $(seq 1 600); do
  grep -q 'kotodama ready:' "$data_dir/ready.txt" && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "tests/ui: kotodama serve failed to start:" >&2
    cat "$data_dir/serve.log" >&2
    exit 1
  fi
  sleep 0.1
done
ready="$(grep 'kotodama ready:' "$data_dir/ready.txt")" || { echo "tests/ui: no ready line in 60 s" >&2; exit 1; }
KOTODAMA_URL="$(sed -E 's|.*ready: (http://[^/ ]+).*|\1|' <<<"$ready")"
KOTODAMA_TEST_TOKEN="$(sed -E 's/.*[?]token=([^ ]+).*/\1/' <<<"$ready")"
KOTODAMA_DATA_DIR="$data_dir"
export KOTODAMA_URL KOTODAMA_TEST_TOKEN KOTODAMA_DATA_DIR
echo "==> browser tests against $KOTODAMA_URL (Chromium: $("$CHROMIUM" --version 2>/dev/null | head -n1))"

failed=0
# A file gets 5 minutes: every wait in them is bounded (20 s), so longer is a hang (a test
# that failed may leave the runner waiting on something it opened), never a slow machine.
for file in "$here"/${KOTODAMA_UI_TESTS:-*}.test.js; do
  status=0
  timeout --kill-after=10 300 node --test "$file" || status=$?
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "tests/ui: $(basename "$file") did not finish within 300 s: stopped" >&2
  fi
  [ "$status" -eq 0 ] || failed=1
done
if [ "$failed" -ne 0 ]; then
  echo "tests/ui: FAILED (server log below; screenshots in artifacts/ui/)" >&2
  tail -n 50 "$data_dir/serve.log" >&2
fi
exit "$failed"
