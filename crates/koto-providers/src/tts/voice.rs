//! [`NormalizedVoice`]: any [`TtsProvider`] behind the PCM normaliser, as the engine's
//! [`Voice`]; and [`TtsSettings`] + [`build_voice`], which turn configuration into one.
//!
//! A provider that is configured but cannot run here is an error at start-up, never a silent
//! fallback; only `auto` chooses (espeak-ng when installed, else the mock, and says so).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use koto_core::ProviderError;
use koto_core::tts::{AudioChunk, ChunkStream, PcmStream, TtsProvider, TtsRequest, Voice};

use crate::audio::PcmNormalizer;
use crate::tts::edge::{EdgeTts, EdgeTtsConfig};
use crate::tts::espeak::{EspeakConfig, EspeakTts};
use crate::tts::mock::MockTts;
use crate::tts::openai::{OpenAiSpeechFormat, OpenAiTts, OpenAiTtsConfig};
use crate::tts::piper::{PiperConfig, PiperRuntime, PiperVoices};
use crate::tts::voice_map::VoiceMap;

pub struct NormalizedVoice {
    name: &'static str,
    provider: Arc<dyn TtsProvider>,
    sample_rate: u32,
    chunk_ms: u32,
}

impl NormalizedVoice {
    pub fn new(provider: Arc<dyn TtsProvider>, sample_rate: u32, chunk_ms: u32) -> Self {
        let normalizer = PcmNormalizer::new(sample_rate, chunk_ms);
        NormalizedVoice {
            name: provider.name(),
            provider,
            sample_rate: normalizer.target_rate(),
            chunk_ms: normalizer.chunk_ms(),
        }
    }
}

impl std::fmt::Debug for NormalizedVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NormalizedVoice")
            .field("provider", &self.name)
            .field("sample_rate", &self.sample_rate)
            .field("chunk_ms", &self.chunk_ms)
            .finish()
    }
}

struct Normalizing {
    source: PcmStream,
    /// `None` only while a block is being resampled on the blocking pool.
    normalizer: Option<PcmNormalizer>,
    ready: VecDeque<AudioChunk>,
    source_done: bool,
}

impl Voice for NormalizedVoice {
    fn name(&self) -> &'static str {
        self.name
    }

    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn speak(&self, request: TtsRequest) -> ChunkStream {
        let state = Normalizing {
            source: self.provider.synthesize(request),
            normalizer: Some(PcmNormalizer::new(self.sample_rate, self.chunk_ms)),
            ready: VecDeque::new(),
            source_done: false,
        };
        Box::pin(futures_util::stream::unfold(
            state,
            |mut state| async move {
                loop {
                    if let Some(chunk) = state.ready.pop_front() {
                        return Some((Ok(chunk), state));
                    }
                    if state.source_done {
                        return None;
                    }
                    let step = match state.source.next().await {
                        Some(Ok(block)) => Some(block),
                        Some(Err(error)) => {
                            state.source_done = true;
                            return Some((Err(error), state));
                        }
                        None => {
                            state.source_done = true;
                            None
                        }
                    };
                    let normalizer = state.normalizer.take()?;
                    match normalize(normalizer, step).await {
                        Ok((normalizer, chunks)) => {
                            state.normalizer = Some(normalizer);
                            state.ready.extend(chunks);
                        }
                        Err(error) => {
                            state.source_done = true;
                            return Some((Err(error), state));
                        }
                    }
                }
            },
        ))
    }
}

/// One block through the normaliser (`None`: the end, flush it). A block at another rate is
/// resampled on the blocking pool: an offline voice hands over seconds of audio in a burst,
/// and its windowed-sinc resampling on the async workers (two, on two cores) delayed every
/// other task — the reply text's SSE by ~6 ms p50 in the bench. At the voice's own rate it is
/// only re-chunked, in place.
async fn normalize(
    mut normalizer: PcmNormalizer,
    block: Option<koto_core::tts::PcmBlock>,
) -> Result<(PcmNormalizer, Vec<AudioChunk>), ProviderError> {
    let resamples = normalizer.resampling()
        || block
            .as_ref()
            .is_some_and(|block| block.sample_rate != normalizer.target_rate());
    if !resamples {
        let chunks = match &block {
            Some(block) => normalizer.push(block),
            None => normalizer.finish(),
        };
        return Ok((normalizer, chunks));
    }
    tokio::task::spawn_blocking(move || {
        let chunks = match &block {
            Some(block) => normalizer.push(block),
            None => normalizer.finish(),
        };
        (normalizer, chunks)
    })
    .await
    .map_err(|error| ProviderError::Protocol(format!("the audio resampler failed: {error}")))
}

