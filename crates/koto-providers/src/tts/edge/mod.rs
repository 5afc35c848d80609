//! Microsoft Edge read-aloud TTS over its WebSocket protocol (needs the internet in real use).
