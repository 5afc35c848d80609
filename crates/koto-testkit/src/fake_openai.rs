//! A fake OpenAI-compatible `/v1/chat/completions` server speaking real SSE, scriptable per test.
