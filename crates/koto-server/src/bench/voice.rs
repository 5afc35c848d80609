//! Voice to voice in `kotodama bench`: the streamer stops speaking → the co-host's first audio
//! at a `/ws/live` client, through the real microphone pipeline (VAD, utterance, ASR, turn,
//! LLM, TTS, relay), fed in real time with espeak-ng speech at 16 kHz.
//!
//! Each trial after the first speaks while the co-host is still answering the one before, with
//! voice barge-in on: the onset pauses the co-host (measured: first voiced sample fed → the
//! relay's `PAUSE` at the client), the ASR confirms, the STOP goes through the one path, and the
//! utterance is the next turn. Overhead is voice-to-voice minus what Kotodama cannot make
//! faster, each measured on its own: the VAD's hangover (configured), the ASR on the same
//! utterance (called directly), the LLM's first segment and the TTS's first chunk.
//! The overhead per turn takes that turn's own TTS first chunk instead (its `done.stats`, from
//! `GET /voice`), so espeak-ng's start-up spread is not counted as Kotodama's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use koto_core::asr::{AsrEvent, AsrRequest};
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream, split_tokens};
use koto_voice::VoiceInput;
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::speech::{first_segment_text_of, llm_direct_ms, ms, tts_first_chunk_ms};
use super::{Percentiles, percentiles};
use crate::voice::MicSource;

const REPLY: &str = "Good question! The boss is next, right after this corridor. It has two \
phases, and the second one hits much harder, so keep your potions ready. Chat says the left \
door is a trap, and for once chat is right. Let us go slowly and see what happens.";
const UTTERANCE: &str = "Can we try the hard mode tonight?";
const HANGOVER_MS: u64 = 480;
/// Louder than this (s16) counts as voiced when finding the speech's edges in the clip.
const VOICED: i16 = 600;

#[derive(Debug, Serialize)]
pub struct VoiceScenario {
    pub asr: String,
    pub trials: usize,
    pub vad_hangover_ms: u64,
    pub asr_direct_ms: Percentiles,
    pub llm_first_segment_ms: Percentiles,
    pub tts_first_chunk_ms: Percentiles,
    /// End of the user's speech → first audio of the answer at a `/ws/live` client.
    pub voice_to_voice_ms: Percentiles,
    /// `voice_to_voice_ms` − (hangover + the three p50s above).
    pub overhead_ms: Percentiles,
    /// `voice_to_voice_ms` − (hangover + ASR p50 + LLM p50 + that turn's own TTS first chunk),
    /// over the trials whose turn ended before the run did.
    pub overhead_per_turn_ms: Percentiles,
    pub per_turn_trials: usize,
    /// Its two halves at the client: end of speech → the turn's `USER_INPUT` (the VAD's
    /// hangover, the ASR, the submit) and `USER_INPUT` → first audio (the LLM, the TTS, the
    /// relay); each minus its own baseline says which half the overhead is in.
    pub end_to_turn_ms: Percentiles,
    pub end_to_turn_overhead_ms: Percentiles,
    pub turn_to_audio_ms: Percentiles,
    pub turn_to_audio_overhead_ms: Percentiles,
    /// `turn_to_audio_ms` minus the LLM's p50 and that turn's own TTS first chunk
    /// (`done.stats.tts_first_chunk_ms`, read from `GET /voice`): espeak's spread, turn by
    /// turn, is not Kotodama's.
    pub turn_to_audio_per_turn_overhead_ms: Percentiles,
    /// Voice onset while the co-host speaks → `PAUSE` at the client (barge-in trials only).
    pub onset_to_pause_ms: Percentiles,
    pub barge_in_trials: usize,
}

pub struct VoiceArgs {
    pub trials: usize,
    /// An OpenAI-compatible ASR (`…/v1`, e.g. scripts/asr-server.sh); `None` = the mock ASR.
    pub asr_url: Option<String>,
    /// `ECHO_CANCEL` for the run (`aec`, `gate`, `headphones`).
    pub echo: String,
    pub first_token: Duration,
    pub token_gap: Duration,
}

