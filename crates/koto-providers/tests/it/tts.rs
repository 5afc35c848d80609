//! TTS providers against real espeak-ng / Piper and loopback fakes of Edge and OpenAI speech.
//! This file: the local ones — real espeak-ng (`/usr/bin/espeak-ng`) and the mock, and the
//! helpers `tts_piper` (real Piper, both runtimes) shares.
//!
//! Process checks read `/proc`: a pid whose `/proc/<pid>` is gone was killed *and* reaped (a zombie
//! keeps its entry). Waits are bounded polling loops on tokio time; the bound only fails a test
//! when something is broken. Nothing asserts on speed; first-audio latencies are printed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use koto_core::ProviderError;
use koto_core::tts::{PcmBlock, PcmStream, TtsProvider, TtsRequest};
use koto_providers::audio::{PcmNormalizer, WavStreamDecoder};
use koto_providers::tts::espeak::{EspeakConfig, EspeakTts};
use koto_providers::tts::mock::{MockTts, MockTtsConfig};

/// Generous bound on any single wait; only reached when something is broken.
pub(crate) const GUARD: Duration = Duration::from_secs(60);

pub(crate) fn request(text: &str, lang: &str) -> TtsRequest {
    TtsRequest {
        text: text.to_owned(),
        lang: Some(lang.to_owned()),
        correlation_id: "live-001#7".to_owned(),
    }
}

