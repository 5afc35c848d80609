//! `EspeakTts`: espeak-ng as a subprocess, one process per request, WAV streamed from its stdout.
//! It does not link espeak-ng (GPL stays out of the binary) and never goes through a shell.
//!
//! `espeak-ng -v <voice> -s <wpm> [-p <pitch>] --stdout -- <text>`: the text is one argv entry
//! after `--`, so quotes, `$(…)`, `;` or a leading `-` are just text. espeak-ng writes a WAV
//! header with a placeholder size and then samples as it synthesises (22 050 Hz mono); they are
//! parsed by [`crate::audio::wav`] and yielded as they arrive. Dropping the stream kills and reaps
//! the process. A process that exits non-zero is a `Protocol` error carrying its stderr; one that
//! dies by a signal is `Unavailable`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::stream;
use koto_core::ProviderError;
use koto_core::tts::{PcmBlock, PcmStream, TtsProvider, TtsRequest};
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdout, Command};

use super::voice_map::{self, VoiceMap};
use super::{ChildGuard, StderrTail};
use crate::audio::WavStreamDecoder;

/// Bytes per read of stdout: 4 KiB is ~93 ms of audio at 22 050 Hz, so a long sentence arrives
/// in many blocks while each read stays cheap.
const READ_BYTES: usize = 4096;

/// Settings of the espeak-ng provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakConfig {
    /// The binary: a name looked up in `PATH`, or a path.
    pub program: PathBuf,
    /// An espeak-ng voice (`espeak-ng --voices`) for every language; `None` picks one from the
    /// request's language ([`EspeakTts::voice_for`]).
    pub voice: Option<String>,
    /// Voices by language (`TTS_VOICES`), before the built-in ones.
    pub voices: VoiceMap,
    /// Speed in words per minute (espeak-ng accepts 80–450; its default is 175).
    pub rate_wpm: u32,
    /// Pitch 0–99 (espeak-ng's default is 50).
    pub pitch: Option<u8>,
    /// Longest wait for the next bytes from the process before giving up.
    pub idle_timeout: Duration,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self {
            program: PathBuf::from(EspeakTts::PROGRAM),
            voice: None,
            voices: VoiceMap::default(),
            rate_wpm: 175,
            pitch: None,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Languages espeak-ng 1.51 has a voice for under their own code (`espeak-ng --voices`).
#[rustfmt::skip]
const ESPEAK_LANGUAGES: &[&str] = &[
    "af", "am", "an", "ar", "as", "az", "ba", "be", "bg", "bn", "bs", "ca", "cs", "cv", "cy", "da",
    "de", "el", "en", "eo", "es", "et", "eu", "fa", "fi", "fr", "ga", "gd", "gn", "gu", "haw", "he",
    "hi", "hr", "ht", "hu", "hy", "ia", "id", "io", "is", "it", "ja", "ka", "kk", "kl", "kn", "ko",
    "ku", "ky", "la", "lb", "lt", "lv", "mi", "mk", "ml", "mr", "ms", "mt", "my", "nb", "ne", "nl",
    "om", "or", "pa", "pl", "pt", "qu", "ro", "ru", "sd", "si", "sk", "sl", "sq", "sr", "sv", "sw",
    "ta", "te", "th", "tk", "tn", "tr", "tt", "ug", "uk", "ur", "uz", "vi", "yue",
];

/// espeak-ng's own voice for a language: Mandarin (`cmn`) for `zh`, the language's code where
/// espeak-ng has it (`ja`, `ko`, `fr`, …; region subtags are ignored), `en` for anything else or
/// no language (an unknown code would fail the synthesis).
pub fn default_voice_for(lang: Option<&str>) -> &'static str {
    let primary = lang
        .and_then(|lang| koto_core::lang::LangTag::parse(lang).ok())
        .map(|tag| tag.primary().to_owned());
    match primary.as_deref() {
        Some("zh" | "cmn") => "cmn",
        Some(code) => ESPEAK_LANGUAGES
            .iter()
            .find(|known| **known == code)
            .copied()
            .unwrap_or("en"),
        None => "en",
    }
}

