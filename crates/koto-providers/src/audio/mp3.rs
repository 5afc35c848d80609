//! Streaming MP3 → PCM decoding (symphonia) for providers that only speak MP3.