/// A string no other test (or process) has in its command line.
pub(crate) fn unique_marker(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    format!(
        "{what}{}x{}x{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Everything a stream yields: the blocks, then the error that ended it (if any).
pub(crate) async fn drain(mut stream: PcmStream) -> (Vec<PcmBlock>, Option<ProviderError>) {
    let mut blocks = Vec::new();
    loop {
        let item = tokio::time::timeout(GUARD, stream.next())
            .await
            .expect("the stream must not hang");
        match item {
            Some(Ok(block)) => blocks.push(block),
            Some(Err(error)) => {
                let after = tokio::time::timeout(GUARD, stream.next())
                    .await
                    .expect("the stream must not hang");
                assert!(
                    after.is_none(),
                    "an error ends the stream; got {after:?} after it"
                );
                return (blocks, Some(error));
            }
            None => return (blocks, None),
        }
    }
}

pub(crate) async fn first_block(stream: &mut PcmStream) -> PcmBlock {
    tokio::time::timeout(GUARD, stream.next())
        .await
        .expect("the first block must come")
        .expect("the stream must not be empty")
        .expect("the first block must be audio")
}

pub(crate) fn samples_of(blocks: &[PcmBlock]) -> Vec<i16> {
    blocks
        .iter()
        .flat_map(|b| b.samples.iter().copied())
        .collect()
}

pub(crate) fn seconds(blocks: &[PcmBlock]) -> f64 {
    let rate = blocks.first().map_or(1, |b| b.sample_rate);
    samples_of(blocks).len() as f64 / f64::from(rate)
}

pub(crate) fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

/// Pids of live processes whose command line contains `marker`, with their parent pid.
pub(crate) fn processes_with(marker: &str) -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if !cmdline.contains(marker) {
                return None;
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid …`; comm may contain spaces, so split after the last ')'.
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Polls until `/proc/<pid>` is gone, i.e. the process was killed and reaped.
pub(crate) async fn wait_until_reaped(pid: u32) {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    tokio::time::timeout(GUARD, async {
        while proc_dir.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("process {pid} is still in /proc {GUARD:?} after its stream was dropped")
    });
}

fn espeak() -> EspeakTts {
    assert!(
        EspeakTts::detect(),
        "espeak-ng is needed for these tests; run scripts/test.sh, which installs it"
    );
    EspeakTts::new(EspeakConfig::default()).expect("the default config is valid")
}

// ---------------------------------------------------------------------------------------------
// espeak-ng

#[tokio::test]
async fn espeak_speaks_english_chinese_and_japanese_in_several_blocks() {
    let tts = espeak();
    let cases = [
        (
            "en",
            "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest.",
            18.0,
        ),
        (
            "zh",
            "今天天气很好，我们一起去公园散步吧，然后再去吃晚饭。",
            24.0,
        ),
        (
            "ja",
            "こんにちは、きょうはいいてんきですね。いっしょにこうえんへいきましょう。",
            34.0,
        ),
    ];
    for (lang, text, units) in cases {
        let started = tokio::time::Instant::now();
        let mut stream = tts.synthesize(request(text, lang));
        let first = first_block(&mut stream).await;
        let first_audio = started.elapsed();
        let (mut blocks, error) = drain(stream).await;
        blocks.insert(0, first);
        assert_eq!(error, None, "{lang}: espeak-ng speaks this text");
        assert!(
            blocks.iter().all(|b| b.sample_rate == 22_050),
            "{lang}: espeak-ng's native rate is 22 050 Hz"
        );
        assert!(
            blocks.len() > 1,
            "{lang}: a long sentence arrives in several blocks, not as one file"
        );
        let duration = seconds(&blocks);
        // Words (en) or syllables (zh/ja) at 0.1–0.6 s each: loose, but catches "empty" and "stuck".
        assert!(
            duration > units * 0.1 && duration < units * 0.6,
            "{lang}: {duration:.2} s is a plausible length for {units} words/syllables"
        );
        let level = rms(&samples_of(&blocks));
        assert!(
            level > 300.0,
            "{lang}: the audio is not silence (RMS {level:.0})"
        );
        eprintln!(
            "espeak-ng {lang}: first audio after {first_audio:?}, {} blocks, {duration:.2} s",
            blocks.len()
        );
    }
}

/// The samples `espeak-ng -v VOICE` itself makes for `text` at the provider's default speed.
fn espeak_samples_with_voice(voice: &str, text: &str) -> Vec<i16> {
    let output = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", "175", "--stdout", "--", text])
        .output()
        .expect("espeak-ng runs");
    assert!(output.status.success(), "espeak-ng -v {voice} works");
    let mut decoder = WavStreamDecoder::new();
    let block = decoder
        .push(&output.stdout)
        .expect("espeak-ng writes WAV")
        .expect("with samples");
    block.samples
}

/// espeak-ng says "Chinese letter" for every kanji: Japanese text is spoken by its kana alone, so
/// kanji cost no speech time, and kanji alone say nothing.
#[tokio::test]
async fn espeak_speaks_japanese_kana_and_skips_kanji() {
    let tts = espeak();
    let (kana_only, error) = drain(tts.synthesize(request("みんな、げんき？", "ja"))).await;
    assert_eq!(error, None);
    let (with_kanji, error) =
        drain(tts.synthesize(request("今日は漢字、みんな、げんき？", "ja"))).await;
    assert_eq!(error, None);
    let (kanji_seconds, kana_seconds) = (seconds(&with_kanji), seconds(&kana_only));
    // Four kanji read aloud would add ~4 × 0.8 s of "Chinese letter".
    assert!(
        kanji_seconds < kana_seconds + 1.2,
        "the kanji are skipped: {kanji_seconds:.2} s with them, {kana_seconds:.2} s without"
    );
    let (blocks, error) = drain(tts.synthesize(request("漢字", "ja"))).await;
    assert!(
        error.is_none() && blocks.is_empty(),
        "kanji alone: nothing to say"
    );
}

#[tokio::test]
async fn espeak_speaks_each_request_with_the_voice_of_its_language() {
    // espeak-ng is deterministic: the same voice and text give the same samples, so comparing
    // with espeak-ng run by hand shows which voice the provider chose.
    let tts = espeak();
    let text = "你好，今天我们聊什么？";
    let spoken = |lang: &'static str| {
        let tts = tts.clone();
        async move {
            let (blocks, error) = drain(tts.synthesize(request(text, lang))).await;
            assert_eq!(error, None, "{lang}: espeak-ng speaks");
            samples_of(&blocks)
        }
    };
    let as_zh = spoken("zh").await;
    assert_eq!(tts.voice_for(Some("zh")), "cmn");
    assert_eq!(
        as_zh,
        espeak_samples_with_voice("cmn", text),
        "a zh request is synthesised with espeak-ng's Mandarin voice"
    );
    assert_ne!(
        as_zh,
        espeak_samples_with_voice("en", text),
        "and not with the English one (the voice makes an audible difference)"
    );
    let kana = "こんにちは";
    let (blocks, error) = drain(tts.synthesize(request(kana, "ja"))).await;
    assert_eq!(error, None);
    assert_eq!(
        samples_of(&blocks),
        espeak_samples_with_voice("ja", kana),
        "a ja request uses espeak-ng's Japanese voice"
    );
    let mapped = EspeakTts::new(EspeakConfig {
        voices: "zh=cmn-latn-pinyin".parse().expect("a valid list"),
        ..EspeakConfig::default()
    })
    .expect("valid config");
    let (blocks, error) = drain(mapped.synthesize(request(text, "zh-CN"))).await;
    assert_eq!(error, None);
    assert_eq!(
        samples_of(&blocks),
        espeak_samples_with_voice("cmn-latn-pinyin", text),
        "TTS_VOICES picks the voice for its language"
    );
}

#[tokio::test]
async fn espeak_output_normalises_to_24k_chunks_with_moving_mouth() {
    let (blocks, error) = drain(espeak().synthesize(request(
        "Hello there. This sentence should make the mouth move.",
        "en",
    )))
    .await;
    assert_eq!(error, None);
    let mut normalizer = PcmNormalizer::new(24_000, 20);
    let mut chunks = Vec::new();
    for block in &blocks {
        chunks.extend(normalizer.push(block));
    }
    chunks.extend(normalizer.finish());
    let input_seconds = seconds(&blocks);
    let output_samples: usize = chunks.iter().map(|c| c.samples.len()).sum();
    assert!(
        (output_samples as f64 - input_seconds * 24_000.0).abs() <= 480.0,
        "resampling keeps the duration within one chunk"
    );
    let (_, whole) = chunks.split_last().expect("some chunks");
    assert!(
        whole.iter().all(|c| c.samples.len() == 480),
        "20 ms chunks at 24 kHz are 480 samples"
    );
    assert!(
        chunks.iter().any(|c| c.mouth_open > 0.6),
        "speech opens the mouth wide somewhere"
    );
    assert!(
        chunks.iter().any(|c| c.mouth_open == 0.0),
        "the pause between sentences closes it"
    );
}

#[tokio::test]
async fn dropping_an_espeak_stream_kills_and_reaps_the_process() {
    let tts = espeak();
    let marker = unique_marker("stopmarker");
    // Long enough (~40 s of audio, far more than a pipe buffer) that espeak-ng is still running,
    // blocked on its full stdout pipe, when the first block arrives.
    let text = format!(
        "{marker}. {}",
        "This is a very long sentence that goes on. ".repeat(60)
    );
    let mut stream = tts.synthesize(request(&text, "en"));
    first_block(&mut stream).await;
    let ours: Vec<u32> = processes_with(&marker)
        .into_iter()
        .filter(|&(_, ppid)| ppid == std::process::id())
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "exactly one espeak-ng child is speaking this text: {ours:?}"
    );
    drop(stream);
    wait_until_reaped(ours[0]).await;
    assert!(
        processes_with(&marker).is_empty(),
        "no process with this text survives anywhere (no orphan)"
    );
}

#[tokio::test]
async fn a_missing_espeak_binary_is_unavailable_with_the_install_hint() {
    let tts = EspeakTts::new(EspeakConfig {
        program: PathBuf::from("/nonexistent/espeak-ng"),
        ..EspeakConfig::default()
    })
    .expect("the path is only checked when used");
    assert!(!EspeakTts::detect_program(Path::new(
        "/nonexistent/espeak-ng"
    )));
    let (blocks, error) = drain(tts.synthesize(request("hello", "en"))).await;
    assert!(blocks.is_empty());
    match error {
        Some(ProviderError::Unavailable(message)) => assert!(
            message.contains("install the espeak-ng package"),
            "the message says what to install: {message}"
        ),
        other => panic!("a missing binary is Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_voice_fails_with_espeaks_own_message() {
    let tts = EspeakTts::new(EspeakConfig {
        voice: Some("nosuchvoice".into()),
        ..EspeakConfig::default()
    })
    .expect("plausible voice name");
    let (blocks, error) = drain(tts.synthesize(request("hello", "en"))).await;
    assert!(blocks.is_empty(), "no audio from a failed start");
    match error {
        Some(ProviderError::Protocol(message)) => assert!(
            message.contains("does not exist"),
            "espeak-ng's stderr is in the error: {message}"
        ),
        other => panic!("a non-zero exit is a Protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn shell_metacharacters_are_spoken_not_executed() {
    let dir = std::env::temp_dir().join(unique_marker("kotodama-espeak-"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let touched = dir.join("touched");
    let text = format!(
        "-v xx \"quoted\" 'single' $(touch {p}) `touch {p}`; touch {p} && touch {p} | cat > {p} <<EOF \\ %s \0 nul",
        p = touched.display()
    );
    let (blocks, error) = drain(espeak().synthesize(request(&text, "en"))).await;
    assert_eq!(
        error, None,
        "the text, leading dash and NUL included, is just text"
    );
    assert!(!blocks.is_empty(), "and it is spoken");
    assert!(
        !touched.exists(),
        "no shell ever saw the text, so nothing was executed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn empty_or_punctuation_only_text_does_not_fail() {
    let tts = espeak();
    for text in ["", "   ", "\n"] {
        let (blocks, error) = drain(tts.synthesize(request(text, "en"))).await;
        assert!(
            blocks.is_empty() && error.is_none(),
            "{text:?}: nothing to say, no process, no error"
        );
    }
    let (_, error) = drain(tts.synthesize(request("。…！", "zh"))).await;
    assert_eq!(error, None, "punctuation alone is not an error");
}

// ---------------------------------------------------------------------------------------------
// Mock

#[tokio::test]
async fn mock_is_deterministic_and_as_long_as_its_script() {
    let tts = MockTts::default();
    let text = "你好，世界。Hello, world!";
    let (first, error) = drain(tts.synthesize(request(text, "zh"))).await;
    assert_eq!(error, None);
    let (second, _) = drain(tts.synthesize(request(text, "zh"))).await;
    assert_eq!(first, second, "same text, same audio");
    let expected = tts.duration_of(text);
    assert_eq!(
        expected,
        Duration::from_millis(4 * 180 + 150 + 300 + 5 * 65 + 150 + 5 * 65 + 300),
        "CJK syllables, Latin letters and pauses add up"
    );
    assert_eq!(
        samples_of(&first).len() as u128,
        expected.as_millis() * 24,
        "the audio is exactly that long at 24 kHz"
    );
    assert!(first.len() > 1, "several blocks");
    let mut normalizer = PcmNormalizer::default();
    let mut mouth: Vec<f32> = first
        .iter()
        .flat_map(|b| normalizer.push(b))
        .map(|c| c.mouth_open)
        .collect();
    mouth.extend(normalizer.finish().iter().map(|c| c.mouth_open));
    let openings = mouth
        .windows(2)
        .filter(|w| w[0] < 0.5 && w[1] >= 0.5)
        .count();
    assert!(
        openings >= 6,
        "the mouth opens again for (nearly) every one of the 8 syllables: {openings}"
    );
    assert_eq!(
        mouth.last().copied(),
        Some(0.0),
        "and is shut after the final pause"
    );
}

#[tokio::test(start_paused = true)]
async fn mock_delays_run_on_tokio_time() {
    let tts = MockTts::new(MockTtsConfig {
        first_block_delay: Duration::from_millis(250),
        block_delay: Duration::from_millis(40),
        ..MockTtsConfig::default()
    });
    let started = tokio::time::Instant::now();
    let (blocks, error) = drain(tts.synthesize(request("こんにちは", "ja"))).await;
    assert_eq!(error, None);
    // 5 × 180 ms = 900 ms of audio = 9 blocks of 100 ms.
    assert_eq!(blocks.len(), 9);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(250 + 8 * 40),
        "one first delay plus one delay per later block, on the paused clock"
    );
}

/// The espeak-ng process crashing mid-utterance (killed by a signal after part of its audio):
/// the audio it made is delivered, then an error that says it died, never a silent end that
/// would pass a cut sentence off as whole.
#[tokio::test]
async fn an_espeak_process_killed_mid_utterance_is_an_error_after_its_audio() {
    assert!(EspeakTts::detect(), "espeak-ng is needed for this test");
    let dir = std::env::temp_dir().join(format!("koto-espeak-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let crashing = dir.join("espeak-ng");
    std::fs::write(
        &crashing,
        "#!/bin/sh\nespeak-ng \"$@\" | head -c 24000\nkill -9 $$\n",
    )
    .expect("script written");
    let mut permissions = std::fs::metadata(&crashing).expect("script").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&crashing, permissions).expect("script executable");
    let tts = EspeakTts::new(EspeakConfig {
        program: crashing,
        ..EspeakConfig::default()
    })
    .expect("valid config");
    let long = "This sentence is long enough that espeak makes far more audio than the crash lets through, so the cut is in the middle of it.";
    let (blocks, error) = drain(tts.synthesize(request(long, "en"))).await;
    assert!(
        !blocks.is_empty(),
        "the audio made before the crash is delivered"
    );
    match error {
        Some(ProviderError::Protocol(message) | ProviderError::Unavailable(message)) => {
            assert!(
                message.contains("died") && message.contains("SIGKILL"),
                "the error says the process died: {message}"
            )
        }
        other => panic!("a crashed espeak-ng is an error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