/// For a Japanese voice, the text without its kanji and how many were skipped; `None` when
/// nothing needs skipping. espeak-ng 1.51 has no kanji readings: it says "Chinese letter" for each
/// one, which is worse than a gap. Kana, Latin and digits are kept.
pub fn kana_only(voice: &str, text: &str) -> Option<(String, usize)> {
    let japanese = voice == "ja" || voice.starts_with("ja-") || voice.starts_with("ja+");
    let is_kanji = |c: char| {
        matches!(c, '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}'
            | '\u{20000}'..='\u{2FA1F}' | '々' | '〆')
    };
    if !japanese || !text.chars().any(is_kanji) {
        return None;
    }
    let mut skipped = 0;
    let mut kana = String::with_capacity(text.len());
    for c in text.chars() {
        if is_kanji(c) {
            skipped += 1;
            // One space per run of kanji: the words around it stay apart.
            if !kana.ends_with(' ') {
                kana.push(' ');
            }
        } else {
            kana.push(c);
        }
    }
    Some((kana, skipped))
}

/// Says once per process that kanji were skipped, and what to use instead.
fn warn_kanji_once(skipped: usize, correlation_id: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            correlationId = %correlation_id,
            skipped,
            "espeak-ng cannot read kanji, so they are skipped and only the kana are spoken; for \
             Japanese choose TTS_PROVIDER=edge (TTS_VOICES=ja=ja-JP-NanamiNeural) or openai, or \
             a Japanese Piper voice with PIPER_RUNTIME=python"
        );
    });
    tracing::debug!(correlationId = %correlation_id, skipped, "kanji skipped for espeak-ng");
}

/// The espeak-ng provider. Cheap to clone; holds no process between requests.
#[derive(Debug, Clone)]
pub struct EspeakTts {
    config: EspeakConfig,
}

impl EspeakTts {
    pub const PROGRAM: &'static str = "espeak-ng";

    /// Validates the settings (it does not run espeak-ng; see [`EspeakTts::detect`]).
    pub fn new(config: EspeakConfig) -> Result<Self, ProviderError> {
        let invalid = |what: String| {
            Err(ProviderError::Unavailable(format!(
                "invalid espeak-ng config: {what}"
            )))
        };
        if !(80..=450).contains(&config.rate_wpm) {
            return invalid(format!("rate {} wpm is outside 80..=450", config.rate_wpm));
        }
        if config.pitch.is_some_and(|p| p > 99) {
            return invalid(format!("pitch {:?} is outside 0..=99", config.pitch));
        }
        let voices = config.voice.iter().map(String::as_str);
        for voice in voices.chain(config.voices.entries().map(|(_, voice)| voice)) {
            // Voice names are like `en-us`, `cmn`, `en+f3`, `mb/mb-en1`; anything else is a typo.
            let plausible = !voice.is_empty()
                && !voice.starts_with('-')
                && voice
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_+/".contains(c));
            if !plausible {
                return invalid(format!("voice {voice:?} is not an espeak-ng voice name"));
            }
        }
        Ok(Self { config })
    }

    pub fn config(&self) -> &EspeakConfig {
        &self.config
    }

    /// Whether espeak-ng is installed ([`EspeakTts::find_program`] finds it), for choosing a
    /// default provider. Blocks for the few milliseconds `espeak-ng --version` takes: call it at
    /// start-up, not per request.
    pub fn detect() -> bool {
        Self::find_program(None).is_some()
    }

    /// The espeak-ng program to run: `configured` (`ESPEAK_BINARY`) if given and it runs; else
    /// `espeak-ng` in `PATH`; else the first of the places its installers put it
    /// ([`standard_programs`]) that runs. `None`: espeak-ng is not installed (or `configured`
    /// does not run).
    pub fn find_program(configured: Option<&Path>) -> Option<PathBuf> {
        if let Some(program) = configured {
            return Self::detect_program(program).then(|| program.to_owned());
        }
        std::iter::once(PathBuf::from(Self::PROGRAM))
            .chain(standard_programs())
            .find(|program| Self::detect_program(program))
    }

