//! `llm_chain` and `tts_chain`: the failover chains' entries as configured (a JSON array, or a
//! TOML array of tables, each entry with the single provider's keys) and the providers built
//! from them (`koto_providers::failover`). A missing key of an entry takes the single
//! provider's setting (`openai_base_url`, `llm_model`, …), except `max_retries`: 0, so a
//! failing provider hands the turn on at once.

use std::sync::Arc;
use std::time::Duration;

use koto_core::llm::LlmProvider;
use koto_core::tts::Voice;
use koto_providers::failover::{ChainLink, FailoverLlm, FailoverVoice};
use koto_providers::llm::mock::MockLlm;
use koto_providers::llm::openai::{OpenAiConfig, OpenAiLlm};
use koto_providers::tts::voice::{TtsProviderKind, TtsSettings, build_voice};
use serde::Deserialize;

use crate::config::Config;
use crate::providers::ProviderSetupError;

/// Longest one entry's list can be (a chain longer than this is a mistake, not a plan).
const MAX_ENTRIES: usize = 8;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmChainEntry {
    /// `openai` (any OpenAI-compatible server) or `mock`.
    pub provider: String,
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// Seconds.
    pub connect_timeout: Option<f64>,
    /// Seconds to the first token (and between tokens).
    pub request_timeout: Option<f64>,
    pub max_retries: Option<u32>,
    /// How `/health` names it (default: provider, model and host).
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtsChainEntry {
    /// `edge`, `openai`, `espeak`, `piper` or `mock`.
    pub provider: String,
    /// Edge's endpoint, or the OpenAI-compatible server's base URL.
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub voice: Option<String>,
    /// Seconds to a segment's first audio before the next voice takes it (default 3).
    pub first_audio_timeout: Option<f64>,
    pub label: Option<String>,
}

/// Parses a chain key's text ("" = no chain): a JSON array of entry objects.
pub fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<Vec<T>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<T> = serde_json::from_str(text).map_err(|error| {
        format!(
            "expected a JSON array of providers such as [{{\"provider\":\"openai\",\"base_url\":\"http://127.0.0.1:8080/v1\"}}] ({error})"
        )
    })?;
    if entries.len() > MAX_ENTRIES {
        return Err(format!(
            "{} providers is more than the {MAX_ENTRIES} a chain may have",
            entries.len()
        ));
    }
    Ok(entries)
}

/// Checks what parsing cannot: provider names and timeouts.
pub fn check_llm(entries: &[LlmChainEntry]) -> Result<(), String> {
    for (n, entry) in entries.iter().enumerate() {
        if !matches!(entry.provider.as_str(), "openai" | "mock") {
            return Err(format!(
                "entry {}: unknown provider {:?} (expected openai or mock)",
                n + 1,
                entry.provider
            ));
        }
        for seconds in [entry.connect_timeout, entry.request_timeout]
            .into_iter()
            .flatten()
        {
            if !(0.01..=3600.0).contains(&seconds) {
                return Err(format!(
                    "entry {}: a timeout of {seconds} s (0.01 to 3600)",
                    n + 1
                ));
            }
        }
    }
    Ok(())
}