/// Which TTS to use (`TTS_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtsProviderKind {
    /// espeak-ng when installed, else the mock (logged).
    Auto,
    Mock,
    Espeak,
    Piper,
    Edge,
    OpenAi,
}

impl std::str::FromStr for TtsProviderKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "auto" => Ok(TtsProviderKind::Auto),
            "mock" => Ok(TtsProviderKind::Mock),
            "espeak" => Ok(TtsProviderKind::Espeak),
            "piper" => Ok(TtsProviderKind::Piper),
            "edge" => Ok(TtsProviderKind::Edge),
            "openai" => Ok(TtsProviderKind::OpenAi),
            other => Err(format!(
                "unknown TTS provider {other:?}: expected auto, mock, espeak, piper, edge or openai"
            )),
        }
    }
}

/// Everything the TTS providers can be told; the server maps its config keys onto it.
#[derive(Debug, Clone)]
pub struct TtsSettings {
    pub provider: TtsProviderKind,
    /// Provider-specific voice name (`TTS_VOICE`) forced for every language (for Piper a model
    /// path); `None` = chosen by the request's language.
    pub voice: Option<String>,
    /// Voices by language (`TTS_VOICES`), used when `voice` is `None`; a language without an
    /// entry gets the provider's built-in voice for it (for Piper: `piper_model`).
    pub voices: VoiceMap,
    /// Speaking rate as a factor (`TTS_RATE`, 1.0 = normal).
    pub rate: f32,
    /// The stream's rate (`TTS_SAMPLE_RATE`).
    pub sample_rate: u32,
    pub chunk_ms: u32,
    pub edge_endpoint: Option<String>,
    pub openai: OpenAiTtsConfig,
    pub piper_python: Option<PathBuf>,
    pub piper_model: Option<PathBuf>,
    /// ONNX Runtime threads for Piper; `None`: half the cores.
    pub piper_threads: Option<u32>,
    /// In process (default) or a Python child.
    pub piper_runtime: PiperRuntime,
    /// The ONNX Runtime library for the in-process runtime; `None`: found.
    pub piper_onnxruntime: Option<PathBuf>,
    /// `PIPER_QUANTIZE=int8`: the in-process runtime runs an 8-bit copy of the voice.
    pub piper_quantize: bool,
    /// `PIPER_STREAM=on`: the in-process runtime streams a sentence as it is decoded.
    pub piper_stream: bool,
    /// Where those copies are kept (`<data_dir>/cache/piper`); `None`: next to the voice.
    pub piper_cache_dir: Option<PathBuf>,
    /// The espeak-ng program (`ESPEAK_BINARY`); `None`: found by [`EspeakTts::find_program`].
    pub espeak_program: Option<PathBuf>,
}

impl Default for TtsSettings {
    fn default() -> Self {
        TtsSettings {
            provider: TtsProviderKind::Auto,
            voice: None,
            voices: VoiceMap::default(),
            rate: 1.0,
            sample_rate: 24_000,
            chunk_ms: 20,
            edge_endpoint: None,
            openai: OpenAiTtsConfig::default(),
            piper_python: None,
            piper_model: None,
            piper_threads: None,
            piper_runtime: PiperRuntime::default(),
            piper_onnxruntime: None,
            piper_quantize: true,
            piper_stream: true,
            piper_cache_dir: None,
            espeak_program: None,
        }
    }
}

