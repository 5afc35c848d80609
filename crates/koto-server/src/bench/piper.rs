//! The Piper half of `kotodama bench` (#17): the peer comparison's script — a 41-word,
//! six-sentence reply from a fake LLM (first token at D, 5 ms a word) spoken by the Piper joe
//! voice — for a number of turns, some of them barged in with a STOP.
//!
//! Per runtime (`onnx` in process, `python` child) it prints first audio at a `/ws/live` client,
//! its overhead beyond the LLM-to-first-segment and TTS-first-chunk baselines (each measured on
//! its own, as in [`super::speech`], after the turns so that the RSS is the product's), the
//! overhead per turn beyond that turn's own TTS time (`done.stats.tts_first_chunk_ms`), first
//! audio of the turn right after a STOP, CPU per spoken second, and the RSS of the whole process
//! plus its children (the Python voice, or the in-process voice's warm espeak-ng) after the last
//! turn.
//! The bench's own clients and the fake LLM run in the same process, so the RSS and CPU figures
//! include them (a few MB, a few ms).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::SinkExt;
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream, split_tokens};
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::speech::{
    Live, first_segment_text_of, llm_direct_ms, ms, next_json, tts_first_chunk_ms,
};
use super::{Percentiles, percentiles};

/// The peer comparison's reply: 41 words, six sentences, a comma in the first.
pub const SCRIPT: &str = "Welcome back, everyone! Today we are building a castle together. \
First, we lay the stone walls. Then we add two tall stone towers. After that, chat picks the \
flag colour. Finally, we all celebrate together with big fireworks over the moat.";

/// How long the voice rests before each direct call: about as long as it is idle in a turn, while
/// the rest of the previous reply plays.
const DIRECT_REST: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
pub struct PiperScenario {
    pub runtime: String,
    pub turns: usize,
    pub barge_ins: usize,
    pub llm_first_segment_ms: Percentiles,
    pub tts_first_chunk_ms: Percentiles,
    pub first_audio_ms: Percentiles,
    pub first_audio_overhead_ms: Percentiles,
    /// The TTS's first chunk of each turn's first segment, as the engine timed it in the turn
    /// (`done.stats.tts_first_chunk_ms`): Piper's own spread, turn by turn.
    pub tts_first_chunk_in_turn_ms: Percentiles,
    /// First audio − (the LLM's first segment, p50 direct + that turn's own TTS first chunk):
    /// what Kotodama adds, without the TTS's turn-to-turn spread that a p50 baseline keeps in.
    pub first_audio_overhead_per_turn_ms: Percentiles,
    /// First audio of the turns asked right after a STOP_ACK.
    pub first_audio_after_stop_ms: Percentiles,
    /// The per-turn overhead of those turns: what a STOP leaves the next turn to pay.
    pub overhead_after_stop_per_turn_ms: Percentiles,
    /// CPU seconds (this process and its children) per second of speech sent, over the whole run.
    pub cpu_per_spoken_second: f64,
    pub spoken_seconds: f64,
    /// This process before the server started (the bench's own clients and fake LLM).
    pub rss_before_mb: f64,
    /// This process plus its children, after the last turn, and the process's peak.
    pub rss_total_mb: f64,
    pub rss_children_mb: f64,
    pub rss_peak_self_mb: f64,
}

pub struct PiperArgs {
    pub turns: usize,
    pub barge_ins: usize,
    pub first_token: Duration,
    pub token_gap: Duration,
    /// `piper_threads` (0: the product's default).
    pub threads: u32,
}

