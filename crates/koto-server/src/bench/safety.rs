//! "Keep talking, safely" in numbers (`--safety-turns`): first audio with and without the veto
//! window (`VETO_WINDOW_MS`), and the quick acknowledgment (`QUICK_ACK_MS`) beside first audio
//! when the LLM's first token is late. Mock voice, a loopback fake LLM, one session, turns one
//! after another; the figures are the turns' own `done.stats`.

use std::time::Duration;

use anyhow::Context;
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Percentiles, bench_config, percentiles};

const REPLY: [&str; 3] = ["Hi there, ", "friend. ", "Bye now."];

#[derive(Debug, Serialize)]
pub struct SafetyScenario {
    pub name: String,
    pub first_token_ms: u64,
    pub turns: usize,
    pub first_audio_ms: Percentiles,
    /// Turns where the filler played, and when.
    pub quick_acks: usize,
    pub quick_ack_ms: Percentiles,
}

/// Settings a case sets on top of the bench's own.
type Settings = &'static [(&'static str, &'static str)];

pub async fn run(turns: usize) -> anyhow::Result<Vec<SafetyScenario>> {
    let cases: [(&str, u64, Settings); 4] = [
        ("no veto window", 50, &[]),
        ("veto_window_ms = 1500", 50, &[("veto_window_ms", "1500")]),
        ("late LLM, no quick ack", 800, &[]),
        (
            "late LLM, quick_ack_ms = 300",
            800,
            &[("quick_ack_ms", "300")],
        ),
    ];
    let mut scenarios = Vec::new();
    for (name, first_token_ms, settings) in cases {
        scenarios.push(scenario(name, first_token_ms, settings, turns).await?);
    }
    Ok(scenarios)
}

async fn scenario(
    name: &str,
    first_token_ms: u64,
    settings: Settings,
    turns: usize,
) -> anyhow::Result<SafetyScenario> {
    let reply =
        FakeStream::new(REPLY).with_first_token_delay(Duration::from_millis(first_token_ms));
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Stream(reply))).await;
    let dir = std::env::temp_dir().join(format!(
        "kotodama-bench-safety-{}-{}",
        std::process::id(),
        settings.len() * 1000 + first_token_ms as usize
    ));
    std::fs::create_dir_all(&dir)?;
    let mut raw = bench_config(&dir, &fake.base_url());
    raw.set("tts_provider", "mock");
    for (key, value) in settings {
        raw.set(key, (*value).to_owned());
    }
    let server = crate::start(raw.build()?).await?;
    // The fillers are made in the background at start.
    for _ in 0..500 {
        if settings.iter().all(|(key, _)| *key != "quick_ack_ms")
            || server.engine.quick_acks_ready()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = reqwest::Client::new();
    let url = format!("{}/chat/stream", server.base_url());
    let token = server.token.expose().to_owned();
    let mut first_audio = Vec::new();
    let mut quick_ack = Vec::new();
    for turn in 0..turns {
        let body = client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"sessionId": "bench-safety", "content": format!("turn {turn}")}))
            .send()
            .await?
            .text()
            .await?;
        let stats = done_stats(&body).context("a turn without done.stats")?;
        if let Some(ms) = stats["first_audio_ms"].as_f64() {
            first_audio.push(ms);
        }
        if let Some(ms) = stats["quick_ack_ms"].as_f64() {
            quick_ack.push(ms);
        }
    }
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(SafetyScenario {
        name: name.to_owned(),
        first_token_ms,
        turns,
        first_audio_ms: percentiles(first_audio),
        quick_acks: quick_ack.len(),
        quick_ack_ms: percentiles(quick_ack),
    })
}

/// The `stats` of the SSE body's `done` event.
pub(super) fn done_stats(body: &str) -> Option<Value> {
    let mut lines = body.lines();
    while let Some(line) = lines.next() {
        if line == "event: done" {
            let data = lines.next()?.strip_prefix("data: ")?;
            return serde_json::from_str::<Value>(data)
                .ok()
                .map(|done| done["stats"].clone());
        }
    }
    None
}

pub fn print(scenarios: &[SafetyScenario]) {
    println!(
        "keep talking, safely — mock voice, first audio and the quick acknowledgment (done.stats)"
    );
    println!(
        "{:<30} {:>6} {:>7}   {:<26} {:<26}",
        "scenario", "D ms", "turns", "first audio ms p50/p95/p99", "quick ack ms p50/p95/p99"
    );
    for scenario in scenarios {
        let triple = |p: &Percentiles| format!("{:.1} / {:.1} / {:.1}", p.p50, p.p95, p.p99);
        let ack = if scenario.quick_acks == 0 {
            "—".to_owned()
        } else {
            format!(
                "{} ({} turns)",
                triple(&scenario.quick_ack_ms),
                scenario.quick_acks
            )
        };
        println!(
            "{:<30} {:>6} {:>7}   {:<26} {:<26}",
            scenario.name,
            scenario.first_token_ms,
            scenario.turns,
            triple(&scenario.first_audio_ms),
            ack
        );
    }
}

#[cfg(test)]
mod tests {
    use super::done_stats;

    #[test]
    fn the_done_events_stats_are_read_from_an_sse_body() {
        let body = "event: text-delta\ndata: {\"content\":\"Hi\",\"eos\":false}\n\nevent: done\ndata: {\"stats\":{\"first_audio_ms\":12.5,\"quick_ack_ms\":301.0}}\n\n";
        let stats = done_stats(body).expect("stats");
        assert_eq!(stats["first_audio_ms"], 12.5);
        assert_eq!(stats["quick_ack_ms"], 301.0);
        assert!(done_stats("event: error\ndata: {}\n").is_none());
    }
}
