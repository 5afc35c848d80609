//! The speech half of `kotodama bench`: first audio at an external `/ws/live` client, and STOPs
//! at random moments (STOP → STOP_ACK, STOP → last chunk seen, chunks after STOP_ACK).
//!
//! First-audio overhead is measured against the two things Kotodama cannot make faster, each
//! measured on its own: the LLM's time to the first segment (the OpenAI client + segmenter
//! against the same fake) and the TTS's time to its first chunk (the same voice, called directly).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use koto_core::llm::{ChatMessage, LlmProvider, LlmRequest, Role};
use koto_core::segmenter::{Segmenter, SegmenterConfig};
use koto_core::tts::TtsRequest;
use koto_providers::llm::openai::{OpenAiConfig, OpenAiLlm};
use koto_providers::tts::voice::build_voice;
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream, split_tokens};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Percentiles, percentiles};

/// Long enough that every STOP lands mid-reply.
const REPLY: &str = "Hello there, my friend! Tonight we are going to play something fun together. \
First we warm up with a quick round, then we try the hard mode that chat asked for. \
Stay with me, because the best part comes at the very end of the stream.";

#[derive(Debug, Serialize)]
pub struct SpeechScenario {
    pub provider: String,
    pub trials: usize,
    pub llm_first_segment_ms: Percentiles,
    pub tts_first_chunk_ms: Percentiles,
    pub first_audio_ms: Percentiles,
    pub first_audio_overhead_ms: Percentiles,
    pub stop_to_ack_ms: Percentiles,
    pub stop_to_last_chunk_ms: Percentiles,
    pub stops_before_first_audio: usize,
    pub chunks_after_stop_ack: u64,
    /// The OpenAI client asked directly: request → end of the reply stream.
    pub llm_complete_direct_ms: Percentiles,
    /// Through Kotodama with speech on: request → the `eos` text delta at the SSE client.
    pub llm_complete_ms: Percentiles,
    /// `llm_complete_ms` − the direct p50: what Kotodama adds to the text's end (CONTRACTS §1:
    /// the text runs at the LLM's pace, not the voice's).
    pub llm_complete_overhead_ms: Percentiles,
}

pub struct SpeechArgs {
    pub trials: usize,
    pub first_token: Duration,
    pub token_gap: Duration,
}

