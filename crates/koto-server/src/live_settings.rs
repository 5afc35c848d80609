//! Saved settings that take effect in the running app: which keys apply at once, the engine
//! profile rebuilt from them, and [`DesktopSettings`], the hook through which the desktop shell
//! applies its own keys (output device, volume, stop hotkey). The recognizer, the upload limits
//! and the microphone's keys reach their owners through [`LiveTargets`].
//!
//! It decides nothing about whether a value is valid (`config` does) and writes no file
//! (`routes::settings` does). Everything else — the listener, the other limits, the relay,
//! event delivery — is built once at start and needs a restart.

use std::fmt;
use std::sync::Arc;

use koto_engine::{Engine, Profile};
use serde::Serialize;

use crate::config::{Config, DesktopConfig, KEYS, RawConfig};
use crate::providers::build_llm;
use crate::server::engine_config;

/// When a saved key takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Part of the engine's profile: turns submitted after the save use it.
    Engine,
    /// Rebuilds the LLM client, then as `Engine`.
    Llm,
    /// Rebuilds the voice (a TTS process may restart), then as `Engine`.
    Voice,
    /// Applied by the desktop shell at once; `kotodama serve` has no use for it.
    Desktop,
    /// Rebuilds the speech recognizer and swaps it in (`crate::live_asr`): the next upload
    /// and the microphone's next utterance hear with it.
    Asr,
    /// The upload bounds (`crate::live_asr::LiveAsr::set_limits`), read by each new upload.
    Uploads,
    /// The microphone's pipeline, mode and device (`crate::voice::VoiceIn::reconfigure`),
    /// applied between two mic blocks.
    Mic,
    /// Built once at start.
    Restart,
}

const ENGINE_KEYS: &[&str] = &[
    "stm_context_turns",
    "system_prompt",
    "persona_file",
    "first_clause_ms",
    "first_clause_min_chars",
    "max_reply_seconds",
    "quick_ack_ms",
    "output_filter_words",
    "output_filter_action",
    "veto_window_ms",
    "show_reasoning",
    "max_content_chars",
    "ltm_top_k",
    "ltm_inline_budget_ms",
    "enable_sync_core",
    "sync_tts_streaming",
    "enable_ltm_inline",
    "default_lang",
];
const LLM_KEYS: &[&str] = &[
    "llm_provider",
    "llm_chain",
    "openai_base_url",
    "openai_api_key",
    "llm_model",
    "llm_temperature",
    "llm_max_tokens",
    "llm_request_timeout",
    "llm_reasoning_timeout",
    "llm_connect_timeout",
    "llm_max_retries",
    "mock_llm_token_ms",
];
const VOICE_KEYS: &[&str] = &[
    "tts_provider",
    "tts_chain",
    "tts_voice",
    "tts_voices",
    "tts_rate",
    "tts_chunk_ms",
    "edge_tts_endpoint",
    "openai_tts_base_url",
    "openai_tts_api_key",
    "openai_tts_model",
    "openai_tts_format",
    "piper_python",
    "piper_model",
    "piper_threads",
    "piper_runtime",
    "piper_onnxruntime",
    "piper_quantize",
    "piper_stream",
    "espeak_binary",
];
const ASR_KEYS: &[&str] = &[
    "asr_provider",
    "asr_base_url",
    "asr_api_key",
    "asr_model",
    "asr_language",
    "asr_timeout",
    "asr_max_retries",
    "asr_mock_text",
];
const UPLOAD_KEYS: &[&str] = &["asr_max_upload_bytes", "asr_max_seconds"];
const MIC_KEYS: &[&str] = &[
    "mic_mode",
    "mic_device",
    "echo_cancel",
    "voice_barge_in",
    "vad_threshold",
    "vad_min_speech_ms",
    "vad_hangover_ms",
    "mic_max_utterance_ms",
    "barge_in_confirm_words",
    "barge_in_confirm_ms",
    "barge_in_window_ms",
    "onset_echo_margin_db",
    "onset_min_dbfs",
];
const DESKTOP_KEYS: &[&str] = &[
    "output_device",
    "output_volume",
    "stop_hotkey",
    "ptt_hotkey",
];

