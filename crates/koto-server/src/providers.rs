//! Builds the configured providers. A provider that is configured but cannot work here fails
//! start-up with a clear message instead of silently falling back.

use std::sync::Arc;
use std::time::Duration;

use koto_core::asr::AsrProvider;
use koto_core::llm::LlmProvider;
use koto_providers::asr::{MockAsr, OpenAiAsr};
use koto_providers::llm::mock::MockLlm;
use koto_providers::llm::openai::{OpenAiConfig, OpenAiLlm};

use crate::config::{AsrProviderKind, AsrSettings, Config, LlmProviderKind};

#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    #[error("cannot set up the LLM provider {provider}: {message}")]
    Llm {
        provider: &'static str,
        message: String,
    },
    #[error("cannot set up speech (TTS_PROVIDER): {message}")]
    Tts { message: String },
    #[error("cannot set up speech recognition (ASR_PROVIDER): {message}")]
    Asr { message: String },
    #[error("cannot set up VTube Studio (VTS_URL): {message}")]
    Vts { message: String },
}

pub fn build_llm(config: &Config) -> Result<Arc<dyn LlmProvider>, ProviderSetupError> {
    if !config.llm_chain.is_empty() {
        return crate::chains::build_llm_chain(config);
    }
    match config.llm_provider {
        LlmProviderKind::Mock => Ok(Arc::new(MockLlm::new(Duration::from_millis(
            config.mock_llm_token_ms,
        )))),
        LlmProviderKind::OpenAi => {
            let openai = OpenAiConfig {
                base_url: config.openai_base_url.clone(),
                api_key: config
                    .openai_api_key
                    .as_ref()
                    .map(|key| key.expose().to_owned()),
                model: config.llm_model.clone(),
                temperature: config.llm_temperature,
                max_tokens: config.llm_max_tokens,
                connect_timeout: config.llm_connect_timeout,
                first_token_timeout: config.llm_request_timeout,
                idle_timeout: config.llm_request_timeout,
                reasoning_timeout: config.llm_reasoning_timeout,
                max_retries: config.llm_max_retries,
            };
            let llm = OpenAiLlm::new(openai).map_err(|error| ProviderSetupError::Llm {
                provider: "openai",
                message: error.to_string(),
            })?;
            Ok(Arc::new(llm))
        }
    }
}

/// The configured voice: `tts_chain` when set, else the single `tts_provider`.
pub async fn build_speech(
    config: &Config,
) -> Result<Arc<dyn koto_core::tts::Voice>, koto_core::ProviderError> {
    if config.tts_chain.is_empty() {
        koto_providers::tts::voice::build_voice(&config.tts).await
    } else {
        crate::chains::build_voice_chain(config).await
    }
}

/// The configured ASR; `None` when `ASR_PROVIDER=off`.
pub fn build_asr(
    settings: &AsrSettings,
) -> Result<Option<Arc<dyn AsrProvider>>, ProviderSetupError> {
    Ok(match settings.provider {
        AsrProviderKind::Off => None,
        AsrProviderKind::Mock => Some(Arc::new(MockAsr::new(settings.mock_text.clone()))),
        AsrProviderKind::OpenAi => {
            let asr = OpenAiAsr::new(settings.openai.clone()).map_err(|error| {
                ProviderSetupError::Asr {
                    message: error.to_string(),
                }
            })?;
            Some(Arc::new(asr))
        }
    })
}