/// Builds the configured voice. Async because Piper loads its model (~1 s) up front.
pub async fn build_voice(settings: &TtsSettings) -> Result<Arc<dyn Voice>, ProviderError> {
    let espeak_program = || EspeakTts::find_program(settings.espeak_program.as_deref());
    let provider: Arc<dyn TtsProvider> = match settings.provider {
        TtsProviderKind::Auto => match espeak_program() {
            Some(program) => Arc::new(espeak(settings, program)?),
            None => {
                tracing::warn!(
                    "no local voice: espeak-ng was not found (PATH, its install folders, ESPEAK_BINARY), so replies are a test tone; install espeak-ng or choose a voice in Setup"
                );
                Arc::new(MockTts::default())
            }
        },
        TtsProviderKind::Mock => Arc::new(MockTts::default()),
        TtsProviderKind::Espeak => {
            let program = espeak_program().ok_or_else(|| {
                ProviderError::Unavailable(match &settings.espeak_program {
                    Some(program) => format!(
                        "ESPEAK_BINARY {} does not run (`--version` failed)",
                        program.display()
                    ),
                    None => "espeak-ng is not installed: it is not in PATH nor in its install \
                             folders; install it or set ESPEAK_BINARY to the program"
                        .to_owned(),
                })
            })?;
            Arc::new(espeak(settings, program)?)
        }
        TtsProviderKind::Piper => {
            let mut config = PiperConfig::default();
            if let Some(python) = &settings.piper_python {
                config.python = python.clone();
            }
            // A forced voice is one model for every language.
            let (model, models) = match &settings.voice {
                Some(model) => (Some(PathBuf::from(model)), VoiceMap::default()),
                None => (settings.piper_model.clone(), settings.voices.clone()),
            };
            config.model = model;
            config.threads = settings.piper_threads;
            config.runtime = settings.piper_runtime;
            config.onnxruntime = settings.piper_onnxruntime.clone();
            config.quantize = settings.piper_quantize;
            config.stream = settings.piper_stream;
            config.cache_dir = settings.piper_cache_dir.clone();
            if settings.rate > 0.0 {
                // Piper's length scale is the inverse of a speed factor.
                config.length_scale = Some(1.0 / settings.rate);
            }
            let espeak_program = espeak_program();
            if let Some(program) = &espeak_program {
                config.espeak = program.clone();
            }
            let voices = PiperVoices::start(config, models).await?;
            if let Some(program) = espeak_program {
                // Its own voices only: TTS_VOICES holds Piper model paths here.
                let espeak = EspeakTts::new(EspeakConfig {
                    program,
                    rate_wpm: (175.0 * settings.rate).round().clamp(80.0, 450.0) as u32,
                    ..EspeakConfig::default()
                })?;
                Arc::new(voices.with_other_languages(Arc::new(espeak)))
            } else {
                Arc::new(voices)
            }
        }
        TtsProviderKind::Edge => {
            let mut config = EdgeTtsConfig::default();
            if let Some(endpoint) = &settings.edge_endpoint {
                config.endpoint = endpoint.clone();
            }
            config.voice = settings.voice.clone();
            config.voices = settings.voices.clone();
            config.rate = format!("{:+.0}%", (settings.rate - 1.0) * 100.0);
            Arc::new(EdgeTts::new(config)?)
        }
        TtsProviderKind::OpenAi => {
            let mut config = settings.openai.clone();
            match &settings.voice {
                Some(voice) => config.voice = voice.clone(),
                None => config.voices = settings.voices.clone(),
            }
            config.speed = settings.rate;
            if config.response_format == OpenAiSpeechFormat::Pcm && settings.sample_rate == 0 {
                return Err(ProviderError::Unavailable(
                    "TTS_SAMPLE_RATE must be positive".into(),
                ));
            }
            Arc::new(OpenAiTts::new(config)?)
        }
    };
    Ok(Arc::new(NormalizedVoice::new(
        provider,
        settings.sample_rate,
        settings.chunk_ms,
    )))
}

fn espeak(settings: &TtsSettings, program: PathBuf) -> Result<EspeakTts, ProviderError> {
    let config = EspeakConfig {
        program,
        voice: settings.voice.clone(),
        voices: settings.voices.clone(),
        // espeak-ng's default is 175 words per minute.
        rate_wpm: (175.0 * settings.rate).round().clamp(80.0, 450.0) as u32,
        ..EspeakConfig::default()
    };
    EspeakTts::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mock_voice_comes_out_in_exact_chunks_at_the_stream_rate() {
        let settings = TtsSettings {
            provider: TtsProviderKind::Mock,
            ..TtsSettings::default()
        };
        let voice = build_voice(&settings)
            .await
            .expect("the mock always builds");
        assert_eq!(voice.sample_rate(), 24_000);
        let chunks: Vec<AudioChunk> = voice
            .speak(TtsRequest {
                text: "你好".into(),
                lang: Some("zh".into()),
                correlation_id: "t#0".into(),
            })
            .map(|chunk| chunk.expect("mock never fails"))
            .collect()
            .await;
        assert!(
            chunks.len() > 10,
            "two CJK characters last hundreds of ms: {} chunks",
            chunks.len()
        );
        let (last, whole) = chunks.split_last().expect("chunks");
        assert!(
            whole.iter().all(|c| c.samples.len() == 480),
            "20 ms at 24 kHz = 480 samples each"
        );
        assert!(
            !last.samples.is_empty() && last.samples.len() <= 480,
            "only the last may be short"
        );
    }

    #[test]
    fn provider_names_parse_and_unknown_ones_are_named() {
        assert_eq!(
            "espeak".parse::<TtsProviderKind>(),
            Ok(TtsProviderKind::Espeak)
        );
        let error = "festival".parse::<TtsProviderKind>().expect_err("unknown");
        assert!(error.contains("festival"), "{error}");
    }
}