impl Effect {
    pub fn of(key: &str) -> Effect {
        let effects = [
            (ENGINE_KEYS, Effect::Engine),
            (LLM_KEYS, Effect::Llm),
            (VOICE_KEYS, Effect::Voice),
            (DESKTOP_KEYS, Effect::Desktop),
            (ASR_KEYS, Effect::Asr),
            (UPLOAD_KEYS, Effect::Uploads),
            (MIC_KEYS, Effect::Mic),
        ];
        effects
            .into_iter()
            .find(|(keys, _)| keys.contains(&key))
            .map_or(Effect::Restart, |(_, effect)| effect)
    }

    /// Part of the engine's `Profile` (rebuilt and swapped for the next turns).
    pub fn is_profile(self) -> bool {
        matches!(self, Effect::Engine | Effect::Llm | Effect::Voice)
    }

    /// Whether saving the key changes the running app without a restart (given a desktop shell
    /// for the desktop keys).
    pub fn is_live(self, desktop: bool) -> bool {
        match self {
            Effect::Desktop => desktop,
            Effect::Asr | Effect::Uploads | Effect::Mic => true,
            other => other.is_profile(),
        }
    }
}

/// One entry of a list the settings form offers for a key (output devices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// What is saved.
    pub value: String,
    /// What a person reads.
    pub label: String,
}

/// The desktop shell's side of the settings: it knows the sound devices and owns the hotkey.
/// Methods are short and synchronous (called from `spawn_blocking` or between awaits).
pub trait DesktopSettings: Send + Sync + fmt::Debug {
    /// Why `config`'s value for `key` cannot be used here (no such device, not a shortcut),
    /// checked before anything is saved.
    fn check(&self, key: &str, config: &DesktopConfig) -> Result<(), String>;
    /// Makes the saved value for `key` take effect now. `Ok(Some(note))`: it took effect
    /// differently than asked (a fallback device); `Err`: it did not take effect.
    fn apply(&self, key: &str, config: &DesktopConfig) -> Result<Option<String>, String>;
    /// The values the settings form lists for `key`, if it is a list.
    fn choices(&self, key: &str) -> Option<Vec<Choice>>;
    /// What the panel's status bar shows: where the voice plays (device, null sink and why,
    /// volume) and whether the stop hotkey works. `GET /desktop`.
    fn status(&self) -> serde_json::Value;
}

/// The parts of the running app that saved settings reach.
#[derive(Debug, Clone)]
pub struct LiveTargets {
    pub engine: Engine,
    pub desktop: Option<Arc<dyn DesktopSettings>>,
    /// What uploads and the microphone hear with, and the uploads' bounds.
    pub asr: Arc<crate::live_asr::LiveAsr>,
    /// The microphone.
    pub voice: Arc<crate::voice::VoiceIn>,
}

/// The raw configuration the running app takes on when `next` (what the next start would build)
/// is saved: `running` with only the keys that apply live taken from `next`. Restart-only keys
/// keep the values the process runs with, so a profile rebuilt from it never takes one early
/// (a saved `sync_tts_barge_in=false` must not start refusing STOP at the next persona change).
pub fn running_after(running: &RawConfig, next: &RawConfig) -> RawConfig {
    let mut after = running.clone();
    for spec in KEYS {
        if Effect::of(spec.key) != Effect::Restart {
            let value = next.value(spec.key).unwrap_or_default().to_owned();
            after.set_from(spec.key, value, next.source(spec.key));
        }
    }
    after
}

