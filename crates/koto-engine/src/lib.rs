//! Dialog engine: sessions, turns, chat service, TTS streamer, cancellation tree.