    /// Like [`EspeakTts::detect`] for a given binary.
    pub fn detect_program(program: &Path) -> bool {
        std::process::Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The voice for a request: the forced one (`TTS_VOICE`), else the language's entry in
    /// `voices`, else [`default_voice_for`] the language.
    pub fn voice_for(&self, lang: Option<&str>) -> String {
        voice_map::choose(
            self.config.voice.as_deref(),
            &self.config.voices,
            lang,
            default_voice_for,
        )
        .to_owned()
    }

    fn command(&self, request: &TtsRequest, text: &str) -> Command {
        let mut command = Command::new(&self.config.program);
        command
            .arg("-v")
            .arg(self.voice_for(request.lang.as_deref()))
            .arg("-s")
            .arg(self.config.rate_wpm.to_string());
        if let Some(pitch) = self.config.pitch {
            command.arg("-p").arg(pitch.to_string());
        }
        command
            .arg("--stdout")
            .arg("--")
            // An argv entry cannot hold NUL; it is not speech anyway.
            .arg(text.replace('\0', " "))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

impl TtsProvider for EspeakTts {
    fn name(&self) -> &'static str {
        "espeak-ng"
    }

    fn synthesize(&self, request: TtsRequest) -> PcmStream {
        if request.text.trim().is_empty() {
            return Box::pin(stream::empty());
        }
        let voice = self.voice_for(request.lang.as_deref());
        let text = match kana_only(&voice, &request.text) {
            Some((kana, skipped)) => {
                warn_kanji_once(skipped, &request.correlation_id);
                if !kana.chars().any(char::is_alphanumeric) {
                    return Box::pin(stream::empty());
                }
                kana
            }
            None => request.text.clone(),
        };
        let pending = Pending {
            command: self.command(&request, &text),
            voice: self.voice_for(request.lang.as_deref()),
            program: self.config.program.clone(),
            idle_timeout: self.config.idle_timeout,
            correlation_id: request.correlation_id,
        };
        // The process starts on the first poll (inside the runtime), not here.
        Box::pin(stream::unfold(
            Synthesis::Pending(Box::new(pending)),
            Synthesis::advance,
        ))
    }
}

struct Pending {
    command: Command,
    /// For the log: which voice this request got.
    voice: String,
    program: PathBuf,
    idle_timeout: Duration,
    correlation_id: String,
}

/// One running espeak-ng. Dropping it (with the stream) kills and reaps the process.
struct Running {
    child: ChildGuard,
    stdout: ChildStdout,
    /// `None` once stderr reached end of file.
    stderr: Option<ChildStderr>,
    stderr_tail: StderrTail,
    decoder: WavStreamDecoder,
    buffer: Vec<u8>,
    stderr_buffer: Vec<u8>,
    idle_timeout: Duration,
    correlation_id: String,
}

enum Synthesis {
    Pending(Box<Pending>),
    Running(Box<Running>),
    Done,
}

impl Synthesis {
    async fn advance(self) -> Option<(Result<PcmBlock, ProviderError>, Synthesis)> {
        let mut running = match self {
            Synthesis::Pending(pending) => match pending.spawn() {
                Ok(running) => Box::new(running),
                Err(error) => return Some((Err(error), Synthesis::Done)),
            },
            Synthesis::Running(running) => running,
            Synthesis::Done => return None,
        };
        match running.next_block().await {
            Ok(Some(block)) => Some((Ok(block), Synthesis::Running(running))),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(correlationId = %running.correlation_id, %error, "espeak-ng failed");
                Some((Err(error), Synthesis::Done))
            }
        }
    }
}

impl Pending {
    fn spawn(mut self) -> Result<Running, ProviderError> {
        let mut child = self.command.spawn().map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                ProviderError::Unavailable(format!(
                    "espeak-ng not found; install the espeak-ng package (looked for {:?})",
                    self.program
                ))
            } else {
                ProviderError::Unavailable(format!(
                    "cannot start espeak-ng ({:?}): {error}",
                    self.program
                ))
            }
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ProviderError::Unavailable(
                "espeak-ng started without its pipes".into(),
            ));
        };
        tracing::debug!(correlationId = %self.correlation_id, pid = ?child.id(), voice = %self.voice, "espeak-ng started");
        Ok(Running {
            child: ChildGuard::new(child),
            stdout,
            stderr: Some(stderr),
            stderr_tail: StderrTail::default(),
            decoder: WavStreamDecoder::new(),
            buffer: vec![0; READ_BYTES],
            stderr_buffer: vec![0; 1024],
            idle_timeout: self.idle_timeout,
            correlation_id: self.correlation_id,
        })
    }
}

