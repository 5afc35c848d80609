//! TTS providers against real espeak-ng / Piper and loopback fakes of Edge and OpenAI speech.
