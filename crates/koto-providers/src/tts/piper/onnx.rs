//! `PiperOnnx`: a Piper voice run inside our process on ONNX Runtime, no Python.
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`), from `PIPER_ONNXRUNTIME`,
//! `ORT_DYLIB_PATH`, next to the executable, or the `onnxruntime` package of the configured Python
//! (which `piper-tts` installs): nothing is downloaded or linked at build time, and a machine
//! without it gets a clear error naming the setting, or `PIPER_RUNTIME=python`.
//!
//! A request is phonemized ([`super::phonemes`]), then each sentence is one inference run on the
//! voice's own inference thread. A voice cut in two ([`super::split`], the default) streams a
//! run's audio window by window as the decoder makes it; a whole voice hands it over when the
//! run ends. Runs of one voice
//! are serialised (one session, one run at a time, in request order). Dropping the stream (a STOP) sets the
//! run's terminate flag, so ONNX Runtime abandons the inference within a node or two and the
//! session is free for the next turn at once: nothing restarts, nothing reloads.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::stream;
use koto_core::ProviderError;
use koto_core::tts::{PcmBlock, PcmStream, TtsProvider, TtsRequest};
use ort::session::{RunOptions, Session};
use ort::value::Tensor;

use super::phonemes::{PhonemeIds, PhonemeType, Phonemizer};
use super::{PiperConfig, VoiceFile};

/// Samples per block handed downstream (~190 ms at 22 050 Hz): a whole run's audio is all there
/// at once, so the size only bounds the copies.
const BLOCK_SAMPLES: usize = 4_096;

/// The first decoder window, in latent frames (256 samples each: ~190 ms at 22 050 Hz): long
/// enough that the next, twice as long, is decoded (~20 ms) well before it has played.
const FIRST_WINDOW: usize = 16;

/// Windows grow to this many frames (~3 s): fewer runs, each far faster than its audio.
const MAX_WINDOW: usize = 256;

/// Latent frames decoded on each side of a window and thrown away: the decoder's reach. With 8,
/// the windows' samples differ from one whole decode by an RMS of 6e-5 of full scale (joe voice).
const WINDOW_CONTEXT: usize = 8;

/// A streamed run is scaled before its peak is known: to this share of full scale at the
/// loudest of its first window and the voice's recent peaks. A louder sample later in the run
/// is bent under full scale above [`SOFT_KNEE`] rather than clipped.
const STREAM_HEADROOM: f32 = 0.9;

/// Where a streamed run's soft limit starts, as a share of full scale.
const SOFT_KNEE: f32 = 0.8;

/// The library's file name on this platform.
#[cfg(target_os = "windows")]
const LIBRARY: &str = "onnxruntime.dll";
#[cfg(target_os = "macos")]
const LIBRARY: &str = "libonnxruntime.dylib";
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
const LIBRARY: &str = "libonnxruntime.so";

/// Prints the directory of the `onnxruntime` package's shared library.
const LOCATE_ORT: &str =
    "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))";

/// The process's ONNX Runtime: loaded once (a library cannot be swapped while sessions use it).
static RUNTIME: OnceLock<(PathBuf, Result<ort::environment::Environment, String>)> =
    OnceLock::new();

/// A Piper voice in process; cheap to clone (clones share the session).
#[derive(Clone)]
pub struct PiperOnnx {
    voice: Arc<LoadedVoice>,
}

struct LoadedVoice {
    file: VoiceFile,
    /// The inference thread's queue (it owns the session).
    jobs: std::sync::mpsc::Sender<Job>,
    /// Held by one utterance from its phonemizing to its last run, in request order: the next
    /// segment's espeak-ng processes must not take the CPU from the first segment's inference
    /// (on two cores that added tens of ms to the first audio). Its audio is out by then.
    working: Arc<tokio::sync::Mutex<()>>,
    ids: PhonemeIds,
    phonemizer: Phonemizer,
    /// The runtime library the session runs on.
    library: PathBuf,
    /// The `.onnx` the session runs: the voice's own, or its 8-bit copy.
    weights: PathBuf,
    /// Runs stream window by window (the weights are cut in two).
    streams: bool,
    /// Runs abandoned because their utterance was dropped (diagnostics and tests).
    terminated: Arc<AtomicU64>,
}

/// One inference run for the voice's thread.
struct Job {
    ids: Vec<i64>,
    stop: Arc<Stop>,
    /// The run's audio as it is made (`Some`), then its end (`None`) or an error.
    reply: RunSender,
}

/// One run's audio: blocks, then `Ok(None)` at its end or an error.
type RunSender = tokio::sync::mpsc::UnboundedSender<Result<Option<Vec<i16>>, ProviderError>>;
type RunReceiver = tokio::sync::mpsc::UnboundedReceiver<Result<Option<Vec<i16>>, ProviderError>>;

/// The voice's sessions: whole, or its two halves ([`super::split`]).
enum Model {
    Whole(Session),
    Halves {
        encoder: Session,
        decoder: Session,
        /// The decoder's input.
        latent: String,
        /// The decoder takes the speaker too.
        decoder_sid: bool,
    },
}

/// What the inference thread owns.
struct Inference {
    model: Model,
    /// noise, length, noise_w: the `scales` input.
    scales: [f32; 3],
    /// `Some` for a multi-speaker voice (its `sid` input).
    speaker: Option<i64>,
    /// The voice's recent loudest sample (raw model output), for scaling a streamed run.
    recent_peak: f32,
    terminated: Arc<AtomicU64>,
}

impl std::fmt::Debug for PiperOnnx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperOnnx")
            .field("model", &self.voice.file.model)
            .field("sample_rate", &self.voice.file.sample_rate)
            .field("library", &self.voice.library)
            .finish()
    }
}

impl PiperOnnx {
    /// Loads ONNX Runtime (once per process), the voice and its phonemizer, and runs one short
    /// warm-up sentence, so the first turn does not pay for the session's first run.
    /// With `config.quantize`, the session runs the voice's 8-bit copy ([`super::quantize`]),
    /// made after the runtime and the phonemizer are known to work.
    pub async fn start(config: &PiperConfig, file: VoiceFile) -> Result<Self, ProviderError> {
        let kind = match file.phoneme_type.as_str() {
            "espeak" => PhonemeType::Espeak {
                voice: file.espeak_voice.clone(),
            },
            "text" => PhonemeType::Text,
            other => {
                return Err(ProviderError::Unavailable(format!(
                    "the Piper voice {:?} writes its input as {other:?}, which only Piper's own \
                     Python phonemizers read: set PIPER_RUNTIME=python for it",
                    file.model
                )));
            }
        };
        let phonemizer = Phonemizer::new(config.espeak.clone(), kind);
        let (library, environment) = runtime(config).await?;
        phonemizer.check().await?;
        let ids = PhonemeIds::from_config(&file.config).map_err(|why| {
            ProviderError::Unavailable(format!(
                "the Piper voice config {:?}: {why}",
                file.config_path
            ))
        })?;
        let weights = if config.quantize {
            super::quantize::int8_copy(config, &file).await?
        } else {
            file.model.clone()
        };
        let halves = if config.stream {
            match super::split::halves(config, &weights).await {
                Ok(halves) => Some(halves),
                Err(super::split::NotSplit::NoDecoder) => {
                    tracing::info!(
                        weights = %weights.display(),
                        "this Piper voice has no decoder to cut at: each sentence is heard when it is whole"
                    );
                    None
                }
                Err(super::split::NotSplit::Failed(error)) => return Err(error),
            }
        } else {
            None
        };
        let streams = halves.is_some();
        let threads = config
            .threads
            .unwrap_or_else(|| super::default_onnx_threads(streams)) as usize;
        let scales = [
            config.noise_scale.unwrap_or(file.noise_scale),
            config.length_scale.unwrap_or(file.length_scale),
            config.noise_w_scale.unwrap_or(file.noise_w_scale),
        ];
        let terminated = Arc::new(AtomicU64::new(0));
        let jobs = spawn_inference_thread(
            environment,
            Weights {
                whole: weights.clone(),
                halves,
            },
            threads,
            scales,
            config.speaker,
            terminated.clone(),
        )
        .await?;
        let voice = PiperOnnx {
            voice: Arc::new(LoadedVoice {
                file,
                jobs,
                working: Arc::new(tokio::sync::Mutex::new(())),
                ids,
                phonemizer,
                library,
                weights,
                streams,
                terminated,
            }),
        };
        let started = std::time::Instant::now();
        let warm_up = voice.synthesize_all("Ready.").await?;
        if warm_up.is_empty() {
            return Err(ProviderError::Unavailable(format!(
                "the Piper voice {:?} produced no audio for a test word",
                voice.voice.file.model
            )));
        }
        tracing::info!(
            model = %voice.voice.file.model.display(),
            library = %voice.voice.library.display(),
            weights = %voice.voice.weights.display(),
            threads,
            streams,
            warm_up_ms = started.elapsed().as_millis() as u64,
            "Piper is loaded in process"
        );
        Ok(voice)
    }

    pub fn sample_rate(&self) -> u32 {
        self.voice.file.sample_rate
    }

    pub fn model_path(&self) -> &Path {
        &self.voice.file.model
    }

    pub fn language(&self) -> Option<&str> {
        self.voice.file.language.as_deref()
    }

    /// The ONNX Runtime library this voice runs on.
    pub fn library(&self) -> &Path {
        &self.voice.library
    }

    /// The weights the session runs (the voice's `.onnx`, or its 8-bit copy).
    pub fn weights(&self) -> &Path {
        &self.voice.weights
    }

    /// True when a sentence's audio streams as it is decoded ([`super::split`]).
    pub fn streams(&self) -> bool {
        self.voice.streams
    }

    /// How many runs a dropped stream (a STOP) has terminated mid-inference.
    pub fn terminated_runs(&self) -> u64 {
        self.voice.terminated.load(Ordering::Relaxed)
    }

    /// Every block of `text` (for the warm-up and tests).
    async fn synthesize_all(&self, text: &str) -> Result<Vec<i16>, ProviderError> {
        use futures_util::StreamExt;
        let mut samples = Vec::new();
        let mut stream = self.synthesize(TtsRequest {
            text: text.to_owned(),
            lang: None,
            correlation_id: "piper-warm-up".into(),
        });
        while let Some(block) = stream.next().await {
            samples.extend(block?.samples);
        }
        Ok(samples)
    }
}

impl TtsProvider for PiperOnnx {
    fn name(&self) -> &'static str {
        "piper"
    }

    fn synthesize(&self, request: TtsRequest) -> PcmStream {
        if request.text.trim().is_empty() {
            return Box::pin(stream::empty());
        }
        let utterance = Utterance {
            voice: self.voice.clone(),
            stop: StopOnDrop(Arc::new(Stop::new())),
            text: Some(request.text),
            working: None,
            runs: VecDeque::new(),
            run: None,
            blocks: VecDeque::new(),
            correlation_id: request.correlation_id,
        };
        Box::pin(stream::unfold(utterance, Utterance::advance))
    }
}

/// One request's progress: phonemize, then one run per sentence.
struct Utterance {
    voice: Arc<LoadedVoice>,
    /// Terminates the run in progress when the stream is dropped.
    stop: StopOnDrop,
    /// The text, until it is phonemized.
    text: Option<String>,
    /// The voice's working turn, from phonemizing to the last run (see `LoadedVoice::working`).
    working: Option<tokio::sync::OwnedMutexGuard<()>>,
    runs: VecDeque<Vec<char>>,
    /// The audio of the run in progress, as the inference thread makes it.
    run: Option<RunReceiver>,
    blocks: VecDeque<PcmBlock>,
    correlation_id: String,
}

impl Utterance {
    async fn advance(mut self) -> Option<(Result<PcmBlock, ProviderError>, Utterance)> {
        loop {
            if let Some(block) = self.blocks.pop_front() {
                return Some((Ok(block), self));
            }
            if let Some(text) = self.text.take() {
                let asked = std::time::Instant::now();
                self.working = Some(self.voice.working.clone().lock_owned().await);
                let waited = asked.elapsed();
                match self.voice.phonemizer.runs(&text).await {
                    Ok(runs) => {
                        // With "piper sentence started", where a clause's first audio goes.
                        tracing::debug!(
                            correlationId = %self.correlation_id,
                            waited_for_the_voice_ms = waited.as_secs_f64() * 1e3,
                            phonemized_ms = (asked.elapsed() - waited).as_secs_f64() * 1e3,
                            "piper text phonemized"
                        );
                        self.runs = runs.into();
                    }
                    Err(error) => return Some((Err(error), self.finished())),
                }
            }
            if let Some(run) = &mut self.run {
                match run.recv().await {
                    Some(Ok(Some(samples))) => {
                        let rate = self.voice.file.sample_rate;
                        self.blocks = samples
                            .chunks(BLOCK_SAMPLES)
                            .map(|chunk| PcmBlock {
                                sample_rate: rate,
                                samples: chunk.to_vec(),
                            })
                            .collect();
                    }
                    Some(Err(error)) => {
                        tracing::warn!(correlationId = %self.correlation_id, %error, "piper failed");
                        return Some((Err(error), self.finished()));
                    }
                    None => {
                        return Some((
                            Err(ProviderError::Protocol(
                                "a Piper run panicked (the inference thread dropped it)".into(),
                            )),
                            self.finished(),
                        ));
                    }
                    Some(Ok(None)) => {
                        self.run = None;
                        if self.runs.is_empty() {
                            // The last run is done: the next utterance may start while its
                            // blocks are still being read.
                            self.working = None;
                        }
                    }
                }
                continue;
            }
            let Some(phonemes) = self.runs.pop_front() else {
                self.working = None;
                return None;
            };
            let (ids, unknown) = self.voice.ids.encode(&phonemes);
            if unknown > 0 {
                tracing::debug!(correlationId = %self.correlation_id, unknown, "phonemes this Piper voice does not know were dropped");
            }
            let (reply, run) = tokio::sync::mpsc::unbounded_channel();
            let job = Job {
                ids,
                stop: self.stop.0.clone(),
                reply,
            };
            if self.voice.jobs.send(job).is_err() {
                return Some((
                    Err(ProviderError::Unavailable(
                        "the Piper inference thread has ended".into(),
                    )),
                    self.finished(),
                ));
            }
            self.run = Some(run);
        }
    }

    /// The same utterance with nothing left to do (the stream ends after the error).
    fn finished(mut self) -> Utterance {
        self.working = None;
        self.text = None;
        self.runs.clear();
        self.run = None;
        self.blocks.clear();
        self
    }
}

/// A run's stop switch: run options whose terminate flag ONNX Runtime checks between nodes, and
/// keeps set, so a run that had not started yet ends at once too. Shared with the blocking run.
struct Stop {
    options: Option<RunOptions>,
    stopped: AtomicBool,
}

impl Stop {
    fn new() -> Self {
        let options = RunOptions::new()
            .inspect_err(|error| tracing::warn!(%error, "no ONNX run options: a STOP will wait for the current sentence"))
            .ok();
        Stop {
            options,
            stopped: AtomicBool::new(false),
        }
    }

    fn trigger(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(options) = &self.options
            && let Err(error) = options.terminate()
        {
            tracing::debug!(%error, "could not terminate a Piper run");
        }
    }
}

/// Owned by the utterance alone (the blocking run holds the `Stop`, not this): dropping the
/// stream is what flips the switch.
struct StopOnDrop(Arc<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

/// Hands the run's freed buffers back to the OS. A run of a long sentence allocates ~80 MB that
/// glibc would otherwise keep for the process's life (measured: 191 MB after a 4 s sentence
/// without, 109 MB with). Runs after the reply is sent, off the audio's path.
#[allow(
    unsafe_code,
    reason = "the workspace's one unsafe call: glibc's malloc_trim, which has no safe wrapper"
)]
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only releases free heap pages; it has no
    // preconditions and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An input tensor, or why it could not be made.
fn tensor<T>(made: ort::Result<T>) -> Result<T, ProviderError> {
    made.map_err(|error| ProviderError::Protocol(format!("Piper input: {error}")))
}

/// The weights the inference thread loads.
struct Weights {
    /// The whole voice (its own `.onnx` or the 8-bit copy).
    whole: PathBuf,
    /// Its two halves, when it streams.
    halves: Option<super::split::Halves>,
}

impl Weights {
    fn load(
        &self,
        environment: &ort::environment::Environment,
        threads: usize,
    ) -> Result<Model, ProviderError> {
        let Some(halves) = &self.halves else {
            return Ok(Model::Whole(load_session(
                environment,
                &self.whole,
                threads,
            )?));
        };
        let encoder = load_session(environment, &halves.encoder, threads)?;
        let decoder = load_session(environment, &halves.decoder, threads)?;
        let decoder_sid = decoder.inputs().iter().any(|input| input.name() == "sid");
        Ok(Model::Halves {
            encoder,
            decoder,
            latent: halves.latent.clone(),
            decoder_sid,
        })
    }
}

/// Loads the session on a thread of its own and serves the voice's runs there, in order. One
/// thread, not the blocking pool: the allocator keeps a cache per thread that ran inference
/// (tens of MB each), and ONNX Runtime's per-thread state stays on one thread too. The thread
/// ends, dropping the session, when the voice (every sender) is dropped.
async fn spawn_inference_thread(
    environment: ort::environment::Environment,
    weights: Weights,
    threads: usize,
    scales: [f32; 3],
    speaker: Option<u32>,
    terminated: Arc<AtomicU64>,
) -> Result<std::sync::mpsc::Sender<Job>, ProviderError> {
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let (loaded, load_result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("piper-onnx".into())
        .spawn(move || {
            let model = match weights.load(&environment, threads) {
                Ok(model) => model,
                Err(error) => {
                    let _ = loaded.send(Err(error));
                    return;
                }
            };
            // Multi-speaker voices have a `sid` input; Piper's default speaker is 0.
            let first = match &model {
                Model::Whole(session) => session,
                Model::Halves { encoder, .. } => encoder,
            };
            let has_sid = first.inputs().iter().any(|input| input.name() == "sid");
            let mut inference = Inference {
                model,
                scales,
                speaker: has_sid.then(|| i64::from(speaker.unwrap_or(0))),
                recent_peak: 0.0,
                terminated,
            };
            // Loading parsed a copy of the model file that is free now.
            return_freed_memory();
            if loaded.send(Ok(())).is_err() {
                return;
            }
            for job in queue {
                let result = if job.stop.stopped.load(Ordering::SeqCst) {
                    // Stopped while queued: never started.
                    inference.terminated.fetch_add(1, Ordering::Relaxed);
                    Err(ProviderError::Protocol("stopped before it ran".into()))
                } else {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inference.run(job.ids, &job.stop, &job.reply)
                    }))
                    .unwrap_or_else(|_| Err(ProviderError::Protocol("a Piper run panicked".into())))
                };
                let _ = job.reply.send(result.map(|()| None));
                return_freed_memory();
            }
            drop(inference);
            return_freed_memory();
        })
        .map_err(|error| {
            ProviderError::Unavailable(format!("cannot start the Piper inference thread: {error}"))
        })?;
    match load_result.await {
        Ok(Ok(())) => Ok(jobs),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ProviderError::Unavailable(
            "loading the Piper voice panicked".into(),
        )),
    }
}

/// A run's inputs in ONNX Runtime's form.
type Inputs<'a> = Vec<(
    std::borrow::Cow<'a, str>,
    ort::session::SessionInputValue<'a>,
)>;

impl Inference {
    /// One inference run: ids → samples sent to `reply` (16-bit; a whole run peak-normalised, as
    /// Piper does, a streamed one scaled by [`Inference::stream_gain`]).
    fn run(&mut self, ids: Vec<i64>, stop: &Stop, reply: &RunSender) -> Result<(), ProviderError> {
        let count = ids.len();
        let mut inputs: Inputs<'_> = ort::inputs! {
            "input" => tensor(Tensor::from_array(([1usize, count], ids)))?,
            "input_lengths" => tensor(Tensor::from_array(([1usize], vec![count as i64])))?,
            "scales" => tensor(Tensor::from_array(([3usize], self.scales.to_vec())))?,
        };
        if let Some(speaker) = self.speaker {
            inputs.push(speaker_input(speaker)?);
        }
        let terminated = &self.terminated;
        let failed = |error: ort::Error| {
            if stop.stopped.load(Ordering::SeqCst) {
                terminated.fetch_add(1, Ordering::Relaxed);
            }
            ProviderError::Protocol(format!("Piper inference failed: {error}"))
        };
        match &mut self.model {
            Model::Whole(session) => {
                let outputs = run_session(session, inputs, stop).map_err(failed)?;
                let audio = output_f32(&outputs)?.1;
                let peak = peak_of(audio);
                self.recent_peak = peak;
                let gain = if peak < 1e-8 { 0.0 } else { 32_767.0 / peak };
                let _ = reply.send(Ok(Some(to_pcm(audio, gain))));
                Ok(())
            }
            Model::Halves {
                encoder,
                decoder,
                latent,
                decoder_sid,
            } => {
                let started = std::time::Instant::now();
                let outputs = run_session(encoder, inputs, stop).map_err(failed)?;
                let encoded = started.elapsed();
                let (shape, values) = output_f32(&outputs)?;
                let [1, channels, frames] = shape[..] else {
                    return Err(ProviderError::Protocol(format!(
                        "the Piper encoder's latent has the shape {shape:?}, not [1, channels, frames]"
                    )));
                };
                let (channels, frames) = (channels as usize, frames as usize);
                let values = values.to_vec();
                drop(outputs);
                let speaker = self.speaker.filter(|_| *decoder_sid);
                let mut gain = None;
                let mut loudest = 0f32;
                for window in windows(frames) {
                    if stop.stopped.load(Ordering::SeqCst) || reply.is_closed() {
                        self.terminated.fetch_add(1, Ordering::Relaxed);
                        return Err(ProviderError::Protocol("stopped mid-sentence".into()));
                    }
                    let width = window.decode.len();
                    let mut slice = Vec::with_capacity(channels * width);
                    for channel in values.chunks_exact(frames) {
                        slice.extend_from_slice(&channel[window.decode.clone()]);
                    }
                    let mut inputs: Inputs<'_> = vec![(
                        latent.as_str().into(),
                        tensor(Tensor::from_array(([1usize, channels, width], slice)))?.into(),
                    )];
                    if let Some(speaker) = speaker {
                        inputs.push(speaker_input(speaker)?);
                    }
                    let outputs = run_session(decoder, inputs, stop).map_err(failed)?;
                    let audio = output_f32(&outputs)?.1;
                    if width == 0 || audio.len() % width != 0 {
                        return Err(ProviderError::Protocol(format!(
                            "the Piper decoder made {} samples of {width} frames",
                            audio.len()
                        )));
                    }
                    let hop = audio.len() / width;
                    let kept = &audio[(window.keep.start - window.decode.start) * hop
                        ..(window.keep.end - window.decode.start) * hop];
                    let window_peak = peak_of(kept);
                    loudest = loudest.max(window_peak);
                    let gain = *gain.get_or_insert_with(|| {
                        let peak = window_peak.max(self.recent_peak);
                        if peak < 1e-8 {
                            0.0
                        } else {
                            STREAM_HEADROOM * 32_767.0 / peak
                        }
                    });
                    if reply.send(Ok(Some(to_pcm_limited(kept, gain)))).is_err() {
                        return Ok(());
                    }
                    if window.keep.start == 0 {
                        // The encoder runs whole before the first window is decoded.
                        tracing::debug!(
                            ids = count,
                            frames,
                            encoder_ms = encoded.as_secs_f64() * 1e3,
                            first_window_ms = (started.elapsed() - encoded).as_secs_f64() * 1e3,
                            "piper sentence started"
                        );
                    }
                }
                // Quick to follow a louder sentence, slow to forget one.
                self.recent_peak = loudest.max(0.8 * self.recent_peak + 0.2 * loudest);
                Ok(())
            }
        }
    }
}

/// A decoder window: the latent frames decoded, and those of them whose samples are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    decode: std::ops::Range<usize>,
    keep: std::ops::Range<usize>,
}

/// The windows covering `frames`: [`FIRST_WINDOW`] kept frames, then twice as many each time up
/// to [`MAX_WINDOW`], each decoded with [`WINDOW_CONTEXT`] frames either side where there are.
fn windows(frames: usize) -> Vec<Window> {
    let mut windows = Vec::new();
    let (mut start, mut size) = (0, FIRST_WINDOW);
    while start < frames {
        let end = (start + size).min(frames);
        windows.push(Window {
            decode: start.saturating_sub(WINDOW_CONTEXT)..(end + WINDOW_CONTEXT).min(frames),
            keep: start..end,
        });
        start = end;
        size = (size * 2).min(MAX_WINDOW);
    }
    windows
}

fn speaker_input(
    speaker: i64,
) -> Result<
    (
        std::borrow::Cow<'static, str>,
        ort::session::SessionInputValue<'static>,
    ),
    ProviderError,
> {
    Ok((
        "sid".into(),
        tensor(Tensor::from_array(([1usize], vec![speaker])))?.into(),
    ))
}

fn run_session<'s>(
    session: &'s mut Session,
    inputs: Inputs<'_>,
    stop: &'s Stop,
) -> ort::Result<ort::session::SessionOutputs<'s>> {
    match &stop.options {
        Some(options) => session.run_with_options(inputs, options),
        None => session.run(inputs),
    }
}

/// The first output as floats, with its shape.
fn output_f32<'o>(
    outputs: &'o ort::session::SessionOutputs<'_>,
) -> Result<(&'o [i64], &'o [f32]), ProviderError> {
    outputs[0]
        .try_extract_tensor::<f32>()
        .map(|(shape, values)| (&shape[..], values))
        .map_err(|error| ProviderError::Protocol(format!("Piper output: {error}")))
}

/// [`to_pcm`] with a soft knee: above [`SOFT_KNEE`] of full scale a sample is bent towards full
/// scale (tanh), never past it, so a peak the gain did not foresee is not clipped.
fn to_pcm_limited(audio: &[f32], gain: f32) -> Vec<i16> {
    let headroom = 1.0 - SOFT_KNEE;
    audio
        .iter()
        .map(|s| {
            let level = s * gain / 32_767.0;
            let bent = if level.abs() > SOFT_KNEE {
                level.signum()
                    * (SOFT_KNEE + headroom * ((level.abs() - SOFT_KNEE) / headroom).tanh())
            } else {
                level
            };
            (bent * 32_767.0) as i16
        })
        .collect()
}

fn peak_of(audio: &[f32]) -> f32 {
    audio.iter().fold(0f32, |peak, s| peak.max(s.abs()))
}

fn to_pcm(audio: &[f32], gain: f32) -> Vec<i16> {
    audio
        .iter()
        .map(|s| (s * gain).clamp(-32_768.0, 32_767.0) as i16)
        .collect()
}

fn load_session(
    environment: &ort::environment::Environment,
    model: &Path,
    threads: usize,
) -> Result<Session, ProviderError> {
    let failed = |error: ort::Error| {
        ProviderError::Unavailable(format!(
            "cannot load the Piper voice {model:?} into ONNX Runtime: {error}"
        ))
    };
    Session::builder(environment)
        .map_err(failed)?
        // Without ONNX Runtime's arena a run's buffers are freed (and trimmed, see
        // `return_freed_memory`): 20–50 MB less between turns, for runs ~10 % slower on long
        // sentences and the same on a first clause (~100–150 ms for "Welcome back," on 2 cores).
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
        .map_err(|error| failed(error.into()))?
        .with_intra_threads(threads)
        .map_err(|error| failed(error.into()))?
        // Idle pool threads sleep rather than spin: on two cores a spinning second thread
        // takes the core the LLM stream, the relay and OBS need between runs.
        .with_intra_op_spinning(false)
        .map_err(|error| failed(error.into()))?
        .with_inter_threads(1)
        .map_err(|error| failed(error.into()))?
        .commit_from_file(model)
        .map_err(failed)
}

/// The process's ONNX Runtime, loading it on first use.
async fn runtime(
    config: &PiperConfig,
) -> Result<(PathBuf, ort::environment::Environment), ProviderError> {
    if let Some(path) = &config.onnxruntime
        && !path.is_file()
    {
        return Err(ProviderError::Unavailable(format!(
            "PIPER_ONNXRUNTIME points at {path:?}, which is not a file"
        )));
    }
    // One loader at a time: voices start concurrently (`PiperVoices`), and a second
    // `ort::init_from` racing the first would fail and could be the result kept.
    static LOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _loading = LOADING.lock().await;
    if let Some((path, loaded)) = RUNTIME.get() {
        if let Some(wanted) = &config.onnxruntime
            && wanted != path
        {
            return Err(ProviderError::Unavailable(format!(
                "ONNX Runtime is already loaded from {path:?}; restart Kotodama to load {wanted:?}"
            )));
        }
        return loaded
            .clone()
            .map(|env| (path.clone(), env))
            .map_err(ProviderError::Unavailable);
    }
    let path = locate_library(config).await?;
    let loaded = tokio::task::spawn_blocking({
        let path = path.clone();
        move || load_library(&path)
    })
    .await
    .unwrap_or_else(|error| Err(format!("loading ONNX Runtime panicked: {error}")));
    let (path, loaded) = RUNTIME.get_or_init(|| (path, loaded));
    loaded
        .clone()
        .map(|env| (path.clone(), env))
        .map_err(ProviderError::Unavailable)
}

fn load_library(path: &Path) -> Result<ort::environment::Environment, String> {
    // A library of the wrong version or architecture can make the loader panic, not fail.
    std::panic::catch_unwind(|| {
        ort::init_from(path)
            .map_err(|error| error.to_string())?
            .with_name("kotodama")
            .build()
            .map_err(|error| error.to_string())
    })
    .unwrap_or_else(|_| Err("the library could not be initialised".into()))
    .map_err(|why| {
        format!(
            "cannot load ONNX Runtime from {path:?} ({why}); it needs version 1.17 or newer \
             (`python3 -m pip install onnxruntime`), or set PIPER_RUNTIME=python"
        )
    })
}

/// Where the library is: `PIPER_ONNXRUNTIME`, `ORT_DYLIB_PATH`, next to the executable, or the
/// configured Python's `onnxruntime` package.
async fn locate_library(config: &PiperConfig) -> Result<PathBuf, ProviderError> {
    if let Some(path) = &config.onnxruntime {
        return Ok(path.clone());
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)
        && path.is_file()
    {
        return Ok(path);
    }
    if let Some(beside) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(LIBRARY)))
        .filter(|path| path.is_file())
    {
        return Ok(beside);
    }
    let output = tokio::process::Command::new(&config.python)
        .args(["-c", LOCATE_ORT])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let directory = output
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(found) = directory.as_deref().and_then(library_in) {
        return Ok(found);
    }
    Err(ProviderError::Unavailable(format!(
        "ONNX Runtime ({LIBRARY}) was not found for the in-process Piper voice: install it with \
         `{} -m pip install onnxruntime` (scripts/test.sh does this), point PIPER_ONNXRUNTIME at \
         the library, or set PIPER_RUNTIME=python",
        config.python.display()
    )))
}

/// `libonnxruntime.so` or a versioned `libonnxruntime.so.1.32.0` in `directory`.
fn library_in(directory: &Path) -> Option<PathBuf> {
    let exact = directory.join(LIBRARY);
    if exact.is_file() {
        return Some(exact);
    }
    std::fs::read_dir(directory)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&format!("{LIBRARY}.")))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_frame_once_with_context_where_there_is_some() {
        for frames in [0, 1, 15, 16, 17, 40, 48, 300, 1_000] {
            let windows = windows(frames);
            let mut next = 0;
            for window in &windows {
                assert_eq!(window.keep.start, next, "contiguous ({frames} frames)");
                assert!(!window.keep.is_empty());
                assert_eq!(
                    window.decode.start,
                    window.keep.start.saturating_sub(WINDOW_CONTEXT)
                );
                assert_eq!(
                    window.decode.end,
                    (window.keep.end + WINDOW_CONTEXT).min(frames)
                );
                next = window.keep.end;
            }
            assert_eq!(next, frames, "every frame kept once");
        }
        let sizes: Vec<usize> = windows(1_000).iter().map(|w| w.keep.len()).collect();
        assert_eq!(sizes[..6], [16, 32, 64, 128, 256, 256], "grows to the cap");
        assert_eq!(
            windows(10),
            [Window {
                decode: 0..10,
                keep: 0..10
            }]
        );
    }

    #[test]
    fn a_streamed_run_bends_an_unforeseen_peak_under_full_scale() {
        let gain = 32_767.0 * 3.0;
        let pcm = to_pcm_limited(&[0.0, 0.1, 0.3, 0.5, 1.0, -1.0, -0.3], gain);
        assert_eq!(pcm[..2], [0, 9_830], "below the knee: as scaled");
        assert!(
            pcm[2] > 26_214 && pcm[2] < 29_490,
            "above it: bent below the scaled value"
        );
        assert!(pcm[2] < pcm[3] && pcm[3] < pcm[4], "still rising: {pcm:?}");
        assert!(pcm[5] > i16::MIN, "never past full scale: {pcm:?}");
        assert_eq!(pcm[6], -pcm[2], "symmetric");
        assert_eq!(pcm[5], -pcm[4], "symmetric");
    }
}