pub async fn run(args: &VoiceArgs) -> anyhow::Result<VoiceScenario> {
    let reply = FakeStream::new(split_tokens(REPLY))
        .with_first_token_delay(args.first_token)
        .with_token_gap(args.token_gap);
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Stream(reply))).await;
    let dir = std::env::temp_dir().join(format!("kotodama-bench-voice-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut raw = super::bench_config(&dir, &fake.base_url());
    raw.set("tts_provider", "espeak");
    raw.set("mic_mode", "vad");
    raw.set("mic_session", "bench-voice");
    raw.set("voice_barge_in", "true");
    raw.set("echo_cancel", args.echo.clone());
    raw.set("vad_hangover_ms", HANGOVER_MS.to_string());
    match &args.asr_url {
        Some(url) => {
            raw.set("asr_provider", "openai");
            raw.set("asr_base_url", url.clone());
        }
        None => {
            raw.set("asr_provider", "mock");
            raw.set("asr_mock_text", UTTERANCE.to_owned());
        }
    }
    let config = raw.build()?;
    let asr = crate::providers::build_asr(&config.asr)?.context("the ASR is configured")?;
    let asr_name = asr.name().to_owned();
    let tts_settings = config.tts.clone();

    let clip = espeak_16k(UTTERANCE)?;
    let onset = clip
        .iter()
        .position(|s| s.abs() > VOICED)
        .context("a silent clip")?;
    let end = clip
        .iter()
        .rposition(|s| s.abs() > VOICED)
        .context("a silent clip")?;
    // The utterance as the VAD hands it over: the speech, a little before, the hangover after.
    let utterance: Arc<[i16]> = clip.clone().into();
    let mut asr_direct = Vec::new();
    for _ in 0..5.min(args.trials.max(1)) {
        let started = Instant::now();
        let mut events = asr.transcribe(AsrRequest {
            samples: Arc::clone(&utterance),
            language: Some("en".into()),
            correlation_id: "bench#asr".into(),
        });
        while let Some(event) = events.next().await {
            if matches!(event?, AsrEvent::Final(_)) {
                break;
            }
        }
        asr_direct.push(ms(started.elapsed()));
    }
    let (llm_first_segment, _) = llm_direct_ms(&fake.base_url(), 20).await?;
    let tts_first_chunk = tts_first_chunk_ms(
        &tts_settings,
        &first_segment_text_of(REPLY),
        20,
        Duration::ZERO,
    )
    .await?;
    let hearing_baseline = HANGOVER_MS as f64 + percentiles(asr_direct.clone()).p50;
    let answer_baseline =
        percentiles(llm_first_segment.clone()).p50 + percentiles(tts_first_chunk.clone()).p50;
    let baseline = hearing_baseline + answer_baseline;

    let server = crate::start_with_voice(config, None, None, MicSource::Frames).await?;
    let mic = server.voice.mic_sender().context("the mic pipeline runs")?;
    let token = server.token.expose().to_owned();
    let url = format!(
        "{}/ws/live?token={token}&session=bench-voice&audio=0",
        server.base_url().replace("http://", "ws://")
    );
    let (mut live, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("connecting /ws/live")?;

    let mut voice_to_voice = Vec::new();
    let mut end_to_turn = Vec::new();
    let mut turn_to_audio = Vec::new();
    let mut onset_to_pause = Vec::new();
    let mut last_turn: Option<u64> = None;
    // (turn, USER_INPUT → audio, voice to voice) per trial.
    let mut answered: Vec<(Option<u64>, f64, f64)> = Vec::new();
    let mut tts_in_turn = std::collections::HashMap::new();
    let http = reqwest::Client::new();
    let voice_url = format!("{}/voice", server.base_url());
    for trial in 0..args.trials {
        // 300 ms of room tone first, then the question, then silence until the answer speaks.
        let mut audio = vec![0i16; 4_800];
        let lead = audio.len();
        audio.extend_from_slice(&clip);
        audio.extend(std::iter::repeat_n(0i16, 16_000 * 3));
        let (onset_at, end_at) = (lead + onset, lead + end);

        let feeding = {
            let mic = mic.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_millis(10));
                let (mut onset_fed, mut end_fed) = (None, None);
                for (i, block) in audio.chunks(160).enumerate() {
                    ticks.tick().await;
                    if mic.send(VoiceInput::Mic(block.to_vec())).await.is_err() {
                        break;
                    }
                    let fed_through = (i + 1) * 160;
                    if onset_fed.is_none() && fed_through > onset_at {
                        onset_fed = Some(Instant::now());
                    }
                    if end_fed.is_none() && fed_through > end_at {
                        end_fed = Some(Instant::now());
                    }
                }
                (onset_fed, end_fed)
            })
        };
        let mut paused_at = None;
        let mut new_turn = None;
        let mut turn_seen_at = None;
        let first_audio = loop {
            let frame = next_json(&mut live, Duration::from_secs(30))
                .await
                .with_context(|| format!("voice trial {trial}: no answer"))?;
            match (frame["type"].as_str(), frame["action"].as_str()) {
                (Some("CONTROL"), Some("PAUSE")) if paused_at.is_none() => {
                    paused_at = Some(Instant::now())
                }
                (Some("USER_INPUT"), _) => {
                    let turn = frame["turn"].as_u64();
                    if turn != last_turn {
                        new_turn = turn;
                        turn_seen_at = Some(Instant::now());
                    }
                }
                (Some("SPEECH_CHUNK"), _)
                    if new_turn.is_some() && frame["turn"].as_u64() == new_turn =>
                {
                    break Instant::now();
                }
                _ => {}
            }
        };
        let (onset_fed, end_fed) = feeding.await?;
        let end_fed = end_fed.context("the clip was fed")?;
        voice_to_voice.push(ms(first_audio.saturating_duration_since(end_fed)));
        let turn_seen = turn_seen_at.context("the answer came without its USER_INPUT")?;
        end_to_turn.push(ms(turn_seen.saturating_duration_since(end_fed)));
        turn_to_audio.push(ms(first_audio.saturating_duration_since(turn_seen)));
        answered.push((
            new_turn,
            ms(first_audio.saturating_duration_since(turn_seen)),
            ms(first_audio.saturating_duration_since(end_fed)),
        ));
        // The turn before was stopped by this one: its done.stats (which no SSE client saw)
        // are in the mic's status now.
        if let Some((turn, tts_ms)) = last_voice_turn_tts(&http, &voice_url, &token).await?
            && Some(turn) == last_turn
        {
            tts_in_turn.insert(turn, tts_ms);
        }
        if let (Some(paused), Some(onset), Some(_)) = (paused_at, onset_fed, last_turn) {
            onset_to_pause.push(ms(paused.saturating_duration_since(onset)));
        }
        last_turn = new_turn;
    }
    let barge_in_trials = onset_to_pause.len();
    let llm_p50 = percentiles(llm_first_segment.clone()).p50;
    // The last trial's turn is still speaking: its stats are not out, so it has no figure.
    let own_tts = |turn: &Option<u64>| tts_in_turn.get(&(*turn)?).copied();
    let per_turn: Vec<f64> = answered
        .iter()
        .filter_map(|(turn, at, _)| Some(at - llm_p50 - own_tts(turn)?))
        .collect();
    let per_turn_total: Vec<f64> = answered
        .iter()
        .filter_map(|(turn, _, v2v)| Some(v2v - hearing_baseline - llm_p50 - own_tts(turn)?))
        .collect();
    drop(live);
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(VoiceScenario {
        asr: asr_name,
        trials: args.trials,
        vad_hangover_ms: HANGOVER_MS,
        asr_direct_ms: percentiles(asr_direct),
        llm_first_segment_ms: percentiles(llm_first_segment),
        tts_first_chunk_ms: percentiles(tts_first_chunk),
        overhead_ms: percentiles(voice_to_voice.iter().map(|v| v - baseline).collect()),
        end_to_turn_overhead_ms: percentiles(
            end_to_turn.iter().map(|v| v - hearing_baseline).collect(),
        ),
        end_to_turn_ms: percentiles(end_to_turn),
        turn_to_audio_overhead_ms: percentiles(
            turn_to_audio.iter().map(|v| v - answer_baseline).collect(),
        ),
        turn_to_audio_ms: percentiles(turn_to_audio),
        turn_to_audio_per_turn_overhead_ms: percentiles(per_turn),
        per_turn_trials: per_turn_total.len(),
        overhead_per_turn_ms: percentiles(per_turn_total),
        voice_to_voice_ms: percentiles(voice_to_voice),
        onset_to_pause_ms: percentiles(onset_to_pause),
        barge_in_trials,
    })
}

