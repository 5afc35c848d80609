//! The settings in a streamer's words: each configuration key's group on the settings page
//! (Voice, Brain, Character, Stream, Advanced) and a plain label. The env name stays the
//! secondary hint. A key not listed here (a key added later) is shown under Advanced with a
//! label made from its name, so a new key is never hidden.

use serde::Serialize;

/// Where a key is shown on the settings page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// How the co-host sounds and where it is heard.
    Voice,
    /// The LLM and what it remembers.
    Brain,
    /// Who the co-host is.
    Character,
    /// Live controls during a stream.
    Stream,
    /// Internals: limits, event delivery, the original front end, network.
    Advanced,
}

/// `(key, group, label)`; keys absent here are [`Group::Advanced`].
#[rustfmt::skip]
const WORDS: &[(&str, Group, &str)] = &[
    ("tts_provider", Group::Voice, "Voice engine"),
    ("tts_voice", Group::Voice, "Voice"),
    ("default_lang", Group::Voice, "Language the co-host speaks"),
    ("tts_voices", Group::Voice, "A voice per language"),
    ("tts_rate", Group::Voice, "Speaking speed"),
    ("sync_tts_streaming", Group::Voice, "Speak replies aloud"),
    ("playback", Group::Voice, "Play the voice on this computer"),
    ("output_device", Group::Voice, "Sound output"),
    ("output_volume", Group::Voice, "Volume"),
    ("llm_provider", Group::Brain, "AI service"),
    ("openai_base_url", Group::Brain, "Server address"),
    ("llm_model", Group::Brain, "Model"),
    ("openai_api_key", Group::Brain, "API key"),
    ("llm_temperature", Group::Brain, "Creativity (temperature)"),
    ("llm_max_tokens", Group::Brain, "Longest reply (tokens)"),
    ("stm_context_turns", Group::Brain, "Earlier messages it remembers"),
    ("enable_ltm_inline", Group::Brain, "Recall long-term memories in replies"),
    ("system_prompt", Group::Character, "Character description"),
    ("persona_file", Group::Character, "Character file"),
    ("stop_hotkey", Group::Stream, "Stop hotkey"),
    ("mic_mode", Group::Stream, "Microphone"),
    ("ptt_hotkey", Group::Stream, "Push-to-talk hotkey"),
    ("voice_barge_in", Group::Stream, "Talking over the co-host pauses it"),
    ("sync_tts_barge_in", Group::Stream, "Allow STOP to interrupt"),
    ("onset_echo_margin_db", Group::Advanced, "Barge-in: louder than the co-host's echo by (dB)"),
    ("onset_min_dbfs", Group::Advanced, "Barge-in: quietest sound that pauses (dBFS)"),
    ("enable_sync_core", Group::Advanced, "Answer messages (the dialog path)"),
    ("enable_async_ext", Group::Advanced, "Record events for memory and analytics"),
    ("event_workers_in_process", Group::Advanced, "Run the memory and analytics workers inside the app"),
    ("bind", Group::Advanced, "Listen address (host:port)"),
    ("allowed_origins", Group::Advanced, "Extra browser origins allowed"),
    ("legacy_origins", Group::Advanced, "Origins of the original front end"),
    ("body_read_timeout", Group::Advanced, "Request body timeout (s)"),
    ("log_dir", Group::Advanced, "Log folder"),
    ("log_format", Group::Advanced, "Log format"),
    ("llm_request_timeout", Group::Advanced, "LLM answer timeout (s)"),
    ("llm_connect_timeout", Group::Advanced, "LLM connect timeout (s)"),
    ("llm_max_retries", Group::Advanced, "LLM retries before the first word"),
    ("mock_llm_token_ms", Group::Advanced, "Demo LLM pace (ms per word)"),
    ("max_content_chars", Group::Advanced, "Longest message (characters)"),
    ("max_body_bytes", Group::Advanced, "Largest request (bytes)"),
    ("input_rate_per_sec", Group::Advanced, "Messages per second per session"),
    ("input_burst", Group::Advanced, "Messages at once per session"),
    ("input_global_rate_per_sec", Group::Advanced, "Messages per second, all sessions"),
    ("input_global_burst", Group::Advanced, "Messages at once, all sessions"),
    ("max_sessions", Group::Advanced, "Sessions answering at once"),
    ("max_live_clients", Group::Advanced, "Overlays and windows connected at once"),
    ("max_sockets", Group::Advanced, "Other sockets open at once"),
    ("tts_sample_rate", Group::Advanced, "Audio sample rate (Hz)"),
    ("tts_chunk_ms", Group::Advanced, "Audio chunk length (ms)"),
    ("audio_lead_ms", Group::Advanced, "Audio sent ahead (ms)"),
    ("first_clause_ms", Group::Advanced, "First words to the voice after (ms)"),
    ("first_clause_min_chars", Group::Advanced, "Shortest first phrase (CJK characters)"),
    ("max_reply_seconds", Group::Brain, "Longest spoken reply (s)"),
    ("vts_url", Group::Advanced, "VTube Studio API address"),
    ("output_filter_words", Group::Brain, "Words never to say (comma-separated, /regex/)"),
    ("output_filter_action", Group::Brain, "On a listed word (mask, skip, stop)"),
    ("veto_window_ms", Group::Brain, "Veto window before the first line (ms, 0 = off)"),
    ("quick_ack_ms", Group::Voice, "Quick \"hmm…\" after (ms, 0 = off)"),
    ("llm_reasoning_timeout", Group::Advanced, "LLM thinking time before the reply (s)"),
    ("show_reasoning", Group::Brain, "Show the LLM's thinking in the panel (dimmed)"),
    ("edge_tts_endpoint", Group::Advanced, "Edge voice endpoint"),
    ("openai_tts_base_url", Group::Advanced, "OpenAI voice server address"),
    ("openai_tts_api_key", Group::Advanced, "OpenAI voice API key"),
    ("openai_tts_model", Group::Advanced, "OpenAI voice model"),
    ("openai_tts_format", Group::Advanced, "OpenAI voice audio format"),
    ("espeak_binary", Group::Advanced, "espeak-ng program"),
    ("llm_chain", Group::Advanced, "Failover LLMs, in order (JSON)"),
    ("tts_chain", Group::Advanced, "Failover voices, in order (JSON)"),
    ("breaker_failures", Group::Advanced, "Failures before a provider is skipped"),
    ("breaker_cooldown_s", Group::Advanced, "Seconds before a skipped provider is retried"),
    ("piper_python", Group::Advanced, "Python with Piper installed"),
    ("piper_model", Group::Advanced, "Piper voice model file"),
    ("piper_runtime", Group::Advanced, "Where Piper runs (onnx, python)"),
    ("piper_onnxruntime", Group::Advanced, "ONNX Runtime library for Piper"),
    ("piper_quantize", Group::Advanced, "Piper in 8 bits (int8, off)"),
    ("piper_stream", Group::Advanced, "Piper streams each sentence as it is decoded"),
    ("redis_url", Group::Advanced, "Redis address (event streams)"),
    ("outbox_batch", Group::Advanced, "Outbox batch size"),
    ("outbox_retention_hours", Group::Advanced, "Outbox retention (hours)"),
    ("stream_maxlen", Group::Advanced, "Event stream length cap"),
    ("ltm_group", Group::Advanced, "Memory worker group"),
    ("analytics_group", Group::Advanced, "Analytics worker group"),
    ("dlq_after_attempts", Group::Advanced, "Failed deliveries before the dead-letter queue"),
    ("reclaim_idle_ms", Group::Advanced, "Reclaim stuck events after (ms)"),
    ("ltm_top_k", Group::Advanced, "Memories recalled per reply"),
    ("ltm_inline_budget_ms", Group::Advanced, "Memory recall time budget (ms)"),
];