/// A profile rebuilt for `changed` keys, or why it cannot be (per key). `config` is what the
/// running app runs with after the change ([`running_after`]), never the next start's.
pub async fn rebuild_profile(
    engine: &Engine,
    config: &Config,
    changed: &[&'static str],
) -> Result<Profile, Vec<(&'static str, String)>> {
    let current = engine.profile();
    let touched = |effect: Effect| {
        changed
            .iter()
            .filter(move |key| Effect::of(key) == effect)
            .copied()
    };
    let blame = |effect: Effect, message: &str| -> Vec<(&'static str, String)> {
        touched(effect)
            .map(|key| (key, message.to_owned()))
            .collect()
    };
    let llm = if touched(Effect::Llm).next().is_some() {
        build_llm(config).map_err(|error| blame(Effect::Llm, &error.to_string()))?
    } else {
        current.llm.clone()
    };
    // The speech client falls back to the LLM's base URL and key.
    let speech_defaults = changed
        .iter()
        .any(|key| matches!(*key, "openai_base_url" | "openai_api_key"));
    let needs_voice = config.sync_tts_streaming
        && (touched(Effect::Voice).next().is_some() || speech_defaults || current.voice.is_none());
    let voice = if needs_voice {
        match crate::providers::build_speech(config).await {
            Ok(voice) => Some(voice),
            Err(error) => {
                let message = format!("the voice cannot start: {error}");
                let mut blamed = blame(Effect::Voice, &message);
                if blamed.is_empty() {
                    blamed.push(("sync_tts_streaming", message));
                }
                return Err(blamed);
            }
        }
    } else {
        current.voice.clone()
    };
    Ok(Profile {
        config: engine_config(config),
        llm,
        voice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KEYS;

    #[test]
    fn every_key_has_a_deliberate_effect() {
        for keys in [
            ENGINE_KEYS,
            LLM_KEYS,
            VOICE_KEYS,
            DESKTOP_KEYS,
            ASR_KEYS,
            UPLOAD_KEYS,
            MIC_KEYS,
        ] {
            for key in keys {
                assert!(
                    KEYS.iter().any(|spec| spec.key == *key),
                    "{key} is not a configuration key: a typo would make it restart-only"
                );
            }
        }
        for key in [
            "bind",
            "redis_url",
            "tts_sample_rate",
            "audio_lead_ms",
            "token",
            "legacy_max_upload_bytes",
        ] {
            assert_eq!(
                Effect::of(key),
                Effect::Restart,
                "{key} is built into the listener, relay or events at start"
            );
        }
        assert_eq!(
            Effect::of("mic_session"),
            Effect::Restart,
            "the mic's session: the panel names its own; a saved one waits for the next start"
        );
        for key in ["asr_max_upload_bytes", "asr_max_seconds"] {
            assert_eq!(Effect::of(key), Effect::Uploads, "{key}: read per upload");
        }
        // Every microphone key (a new one too) is applied to the running pipeline.
        let mic_keys = KEYS.iter().filter(|spec| {
            [
                "mic_",
                "vad_",
                "barge_in_",
                "onset_",
                "echo_cancel",
                "voice_barge_in",
            ]
            .iter()
            .any(|prefix| spec.key.starts_with(prefix))
        });
        for spec in mic_keys.filter(|spec| spec.key != "mic_session") {
            assert_eq!(
                Effect::of(spec.key),
                Effect::Mic,
                "{} is a microphone key: list it in MIC_KEYS (or say here why it waits)",
                spec.key
            );
        }
        for effect in [Effect::Mic, Effect::Uploads, Effect::Asr] {
            assert!(
                effect.is_live(false) && !effect.is_profile(),
                "{effect:?} applies in serve too, beside the engine's profile"
            );
        }
        assert!(
            Effect::of("system_prompt").is_live(false)
                && !Effect::of("output_device").is_live(false)
                && Effect::of("output_device").is_live(true),
            "serve applies the persona at once; device keys only mean something in the desktop app"
        );
    }
}
