//! A real local LLM in `kotodama bench` (#19): consecutive turns of one session through
//! Kotodama against an OpenAI-compatible server on loopback (llama.cpp's `llama-server`), TTFT
//! per turn as the short-term memory window fills and is cut.
//!
//! Beside it, the same transcript sent straight to the server the way a window that slides one
//! turn at a time would send it (every prompt's history starts one turn later, so its prefix
//! changes every turn and the server's prompt cache cannot help). That pass uses another system
//! prompt, so neither pass finds the other's prompts in the server's cache.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Percentiles, percentiles};

pub struct LocalLlmArgs {
    pub base_url: String,
    pub model: String,
    pub turns: usize,
    pub window: usize,
    pub max_tokens: u32,
    /// Pause between turns (a streamer talks, chat trickles in): the time the engine has to warm
    /// the server's cache before a window drop.
    pub gap: Duration,
    /// Also send the transcript with a one-turn sliding window (the comparison).
    pub sliding: bool,
}

#[derive(Debug, Serialize)]
pub struct LocalLlmBench {
    pub base_url: String,
    pub window_turns: usize,
    pub max_tokens: u32,
    pub gap_ms: u64,
    /// TTFT per turn through Kotodama (its window: blocks, the older half dropped when full).
    pub kotodama_ttft_ms: Vec<f64>,
    /// TTFT per turn for the same transcript sent with a one-turn sliding window.
    pub sliding_ttft_ms: Vec<f64>,
    pub kotodama: Percentiles,
    pub sliding: Percentiles,
}

pub async fn run(args: &LocalLlmArgs) -> anyhow::Result<LocalLlmBench> {
    let dir = std::env::temp_dir().join(format!("kotodama-bench-llm-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut raw = super::bench_config(&dir, &args.base_url);
    raw.set("llm_model", args.model.clone());
    raw.set("llm_max_tokens", args.max_tokens.to_string());
    raw.set("stm_context_turns", args.window.to_string());
    // A cold prompt on a small CPU evaluates at ~60–85 tokens/s.
    raw.set("llm_request_timeout", "300");
    raw.set("sync_tts_streaming", "false");
    let config = raw.build()?;
    let server = crate::start(config).await?;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/stream", server.base_url());
    let token = server.token.expose().to_owned();

    let mut transcript: Vec<(String, String)> = Vec::new();
    let mut kotodama = Vec::new();
    for turn in 0..args.turns {
        let question = question(turn);
        let started = Instant::now();
        let response = client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"sessionId": "bench-local-llm", "content": question}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "turn refused: {}",
            response.status()
        );
        let (ttft, reply) = read_sse_reply(response, started).await?;
        eprintln!("  local LLM turn {:>3}: TTFT {:>8.1} ms", turn + 1, ttft);
        kotodama.push(ttft);
        transcript.push((question, reply));
        tokio::time::sleep(args.gap).await;
    }
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);

    // No pooled connections: llama-server closes a streamed response's connection, and a reused
    // one fails the next request.
    let direct = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut sliding = Vec::new();
    for turn in 0..transcript.len() {
        if !args.sliding {
            break;
        }
        let first = turn.saturating_sub(args.window);
        let mut messages = vec![
            json!({"role": "system", "content": "You are a terse assistant for a benchmark."}),
        ];
        for (question, reply) in &transcript[first..turn] {
            messages.push(json!({"role": "user", "content": question}));
            messages.push(json!({"role": "assistant", "content": reply}));
        }
        messages.push(json!({"role": "user", "content": transcript[turn].0}));
        let ttft = direct_ttft(&direct, args, messages).await?;
        eprintln!(
            "  sliding window turn {:>3}: TTFT {:>8.1} ms",
            turn + 1,
            ttft
        );
        sliding.push(ttft);
    }
    Ok(LocalLlmBench {
        base_url: args.base_url.clone(),
        window_turns: args.window,
        max_tokens: args.max_tokens,
        gap_ms: args.gap.as_millis() as u64,
        kotodama: percentiles(kotodama.clone()),
        sliding: percentiles(sliding.clone()),
        kotodama_ttft_ms: kotodama,
        sliding_ttft_ms: sliding,
    })
}

