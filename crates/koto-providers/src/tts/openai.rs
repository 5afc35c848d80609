//! OpenAI-compatible `/v1/audio/speech`, streamed.