pub async fn run(runtime: &str, args: &PiperArgs) -> anyhow::Result<PiperScenario> {
    let (rss_before, _, _) = rss_mb();
    let reply = FakeStream::new(split_tokens(SCRIPT))
        .with_first_token_delay(args.first_token)
        .with_token_gap(args.token_gap);
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Stream(reply))).await;
    let dir = std::env::temp_dir().join(format!(
        "kotodama-bench-piper-{}-{runtime}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let mut raw = super::bench_config(&dir, &fake.base_url());
    raw.set("tts_provider", "piper");
    // `onnx-fp32`: in process with the voice's own weights (PIPER_QUANTIZE=off), for comparison.
    let (runtime_key, quantize) = match runtime {
        "onnx-fp32" => ("onnx", "off"),
        other => (other, "int8"),
    };
    raw.set("piper_runtime", runtime_key.to_owned());
    raw.set("piper_quantize", quantize);
    raw.set("piper_threads", args.threads.to_string());
    let config = raw.build()?;
    let tts_settings = config.tts.clone();
    let chunk_rate = f64::from(config.tts.sample_rate);
    let server = crate::start(config).await?;

    let token = server.token.expose().to_owned();
    let session = "bench-piper";
    let ws_url = format!(
        "{}/ws/live?token={token}&session={session}",
        server.base_url().replace("http://", "ws://")
    );
    let (mut live, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .context("connecting /ws/live")?;
    let client = reqwest::Client::new();
    let chat_url = format!("{}/chat/stream", server.base_url());

    let cpu_before = cpu_seconds();
    let mut first_audio = Vec::new();
    let mut after_stop = Vec::new();
    let mut tts_in_turn = Vec::new();
    let mut spoken_samples = 0f64;
    let mut previous_was_stopped = false;
    let barge_every = args.turns.max(1) as f64 / args.barge_ins.max(1) as f64;
    let mut barged = 0;
    for turn in 0..args.turns {
        // Spread the barge-ins over the run: turn t is stopped when it crosses the next step.
        let barge =
            barged < args.barge_ins && (turn as f64 + 1.0) >= (barged as f64 + 1.0) * barge_every;
        let started = Instant::now();
        let request = client
            .post(&chat_url)
            .bearer_auth(&token)
            .json(&json!({"sessionId": session, "content": format!("turn {turn}")}));
        let sse = tokio::spawn(async move { request.send().await?.bytes().await });
        let outcome = speak_turn(&mut live, session, started, barge).await?;
        let body = sse.await??;
        let tts_ms = std::str::from_utf8(&body)
            .ok()
            .and_then(super::safety::done_stats)
            .and_then(|stats| stats["tts_first_chunk_ms"].as_f64())
            .with_context(|| format!("turn {turn}: done.stats has no tts_first_chunk_ms"))?;
        tts_in_turn.push((tts_ms, previous_was_stopped));
        first_audio.push(ms(outcome.first_audio));
        if previous_was_stopped {
            after_stop.push(ms(outcome.first_audio));
        }
        spoken_samples += outcome.samples as f64;
        previous_was_stopped = barge;
        barged += usize::from(barge);
    }
    let cpu = cpu_seconds() - cpu_before;
    let spoken_seconds = spoken_samples / chunk_rate;
    // A voice restarted by the last STOP (the Python child) is measured warm, not half-loaded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_self, rss_children, peak_self) = rss_mb();
    // The baselines come after the RSS reading: the direct TTS is a second voice in this
    // process, and what it leaves in the allocator is not the product's.
    let (llm_first_segment, _) = llm_direct_ms(&fake.base_url(), 20).await?;
    let tts_first_chunk = tts_first_chunk_ms(
        &tts_settings,
        &first_segment_text_of(SCRIPT),
        20,
        DIRECT_REST,
    )
    .await?;
    let llm_p50 = percentiles(llm_first_segment.clone()).p50;
    let baseline = llm_p50 + percentiles(tts_first_chunk.clone()).p50;
    let per_turn = |after_stop_only: bool| -> Vec<f64> {
        first_audio
            .iter()
            .zip(&tts_in_turn)
            .filter(|(_, (_, after_stop))| !after_stop_only || *after_stop)
            .map(|(at, (tts_ms, _))| at - llm_p50 - tts_ms)
            .collect()
    };
    let (overhead_per_turn, overhead_after_stop) = (per_turn(false), per_turn(true));
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(PiperScenario {
        runtime: runtime.to_owned(),
        turns: args.turns,
        barge_ins: barged,
        llm_first_segment_ms: percentiles(llm_first_segment),
        tts_first_chunk_ms: percentiles(tts_first_chunk),
        first_audio_overhead_ms: percentiles(first_audio.iter().map(|at| at - baseline).collect()),
        first_audio_ms: percentiles(first_audio),
        first_audio_after_stop_ms: percentiles(after_stop),
        tts_first_chunk_in_turn_ms: percentiles(tts_in_turn.iter().map(|(ms, _)| *ms).collect()),
        first_audio_overhead_per_turn_ms: percentiles(overhead_per_turn),
        overhead_after_stop_per_turn_ms: percentiles(overhead_after_stop),
        cpu_per_spoken_second: if spoken_seconds > 0.0 {
            cpu / spoken_seconds
        } else {
            0.0
        },
        spoken_seconds,
        rss_before_mb: rss_before,
        rss_total_mb: rss_self + rss_children,
        rss_children_mb: rss_children,
        rss_peak_self_mb: peak_self,
    })
}

struct TurnOutcome {
    first_audio: Duration,
    /// Samples of this turn's chunks the client received.
    samples: usize,
}

/// Waits for the turn's first chunk; then either STOPs 0–800 ms later and waits for STOP_ACK,
/// or listens to the end (`CONTROL END`).
async fn speak_turn(
    live: &mut Live,
    session: &str,
    started: Instant,
    barge: bool,
) -> anyhow::Result<TurnOutcome> {
    let mut turn = None;
    let mut first_audio = None;
    let mut samples = 0;
    let mut stop_at = None;
    loop {
        let frame = tokio::select! {
            _ = sleep_until(stop_at), if stop_at.is_some() => {
                let stop = json!({"type":"CONTROL","action":"STOP","sessionId":session,"reason":"bench"});
                live.send(Message::Text(stop.to_string().into())).await?;
                stop_at = None;
                continue;
            }
            frame = next_json(live, Duration::from_secs(60)) => frame.context("the live socket went quiet")?,
        };
        let this_turn = turn.is_some() && frame["turn"].as_u64() == turn;
        match (frame["type"].as_str(), frame["action"].as_str()) {
            (Some("USER_INPUT"), _) => turn = frame["turn"].as_u64(),
            (Some("SPEECH_CHUNK"), _) if this_turn => {
                samples += frame["pcm"].as_str().map_or(0, |pcm| pcm.len() * 3 / 8);
                if first_audio.is_none() {
                    first_audio = Some(started.elapsed());
                    if barge {
                        let after = Duration::from_millis(rand::rng().random_range(0..800));
                        stop_at = Some(tokio::time::Instant::now() + after);
                    }
                }
            }
            (Some("CONTROL"), Some("STOP_ACK")) | (Some("CONTROL"), Some("END")) if this_turn => {
                break;
            }
            _ => {}
        }
    }
    Ok(TurnOutcome {
        first_audio: first_audio.context("the turn ended without audio")?,
        samples,
    })
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// CPU seconds of this process, its reaped children and its live children (`/proc`).
fn cpu_seconds() -> f64 {
    // Linux reports CPU times in clock ticks of 1/100 s on every platform Kotodama runs on.
    const TICKS: f64 = 100.0;
    let fields = |pid: &str| -> Option<Vec<u64>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(
            stat.rsplit(')')
                .next()?
                .split_whitespace()
                .map(|field| field.parse().unwrap_or(0))
                .collect(),
        )
    };
    // After the `)`: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let own = fields("self").map_or(0, |f| f.get(11..15).map_or(0, |t| t.iter().sum()));
    let children: u64 = children()
        .iter()
        .filter_map(|pid| fields(&pid.to_string()))
        .map(|f| f.get(11..13).map_or(0, |t| t.iter().sum::<u64>()))
        .sum();
    (own + children) as f64 / TICKS
}

/// Live children of this process.
fn children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                })
                == Some(me)
        })
        .collect()
}