fn question(turn: usize) -> String {
    const TOPICS: [&str; 6] = [
        "castles", "rivers", "dragons", "bridges", "comets", "forests",
    ];
    format!(
        "Question {}: tell me one short fact about {}.",
        turn + 1,
        TOPICS[turn % TOPICS.len()]
    )
}

/// (ms to the first text delta, the reply's text) from `/chat/stream`'s SSE.
async fn read_sse_reply(
    response: reqwest::Response,
    started: Instant,
) -> anyhow::Result<(f64, String)> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut ttft = None;
    let mut reply = String::new();
    let mut event = String::new();
    while let Some(bytes) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&bytes?));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ")
                && event == "text-delta"
            {
                ttft.get_or_insert_with(|| super::speech::ms(started.elapsed()));
                if let Ok(delta) = serde_json::from_str::<Value>(data)
                    && let Some(text) = delta["content"].as_str()
                {
                    reply.push_str(text);
                }
            } else if let Some(data) = line.strip_prefix("data: ")
                && event == "error"
            {
                anyhow::bail!("the turn failed: {data}");
            }
        }
    }
    Ok((ttft.context("the turn produced no text")?, reply))
}

/// Straight to the server: ms to the first content delta.
async fn direct_ttft(
    client: &reqwest::Client,
    args: &LocalLlmArgs,
    messages: Vec<Value>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let response = client
        .post(format!(
            "{}/chat/completions",
            args.base_url.trim_end_matches('/')
        ))
        .timeout(Duration::from_secs(300))
        .json(&json!({
            "model": args.model,
            "messages": messages,
            "stream": true,
            "max_tokens": args.max_tokens,
            "cache_prompt": true,
        }))
        .send()
        .await?
        .error_for_status()?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(bytes) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&bytes?));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let Some(data) = line.trim_end().strip_prefix("data: ") else {
                continue;
            };
            let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
            {
                // Read to the end so the server's slot is free for the next request.
                let at = super::speech::ms(started.elapsed());
                while let Some(rest) = body.next().await {
                    rest?;
                }
                return Ok(at);
            }
        }
    }
    anyhow::bail!("the server's reply had no content")
}

pub fn print(bench: &LocalLlmBench) {
    println!(
        "local LLM at {} — {} turns {} ms apart, window {} turns, max_tokens {}: TTFT ms (p50 / max per block of 10 turns)",
        bench.base_url,
        bench.kotodama_ttft_ms.len(),
        bench.gap_ms,
        bench.window_turns,
        bench.max_tokens
    );
    println!(
        "  {:<12} {:>24} {:>24}",
        "turns", "Kotodama", "sliding window"
    );
    for (block, ours) in bench.kotodama_ttft_ms.chunks(10).enumerate() {
        let ours = percentiles(ours.to_vec());
        let sliding = percentiles(
            bench
                .sliding_ttft_ms
                .chunks(10)
                .nth(block)
                .map(<[f64]>::to_vec)
                .unwrap_or_default(),
        );
        println!(
            "  {:<12} {:>12.1} / {:>9.1} {:>12.1} / {:>9.1}",
            format!("{}–{}", block * 10 + 1, block * 10 + 10),
            ours.p50,
            ours.max,
            sliding.p50,
            sliding.max
        );
    }
    let row = |name: &str, p: &Percentiles| {
        println!(
            "  {name:<12} p50 {:>8.1}  p95 {:>8.1}  p99 {:>8.1}  max {:>8.1} ms",
            p.p50, p.p95, p.p99, p.max
        );
    };
    row("Kotodama", &bench.kotodama);
    if !bench.sliding_ttft_ms.is_empty() {
        row("sliding", &bench.sliding);
    }
}
