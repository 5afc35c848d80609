//! LLM providers: `mock` (deterministic, the embedded default) and `openai` (OpenAI-compatible streaming).