impl Running {
    /// The next samples; `Ok(None)` at a clean end.
    async fn next_block(&mut self) -> Result<Option<PcmBlock>, ProviderError> {
        loop {
            let read = tokio::time::timeout(self.idle_timeout, async {
                tokio::select! {
                    // Stdout first: audio is what the caller waits for; stderr is drained too so
                    // a chatty process can never block on a full stderr pipe.
                    biased;
                    read = self.stdout.read(&mut self.buffer) => Output::Stdout(read),
                    read = read_some(&mut self.stderr, &mut self.stderr_buffer) => Output::Stderr(read),
                }
            })
            .await
            .map_err(|_| {
                ProviderError::Timeout(format!(
                    "espeak-ng wrote nothing for {:?}",
                    self.idle_timeout
                ))
            })?;
            match read {
                Output::Stdout(Ok(0)) => return self.end().await.map(|()| None),
                Output::Stdout(Ok(n)) => {
                    if let Some(block) = self.decoder.push(&self.buffer[..n])? {
                        return Ok(Some(block));
                    }
                }
                Output::Stdout(Err(error)) => {
                    return Err(ProviderError::Protocol(format!(
                        "reading espeak-ng's output failed: {error}"
                    )));
                }
                Output::Stderr(Some(n)) => self.stderr_tail.push(&self.stderr_buffer[..n]),
                Output::Stderr(None) => self.stderr = None,
            }
        }
    }

    /// Stdout closed: collect the rest of stderr, reap the process, judge its exit.
    async fn end(&mut self) -> Result<(), ProviderError> {
        let idle_timeout = self.idle_timeout;
        let status = tokio::time::timeout(idle_timeout, async {
            // Checked first: `read_some` on a closed stderr never completes.
            while self.stderr.is_some() {
                match read_some(&mut self.stderr, &mut self.stderr_buffer).await {
                    Some(n) => self.stderr_tail.push(&self.stderr_buffer[..n]),
                    None => self.stderr = None,
                }
            }
            self.child.wait().await
        })
        .await
        .map_err(|_| {
            ProviderError::Timeout(format!(
                "espeak-ng did not exit within {idle_timeout:?} after closing its output"
            ))
        })?
        .map_err(|error| ProviderError::Protocol(format!("waiting for espeak-ng: {error}")))?;
        let stderr = self.stderr_tail.text();
        if !status.success() {
            return Err(match status.code() {
                Some(code) => ProviderError::Protocol(format!(
                    "espeak-ng exited with status {code}: {stderr}"
                )),
                None => ProviderError::Unavailable(format!("espeak-ng died ({status}): {stderr}")),
            });
        }
        self.decoder.finish().map_err(|error| {
            ProviderError::Protocol(format!("espeak-ng wrote no usable WAV ({error}): {stderr}"))
        })?;
        tracing::debug!(correlationId = %self.correlation_id, "espeak-ng finished");
        Ok(())
    }
}

enum Output {
    Stdout(std::io::Result<usize>),
    /// `None` at end of file or on a read error (stderr is only for messages).
    Stderr(Option<usize>),
}