/// The mic's last ended turn and its first clause's synthesis time, from `GET /voice`.
async fn last_voice_turn_tts(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<Option<(u64, f64)>> {
    let status: Value = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .context("GET /voice")?
        .json()
        .await
        .context("GET /voice is JSON")?;
    let last = &status["lastTurn"];
    Ok(last["turn"]
        .as_u64()
        .zip(last["stats"]["tts_first_chunk_ms"].as_f64()))
}

async fn next_json(
    live: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    wait: Duration,
) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, live.next()).await.ok()??.ok()? {
            Message::Text(text) => return serde_json::from_str(&text).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// `text` spoken by espeak-ng, resampled to 16 kHz (what the mic pipeline takes).
fn espeak_16k(text: &str) -> anyhow::Result<Vec<i16>> {
    let output = std::process::Command::new("espeak-ng")
        .args(["-v", "en", "--stdout", text])
        .output()
        .context("the voice benchmark speaks its question with espeak-ng")?;
    let mut decoder = koto_providers::audio::WavStreamDecoder::new();
    let block = decoder
        .push(&output.stdout)?
        .context("espeak-ng gave no whole WAV")?;
    let mut resampler =
        koto_providers::audio::resample::StreamResampler::new(block.sample_rate, 16_000)?;
    let mut samples = resampler.push(&block.samples);
    samples.extend(resampler.finish());
    Ok(samples)
}