/// The group and plain label of `key`.
pub fn words(key: &str) -> (Group, String) {
    match WORDS.iter().find(|(name, _, _)| *name == key) {
        Some((_, group, label)) => (*group, (*label).to_owned()),
        None => (Group::Advanced, label_from_name(key)),
    }
}

/// `legacy_max_tasks` → "Legacy max tasks": readable enough for a key nobody labelled yet.
fn label_from_name(key: &str) -> String {
    let spaced = key.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KEYS;

    #[test]
    fn every_labelled_key_exists() {
        for (key, _, _) in WORDS {
            assert!(
                KEYS.iter().any(|spec| spec.key == *key),
                "{key} is labelled but is not a configuration key"
            );
        }
    }

    #[test]
    fn internals_are_advanced_and_basics_are_not() {
        for key in [
            "redis_url",
            "outbox_batch",
            "dlq_after_attempts",
            "legacy_max_tasks",
        ] {
            assert_eq!(words(key).0, Group::Advanced, "{key}");
        }
        assert_eq!(words("tts_voice").0, Group::Voice);
        assert_eq!(words("llm_model").0, Group::Brain);
        assert_eq!(words("system_prompt").0, Group::Character);
        assert_eq!(words("stop_hotkey").0, Group::Stream);
    }

    #[test]
    fn an_unlabelled_key_is_advanced_with_a_readable_label() {
        assert_eq!(
            words("some_new_key"),
            (Group::Advanced, "Some new key".to_owned())
        );
    }

    #[test]
    fn labels_are_not_env_names() {
        for spec in KEYS {
            let (_, label) = words(spec.key);
            assert_ne!(label, spec.env, "{}", spec.key);
            assert!(!label.contains('`'), "{}: no markup in a label", spec.key);
        }
    }
}