pub fn check_tts(entries: &[TtsChainEntry]) -> Result<(), String> {
    for (n, entry) in entries.iter().enumerate() {
        match entry.provider.parse::<TtsProviderKind>() {
            Ok(TtsProviderKind::Auto) => {
                return Err(format!(
                    "entry {}: name the voice (edge, openai, espeak, piper, mock), not auto",
                    n + 1
                ));
            }
            Ok(_) => {}
            Err(reason) => return Err(format!("entry {}: {reason}", n + 1)),
        }
        if let Some(seconds) = entry.first_audio_timeout
            && !(0.05..=60.0).contains(&seconds)
        {
            return Err(format!(
                "entry {}: first_audio_timeout {seconds} s (0.05 to 60)",
                n + 1
            ));
        }
    }
    Ok(())
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// The configured LLM chain as one provider.
pub fn build_llm_chain(config: &Config) -> Result<Arc<dyn LlmProvider>, ProviderSetupError> {
    let mut links: Vec<ChainLink<dyn LlmProvider>> = Vec::new();
    for entry in &config.llm_chain {
        let (provider, label): (Arc<dyn LlmProvider>, String) = match entry.provider.as_str() {
            "mock" => (
                Arc::new(MockLlm::new(Duration::from_millis(
                    config.mock_llm_token_ms,
                ))),
                "mock".to_owned(),
            ),
            _ => {
                let seconds = |value: Option<f64>, default: Duration| {
                    value.map_or(default, Duration::from_secs_f64)
                };
                let request_timeout = seconds(entry.request_timeout, config.llm_request_timeout);
                let openai = OpenAiConfig {
                    base_url: entry
                        .base_url
                        .clone()
                        .unwrap_or_else(|| config.openai_base_url.clone()),
                    api_key: entry.api_key.clone().or_else(|| {
                        config
                            .openai_api_key
                            .as_ref()
                            .map(|key| key.expose().to_owned())
                    }),
                    model: entry
                        .model
                        .clone()
                        .unwrap_or_else(|| config.llm_model.clone()),
                    temperature: entry.temperature.or(config.llm_temperature),
                    max_tokens: entry.max_tokens.or(config.llm_max_tokens),
                    connect_timeout: seconds(entry.connect_timeout, config.llm_connect_timeout),
                    first_token_timeout: request_timeout,
                    idle_timeout: request_timeout,
                    reasoning_timeout: config.llm_reasoning_timeout,
                    max_retries: entry.max_retries.unwrap_or(0),
                };
                let label = format!("openai {} @ {}", openai.model, host_of(&openai.base_url));
                let llm = OpenAiLlm::new(openai).map_err(|error| ProviderSetupError::Llm {
                    provider: "openai",
                    message: format!("llm_chain {label}: {error}"),
                })?;
                (Arc::new(llm), label)
            }
        };
        links.push(ChainLink {
            label: entry.label.clone().unwrap_or(label),
            provider,
            first_output_timeout: None,
        });
    }
    let chain =
        FailoverLlm::new(links, config.breaker).map_err(|error| ProviderSetupError::Llm {
            provider: "chain",
            message: error.to_string(),
        })?;
    Ok(Arc::new(chain))
}

/// The configured TTS chain as one voice: every entry at the first one's sample rate.
pub async fn build_voice_chain(
    config: &Config,
) -> Result<Arc<dyn Voice>, koto_core::ProviderError> {
    let mut links: Vec<ChainLink<dyn Voice>> = Vec::new();
    let mut sample_rate = config.tts.sample_rate;
    for entry in &config.tts_chain {
        let settings = tts_settings(&config.tts, entry, sample_rate);
        let voice = build_voice(&settings).await.map_err(|error| {
            koto_core::ProviderError::Unavailable(format!(
                "tts_chain {}: {error}",
                entry.label.as_deref().unwrap_or(&entry.provider)
            ))
        })?;
        sample_rate = voice.sample_rate();
        let label = entry
            .label
            .clone()
            .unwrap_or_else(|| match &entry.base_url {
                Some(url) => format!("{} @ {}", voice.name(), host_of(url)),
                None => voice.name().to_owned(),
            });
        links.push(ChainLink {
            label,
            provider: voice,
            first_output_timeout: Some(Duration::from_secs_f64(
                entry.first_audio_timeout.unwrap_or(3.0),
            )),
        });
    }
    Ok(Arc::new(FailoverVoice::new(links, config.breaker)?))
}

fn tts_settings(base: &TtsSettings, entry: &TtsChainEntry, sample_rate: u32) -> TtsSettings {
    let mut settings = base.clone();
    // Checked by `check_tts` when the config was built.
    settings.provider = entry.provider.parse().unwrap_or(TtsProviderKind::Mock);
    settings.sample_rate = sample_rate;
    if let Some(voice) = &entry.voice {
        settings.voice = Some(voice.clone());
    }
    match settings.provider {
        TtsProviderKind::Edge => {
            if let Some(url) = &entry.base_url {
                settings.edge_endpoint = Some(url.clone());
            }
        }
        TtsProviderKind::OpenAi => {
            if let Some(url) = &entry.base_url {
                settings.openai.base_url = url.clone();
            }
            if let Some(model) = &entry.model {
                settings.openai.model = model.clone();
            }
            if entry.api_key.is_some() {
                settings.openai.api_key = entry.api_key.clone();
            }
        }
        _ => {}
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_from_json_and_refuse_what_is_wrong() {
        let entries: Vec<LlmChainEntry> = parse(
            r#"[{"provider":"openai","base_url":"http://127.0.0.1:1/v1","model":"a"},{"provider":"mock"}]"#,
        )
        .expect("valid");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].model.as_deref(), Some("a"));
        assert!(check_llm(&entries).is_ok());
        assert!(parse::<LlmChainEntry>("").expect("empty").is_empty());
        let unknown_key = parse::<LlmChainEntry>(r#"[{"provider":"openai","modle":"a"}]"#)
            .expect_err("a typo in a key");
        assert!(unknown_key.contains("modle"), "{unknown_key}");
        assert!(parse::<LlmChainEntry>("{}").is_err(), "not an array");
        let bad = parse::<LlmChainEntry>(r#"[{"provider":"claude"}]"#).expect("parses");
        assert!(check_llm(&bad).expect_err("unknown").contains("claude"));
        let tts: Vec<TtsChainEntry> =
            parse(r#"[{"provider":"edge"},{"provider":"espeak"}]"#).expect("valid");
        assert!(check_tts(&tts).is_ok());
        let auto: Vec<TtsChainEntry> = parse(r#"[{"provider":"auto"}]"#).expect("parses");
        assert!(check_tts(&auto).is_err());
    }

    #[test]
    fn a_label_names_the_host_not_the_path() {
        assert_eq!(host_of("http://127.0.0.1:8080/v1"), "127.0.0.1:8080");
        assert_eq!(host_of("api.example.com/v1"), "api.example.com");
    }
}