pub async fn run(provider: &str, args: &SpeechArgs) -> anyhow::Result<SpeechScenario> {
    let reply = FakeStream::new(split_tokens(REPLY))
        .with_first_token_delay(args.first_token)
        .with_token_gap(args.token_gap);
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Stream(reply))).await;

    let dir = std::env::temp_dir().join(format!(
        "kotodama-bench-speech-{}-{provider}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let mut raw = super::bench_config(&dir, &fake.base_url());
    raw.set("tts_provider", provider.to_owned());
    let config = raw.build()?;
    let tts_settings = config.tts.clone();
    let server = crate::start(config).await?;

    let (llm_first_segment, complete_direct) = llm_direct_ms(&fake.base_url(), 30).await?;
    let first_segment = first_segment_text();
    let tts_first_chunk =
        tts_first_chunk_ms(&tts_settings, &first_segment, 30, Duration::ZERO).await?;
    let baseline =
        percentiles(llm_first_segment.clone()).p50 + percentiles(tts_first_chunk.clone()).p50;

    let token = server.token.expose().to_owned();
    let ws_url = format!(
        "{}/ws/live?token={token}&session=bench-speech",
        server.base_url().replace("http://", "ws://")
    );
    let (mut live, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .context("connecting /ws/live")?;
    let client = reqwest::Client::new();
    let chat_url = format!("{}/chat/stream", server.base_url());

    let mut first_audio = Vec::new();
    let mut stop_to_ack = Vec::new();
    let mut stop_to_last_chunk = Vec::new();
    let mut stops_before_first_audio = 0;
    let mut chunks_after_ack = 0u64;
    for trial in 0..args.trials {
        let stop_after = Duration::from_millis(rand::rng().random_range(0..800));
        let started = Instant::now();
        let request = client
            .post(&chat_url)
            .bearer_auth(&token)
            .json(&json!({"sessionId": "bench-speech", "content": format!("trial {trial}")}));
        let sse = tokio::spawn(async move { request.send().await?.bytes().await });
        let trial = run_trial(&mut live, started, stop_after).await?;
        sse.await??;
        match trial.first_audio {
            Some(at) => first_audio.push(ms(at)),
            None => stops_before_first_audio += 1,
        }
        stop_to_ack.push(ms(trial.stop_to_ack));
        stop_to_last_chunk.push(trial.stop_to_last_chunk.map_or(0.0, ms));
        chunks_after_ack += trial.chunks_after_ack;
    }
    let direct_p50 = percentiles(complete_direct.clone()).p50;
    let mut complete = Vec::new();
    for trial in 0..args.trials.clamp(1, 100) {
        complete.push(llm_complete_trial(&client, &server.base_url(), &token, trial).await?);
    }
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(SpeechScenario {
        llm_complete_direct_ms: percentiles(complete_direct),
        llm_complete_overhead_ms: percentiles(complete.iter().map(|at| at - direct_p50).collect()),
        llm_complete_ms: percentiles(complete),
        provider: provider.to_owned(),
        trials: args.trials,
        llm_first_segment_ms: percentiles(llm_first_segment),
        tts_first_chunk_ms: percentiles(tts_first_chunk),
        first_audio_overhead_ms: percentiles(first_audio.iter().map(|at| at - baseline).collect()),
        first_audio_ms: percentiles(first_audio),
        stop_to_ack_ms: percentiles(stop_to_ack),
        stop_to_last_chunk_ms: percentiles(stop_to_last_chunk),
        stops_before_first_audio,
        chunks_after_stop_ack: chunks_after_ack,
    })
}

struct Trial {
    first_audio: Option<Duration>,
    stop_to_ack: Duration,
    /// From the STOP to the last chunk of the turn the client saw, if one came after the STOP.
    stop_to_last_chunk: Option<Duration>,
    chunks_after_ack: u64,
}

pub(super) type Live =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn run_trial(
    live: &mut Live,
    started: Instant,
    stop_after: Duration,
) -> anyhow::Result<Trial> {
    let stop_at = tokio::time::Instant::from_std(started + stop_after);
    let mut turn: Option<u64> = None;
    let mut first_audio = None;
    let mut stopped_at: Option<Instant> = None;
    let mut last_chunk_after_stop = None;
    let stop_to_ack = loop {
        let frame = tokio::select! {
            _ = tokio::time::sleep_until(stop_at), if stopped_at.is_none() => {
                let stop = json!({"type":"CONTROL","action":"STOP","sessionId":"bench-speech","reason":"bench"});
                stopped_at = Some(Instant::now());
                live.send(Message::Text(stop.to_string().into())).await?;
                continue;
            }
            frame = next_json(live, Duration::from_secs(30)) => frame.context("the live socket went quiet")?,
        };
        match (frame["type"].as_str(), frame["action"].as_str()) {
            (Some("USER_INPUT"), _) => turn = frame["turn"].as_u64(),
            (Some("SPEECH_CHUNK"), _) if turn.is_some() && frame["turn"].as_u64() == turn => {
                first_audio.get_or_insert_with(|| started.elapsed());
                if let Some(stopped) = stopped_at {
                    last_chunk_after_stop = Some(stopped.elapsed());
                }
            }
            (Some("CONTROL"), Some("STOP_ACK")) if stopped_at.is_some() => {
                break stopped_at.map(|at| at.elapsed());
            }
            _ => {}
        }
    };
    // Anything of the stopped turn arriving now would be a leak; wait a little to catch it.
    let mut chunks_after_ack = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(150);
    while let Ok(frame) =
        tokio::time::timeout_at(deadline, next_json(live, Duration::from_secs(1))).await
    {
        let Some(frame) = frame else { break };
        if frame["type"] == "SPEECH_CHUNK" && turn.is_some() && frame["turn"].as_u64() == turn {
            chunks_after_ack += 1;
        }
    }
    Ok(Trial {
        first_audio,
        stop_to_ack: stop_to_ack.context("no STOP_ACK")?,
        stop_to_last_chunk: last_chunk_after_stop,
        chunks_after_ack,
    })
}

pub(super) async fn next_json(live: &mut Live, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, live.next()).await.ok()??.ok()? {
            Message::Text(text) => return serde_json::from_str(&text).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

fn first_segment_text() -> String {
    first_segment_text_of(REPLY)
}

/// The first segment the segmenter cuts from `reply` streamed token by token.
pub(super) fn first_segment_text_of(reply: &str) -> String {
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    for token in split_tokens(reply) {
        if let Some(segment) = segmenter.push(&token).into_iter().next() {
            return segment.speak;
        }
    }
    reply.to_owned()
}

/// The OpenAI client and the segmenter against the fake, without Kotodama around them: request
/// → first segment, and request → end of the reply stream, per call.
pub(super) async fn llm_direct_ms(
    base_url: &str,
    n: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let llm = OpenAiLlm::new(OpenAiConfig {
        base_url: base_url.to_owned(),
        model: "bench".into(),
        ..OpenAiConfig::default()
    })?;
    let (mut first_segment, mut complete) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let started = Instant::now();
        let mut deltas = llm.stream_chat(LlmRequest {
            messages: vec![ChatMessage::new(Role::User, "baseline")],
            lang: None,
            correlation_id: "bench#0".into(),
        });
        let mut segmenter = Segmenter::new(SegmenterConfig::default());
        let mut at = None;
        while let Some(delta) = deltas.next().await {
            if let koto_core::llm::LlmDelta::Text(text) = delta?
                && at.is_none()
                && !segmenter.push(&text).is_empty()
            {
                at = Some(ms(started.elapsed()));
            }
        }
        complete.push(ms(started.elapsed()));
        first_segment.push(at.context("the reply produced no segment")?);
    }
    Ok((first_segment, complete))
}

/// One spoken reply through Kotodama: request → the `eos` delta at the SSE client (the whole
/// text is out while the voice is still speaking). Then STOP, so the bench does not wait for the
/// audio to play out.
async fn llm_complete_trial(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    trial: usize,
) -> anyhow::Result<f64> {
    let session = "bench-llm-complete";
    let started = Instant::now();
    let response = client
        .post(format!("{base_url}/chat/stream"))
        .bearer_auth(token)
        .json(&json!({"sessionId": session, "content": format!("complete {trial}")}))
        .send()
        .await?;
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    let mut at = None;
    while let Some(bytes) = body.next().await {
        seen.extend_from_slice(&bytes?);
        if seen.windows(10).any(|window| window == b"\"eos\":true") {
            at = Some(ms(started.elapsed()));
            break;
        }
    }
    let at = at.context("the reply ended without eos")?;
    client
        .post(format!("{base_url}/control/stop"))
        .bearer_auth(token)
        .json(&json!({"sessionId": session}))
        .send()
        .await?
        .error_for_status()?;
    while let Some(bytes) = body.next().await {
        bytes?;
    }
    Ok(at)
}

/// The configured voice called directly: time to its first chunk of the first segment, each
/// call `rest` after the last one ended (a turn meets a voice that has been idle while the
/// previous reply played; back to back, a neural voice's weights are still in the CPU's caches).
pub(super) async fn tts_first_chunk_ms(
    settings: &koto_providers::tts::voice::TtsSettings,
    text: &str,
    n: usize,
    rest: Duration,
) -> anyhow::Result<Vec<f64>> {
    let voice = build_voice(settings).await?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        tokio::time::sleep(rest).await;
        let started = Instant::now();
        let mut chunks = voice.speak(TtsRequest {
            text: text.to_owned(),
            lang: None,
            correlation_id: "bench#0".into(),
        });
        chunks
            .next()
            .await
            .context("the voice produced nothing")??;
        samples.push(ms(started.elapsed()));
        // Listen to the end: a dropped stream is a STOP, and a voice may restart after one
        // (the Python Piper does), which would land in the next sample.
        while let Some(chunk) = chunks.next().await {
            chunk?;
        }
    }
    Ok(samples)
}

pub(super) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
