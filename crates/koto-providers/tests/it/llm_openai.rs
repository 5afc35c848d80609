//! The OpenAI-compatible streaming client against `koto_testkit::fake_openai`.