/// Reads some stderr; never completes once stderr is closed (so `select!` ignores it).
async fn read_some(stderr: &mut Option<ChildStderr>, buffer: &mut [u8]) -> Option<usize> {
    match stderr {
        Some(stderr) => match stderr.read(buffer).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// Where espeak-ng's own installers put the program, for a machine where it is not in `PATH`
/// (the Windows installer does not add it; Homebrew's folder is not in a GUI app's `PATH`).
pub fn standard_programs() -> Vec<PathBuf> {
    if cfg!(windows) {
        let mut folders: Vec<PathBuf> = ["ProgramFiles", "ProgramW6432", "ProgramFiles(x86)"]
            .iter()
            .filter_map(std::env::var_os)
            .map(PathBuf::from)
            .collect();
        folders.push(PathBuf::from(r"C:\Program Files"));
        folders.dedup();
        folders
            .into_iter()
            .map(|folder| folder.join("eSpeak NG").join("espeak-ng.exe"))
            .collect()
    } else if cfg!(target_os = "macos") {
        ["/opt/homebrew/bin", "/usr/local/bin", "/opt/local/bin"]
            .iter()
            .map(|folder| Path::new(folder).join(EspeakTts::PROGRAM))
            .collect()
    } else {
        ["/usr/bin", "/usr/local/bin", "/snap/bin"]
            .iter()
            .map(|folder| Path::new(folder).join(EspeakTts::PROGRAM))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_program_is_found_in_path_or_where_installers_put_it() {
        let missing = Path::new("/nonexistent/espeak-ng");
        assert_eq!(
            EspeakTts::find_program(Some(missing)),
            None,
            "a configured program that does not run is not replaced by another"
        );
        if cfg!(target_os = "linux") {
            assert!(standard_programs().contains(&PathBuf::from("/usr/bin/espeak-ng")));
        }
        if Path::new("/usr/bin/espeak-ng").exists() {
            assert!(EspeakTts::find_program(None).is_some());
            assert_eq!(
                EspeakTts::find_program(Some(Path::new("/usr/bin/espeak-ng"))),
                Some(PathBuf::from("/usr/bin/espeak-ng"))
            );
        }
    }

    #[test]
    fn voice_follows_the_language_unless_configured() {
        let tts = EspeakTts::new(EspeakConfig::default()).unwrap();
        assert_eq!(tts.voice_for(Some("zh")), "cmn");
        assert_eq!(tts.voice_for(Some("zh-CN")), "cmn");
        assert_eq!(tts.voice_for(Some("ja")), "ja");
        assert_eq!(tts.voice_for(Some("ko-KR")), "ko");
        assert_eq!(tts.voice_for(Some("en_US")), "en");
        assert_eq!(tts.voice_for(Some("fr")), "fr", "espeak-ng has French");
        assert_eq!(
            tts.voice_for(Some("xx")),
            "en",
            "unknown languages fall back to en"
        );
        assert_eq!(tts.voice_for(Some("not a tag")), "en");
        assert_eq!(tts.voice_for(None), "en");
        let mapped = EspeakTts::new(EspeakConfig {
            voices: "zh=cmn-latn-pinyin,en=en-gb".parse().unwrap(),
            ..EspeakConfig::default()
        })
        .unwrap();
        assert_eq!(
            mapped.voice_for(Some("zh-CN")),
            "cmn-latn-pinyin",
            "the map first"
        );
        assert_eq!(mapped.voice_for(Some("en")), "en-gb");
        assert_eq!(
            mapped.voice_for(Some("ja")),
            "ja",
            "then the built-in voice"
        );
        let fixed = EspeakTts::new(EspeakConfig {
            voice: Some("en-us".into()),
            ..EspeakConfig::default()
        })
        .unwrap();
        assert_eq!(
            fixed.voice_for(Some("zh")),
            "en-us",
            "a configured voice wins"
        );
    }

    #[test]
    fn japanese_voices_skip_kanji_and_keep_kana() {
        assert_eq!(
            kana_only("ja", "今日は、みんな元気？"),
            Some((" は、みんな ？".to_owned(), 4)),
            "each run of kanji becomes one gap"
        );
        assert_eq!(
            kana_only("ja", "こんにちは、OBS 2 ですよ"),
            None,
            "no kanji: as is"
        );
        assert_eq!(kana_only("cmn", "今日は"), None, "Mandarin reads hanzi");
        assert_eq!(kana_only("en", "今日"), None);
        assert_eq!(
            kana_only("ja", "漢字"),
            Some((" ".to_owned(), 2)),
            "kanji alone leave nothing to say (the stream is then empty)"
        );
    }

    #[test]
    fn implausible_settings_are_refused() {
        for config in [
            EspeakConfig {
                rate_wpm: 5,
                ..EspeakConfig::default()
            },
            EspeakConfig {
                pitch: Some(150),
                ..EspeakConfig::default()
            },
            EspeakConfig {
                voice: Some("--stdout".into()),
                ..EspeakConfig::default()
            },
            EspeakConfig {
                voice: Some("en; rm -rf /".into()),
                ..EspeakConfig::default()
            },
            EspeakConfig {
                voices: "zh=--stdout".parse().unwrap(),
                ..EspeakConfig::default()
            },
        ] {
            assert!(
                matches!(
                    EspeakTts::new(config.clone()),
                    Err(ProviderError::Unavailable(_))
                ),
                "{config:?} is refused at construction"
            );
        }
    }
}