/// (this process's RSS, its children's RSS, this process's peak RSS), in MB.
fn rss_mb() -> (f64, f64, f64) {
    let status = |pid: &str, key: &str| -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|line| line.starts_with(key))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kb| kb / 1024.0)
    };
    // `+ 0.0`: an empty f64 sum is −0.0, printed as "-0.0 MB".
    let children: f64 = children()
        .iter()
        .map(|pid| status(&pid.to_string(), "VmRSS:"))
        .sum::<f64>()
        + 0.0;
    (status("self", "VmRSS:"), children, status("self", "VmHWM:"))
}

pub fn print(scenario: &PiperScenario) {
    let row = |name: &str, p: &Percentiles| {
        println!(
            "  {name:<42} p50 {:>8.2}  p95 {:>8.2}  p99 {:>8.2} ms",
            p.p50, p.p95, p.p99
        );
    };
    println!(
        "piper ({}) — the peer's 41-word script, {} turns, {} barge-ins:",
        scenario.runtime, scenario.turns, scenario.barge_ins
    );
    row(
        "LLM → first segment (direct)",
        &scenario.llm_first_segment_ms,
    );
    row(
        "TTS first chunk of it (direct)",
        &scenario.tts_first_chunk_ms,
    );
    row("first audio at /ws/live", &scenario.first_audio_ms);
    row("first-audio overhead", &scenario.first_audio_overhead_ms);
    row(
        "TTS first chunk in each turn (engine)",
        &scenario.tts_first_chunk_in_turn_ms,
    );
    row(
        "overhead beyond that turn's own TTS",
        &scenario.first_audio_overhead_per_turn_ms,
    );
    row(
        "first audio right after a STOP",
        &scenario.first_audio_after_stop_ms,
    );
    row(
        "overhead (per turn) right after a STOP",
        &scenario.overhead_after_stop_per_turn_ms,
    );
    println!(
        "  CPU per spoken second {:.3} s ({:.0} s spoken); RSS process + children {:.1} MB \
         (before the server {:.1} MB, children {:.1} MB, process peak {:.1} MB)",
        scenario.cpu_per_spoken_second,
        scenario.spoken_seconds,
        scenario.rss_total_mb,
        scenario.rss_before_mb,
        scenario.rss_children_mb,
        scenario.rss_peak_self_mb
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_the_peers_41_words_in_six_sentences() {
        assert_eq!(SCRIPT.split_whitespace().count(), 41);
        assert_eq!(SCRIPT.matches(['.', '!', '?']).count(), 6);
        assert!(SCRIPT.starts_with("Welcome back, everyone! "));
    }

    #[test]
    fn the_first_segment_is_cut_at_the_first_comma() {
        assert_eq!(first_segment_text_of(SCRIPT).trim(), "Welcome back,");
    }
}
