//! `kotodama bench`: the app in process against a loopback fake OpenAI upstream whose first token
//! comes after a fixed delay D; prints p50/p95/p99 of client TTFT, engine overhead (TTFT − D) and
//! whole-turn time, sequentially and with C concurrent sessions. A benchmark, not a test: it
//! asserts nothing and measures wall-clock time on purpose.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream};
use serde::Serialize;

use crate::config::RawConfig;

mod audio_cpu;
mod chat;
pub mod crash;
mod local_llm;
mod piper;
mod safety;
pub mod soak;
mod speech;
mod voice;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Turns per scenario.
    #[arg(long, default_value_t = 200)]
    pub turns: usize,
    /// Concurrent sessions in the concurrent scenario.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// D: the fake LLM's delay before its first token, in ms.
    #[arg(long, default_value_t = 50)]
    pub first_token_ms: u64,
    /// Tokens per reply.
    #[arg(long, default_value_t = 12)]
    pub tokens: usize,
    /// Gap between tokens, in ms.
    #[arg(long, default_value_t = 5)]
    pub token_gap_ms: u64,
    /// Pre-fill the database with this many turns first (e.g. 1000000).
    #[arg(long, default_value_t = 0)]
    pub prefill_turns: usize,
    /// STOP trials per TTS provider in the speech benchmark (0 skips it).
    #[arg(long, default_value_t = 200)]
    pub speech_trials: usize,
    /// TTS providers the speech benchmark runs, comma-separated.
    #[arg(long, default_value = "mock,espeak")]
    pub speech_providers: String,
    /// Turns of the Piper benchmark: the peer comparison's 41-word script with the joe voice
    /// (0 skips it; the run is 32). Needs Piper (scripts/test.sh installs it).
    #[arg(long, default_value_t = 0)]
    pub piper_turns: usize,
    /// How many of those turns are barged in with a STOP, 0–800 ms after their first audio.
    #[arg(long, default_value_t = 20)]
    pub piper_barge_ins: usize,
    /// Piper runtimes the Piper benchmark compares, comma-separated: `onnx` (in process, 8-bit),
    /// `onnx-fp32` (in process, the voice's own weights), `python` (the child process).
    #[arg(long, default_value = "onnx,python")]
    pub piper_runtimes: String,
    /// `piper_threads` for the Piper benchmark's voice (0: the product's default).
    #[arg(long, default_value_t = 0)]
    pub piper_threads: u32,
    /// Events for the outbox → Redis Streams benchmark (0 skips it; needs the `redis` feature).
    #[arg(long, default_value_t = 20_000)]
    pub outbox_events: usize,
    /// Sessions speaking at once in the audio-path CPU benchmark (0 skips it).
    #[arg(long, default_value_t = 4)]
    pub audio_cpu_sessions: usize,
    /// Whole turns each of those sessions speaks.
    #[arg(long, default_value_t = 3)]
    pub audio_cpu_turns: usize,
    /// Voice-to-voice trials through the microphone pipeline (0 skips it).
    #[arg(long, default_value_t = 20)]
    pub voice_trials: usize,
    /// OpenAI-compatible ASR for the voice benchmark (`http://127.0.0.1:8090/v1` from
    /// scripts/asr-server.sh); unset = the mock ASR.
    #[arg(long)]
    pub voice_asr_url: Option<String>,
    /// `ECHO_CANCEL` for the voice benchmark: `aec` (default), `gate` or `headphones`.
    #[arg(long, default_value = "aec")]
    pub voice_echo: String,
    /// Chat flood: messages per second through POST /chat/messages.
    #[arg(long, default_value_t = 500)]
    pub chat_rate: usize,
    /// Chat flood: seconds (0 skips it; the run is 60).
    #[arg(long, default_value_t = 5)]
    pub chat_seconds: u64,
    /// An OpenAI-compatible local LLM server (`http://127.0.0.1:8080/v1`, llama.cpp's
    /// llama-server): runs only the local-LLM benchmark against it (TTFT per turn as the memory
    /// window fills, beside a one-turn sliding window).
    #[arg(long)]
    pub llm_url: Option<String>,
    /// Model name sent to that server.
    #[arg(long, default_value = "local")]
    pub llm_model: String,
    /// Turns of the local-LLM benchmark.
    #[arg(long, default_value_t = 60)]
    pub llm_turns: usize,
    /// STM_CONTEXT_TURNS for it.
    #[arg(long, default_value_t = 20)]
    pub llm_window: usize,
    /// LLM_MAX_TOKENS for it (short replies keep a small CPU model's turns short).
    #[arg(long, default_value_t = 48)]
    pub llm_max_tokens: u32,
    /// Pause between its turns, in ms (the engine warms the server's prompt cache in them).
    #[arg(long, default_value_t = 0)]
    pub llm_gap_ms: u64,
    /// Leave out its sliding-window comparison.
    #[arg(long)]
    pub llm_no_sliding: bool,
    /// Run only the Piper benchmark (its RSS is then the server's and the voice's alone, not
    /// what earlier scenarios left in the process).
    #[arg(long)]
    pub piper_only: bool,
    /// Run only the chat flood.
    #[arg(long)]
    pub chat_only: bool,
    /// Turns per case of the "keep talking, safely" benchmark (veto window, quick
    /// acknowledgment); 0 skips it. Runs alone (with the table of nothing else).
    #[arg(long, default_value_t = 0)]
    pub safety_turns: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct Scenario {
    pub name: String,
    pub turns: usize,
    pub ttft_ms: Percentiles,
    pub overhead_ms: Percentiles,
    /// The fake asked directly under the same load (concurrent scenarios): overhead's baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_upstream_ttft_ms: Option<Percentiles>,
    pub turn_ms: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub first_token_delay_ms: u64,
    /// The fake upstream asked directly: the D that overhead is measured against (its p50).
    pub direct_upstream_ttft_ms: Percentiles,
    pub tokens_per_reply: usize,
    pub prefilled_turns: usize,
    pub scenarios: Vec<Scenario>,
    pub speech: Vec<speech::SpeechScenario>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_cpu: Option<audio_cpu::AudioCpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<voice::VoiceScenario>,
    pub chat: Option<chat::ChatFlood>,
    pub piper: Vec<piper::PiperScenario>,
}

/// Outbox commit → entry readable by a Redis consumer, and the relay's rate beside
/// `redis-benchmark`'s pipelined XADD on the same machine (one client, like the relay).
#[derive(Debug, Serialize)]
pub struct OutboxBench {
    pub delivery: koto_events::bench::Samples,
    pub redis_benchmark_xadd_per_sec: f64,
    pub ratio: f64,
}

#[cfg(feature = "redis")]
async fn outbox_bench(events: usize) -> anyhow::Result<OutboxBench> {
    let redis = koto_events::redis_server::RedisServer::start()?;
    let dir = std::env::temp_dir().join(format!("kotodama-bench-outbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = koto_store::Store::open(&dir.join("scratch.sqlite3"))?;
    let delivery = koto_events::bench::outbox_delivery(&store, &redis.url(), events).await?;
    let rps = koto_events::bench::redis_benchmark_xadd(redis.port(), 100_000, 16, 1).await?;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(OutboxBench {
        ratio: delivery.ratio_to(rps),
        delivery,
        redis_benchmark_xadd_per_sec: rps,
    })
}

#[cfg(not(feature = "redis"))]
async fn outbox_bench(_events: usize) -> anyhow::Result<OutboxBench> {
    anyhow::bail!("the outbox benchmark needs the `redis` feature (it is on by default)")
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.safety_turns > 0 {
        let scenarios = safety::run(args.safety_turns).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&scenarios)?);
        } else {
            safety::print(&scenarios);
        }
        return Ok(());
    }
    if args.chat_only {
        let flood = chat::run(args.chat_rate, args.chat_seconds.max(1)).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&flood)?);
        } else {
            chat::print(&flood);
        }
        return Ok(());
    }
    let first_token = Duration::from_millis(args.first_token_ms);
    if let Some(base_url) = &args.llm_url {
        let bench = local_llm::run(&local_llm::LocalLlmArgs {
            base_url: base_url.clone(),
            model: args.llm_model.clone(),
            turns: args.llm_turns.max(1),
            window: args.llm_window,
            max_tokens: args.llm_max_tokens.max(1),
            gap: Duration::from_millis(args.llm_gap_ms),
            sliding: !args.llm_no_sliding,
        })
        .await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&bench)?);
        } else {
            local_llm::print(&bench);
        }
        return Ok(());
    }
    if args.piper_only {
        for scenario in piper_bench(&args, first_token).await? {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&scenario)?);
            } else {
                piper::print(&scenario);
            }
        }
        return Ok(());
    }
    let tokens: Vec<String> = (0..args.tokens).map(|n| format!("word{n} ")).collect();
    let reply = FakeStream::new(tokens)
        .with_first_token_delay(first_token)
        .with_token_gap(Duration::from_millis(args.token_gap_ms));
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Stream(reply))).await;

    let dir = tempfile_dir()?;
    let mut raw = bench_config(&dir, &fake.base_url());
    // Text TTFT only; the speech scenarios below measure audio.
    raw.set("sync_tts_streaming", "false");
    let config = raw.build()?;
    let server = crate::start(config).await?;

    if args.prefill_turns > 0 {
        let store = server.engine.store().clone();
        let sessions = (args.prefill_turns / 1000).max(1);
        let per_session = args.prefill_turns / sessions;
        let started = Instant::now();
        tokio::task::spawn_blocking(move || store.prefill(sessions, per_session)).await??;
        eprintln!(
            "prefilled {} turns in {:.1} s",
            sessions * per_session,
            started.elapsed().as_secs_f64()
        );
    }

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let url = format!("{}/chat/stream", server.base_url());
    let token = server.token.expose().to_owned();
    let target = Target { client, url, token };

    // Warm-up: connections, SQLite pages, allocator.
    run_sequential(&target, "warmup", 10).await?;
    // D as the fake really delivers it (its timer fires a little after D): the same request
    // straight to the fake, so "overhead" is only what Kotodama adds.
    let direct = direct_ttft(&target.client, &fake.base_url(), args.turns.min(100)).await?;
    let effective_delay = millis(percentiles(direct.clone()).p50);
    let mut scenarios = Vec::new();
    let sequential = run_sequential(&target, "bench-seq", args.turns).await?;
    scenarios.push(summarise("sequential".into(), &sequential, effective_delay));
    let concurrency = args.concurrency.max(1);
    let per_session = args.turns.div_ceil(concurrency);
    // Sessions start spread over one turn's length, as independent streams would, rather than
    // in lockstep (which would land every first token in the same millisecond).
    let spread = millis(
        percentiles(
            sequential
                .iter()
                .map(|s| s.turn.as_secs_f64() * 1e3)
                .collect(),
        )
        .p50,
    );
    // The same load straight at the fake: at 16 sessions on 2 cores the client and the fake
    // slow down too, and that is not Kotodama's overhead.
    let direct_loaded: Vec<f64> = spread_sessions(concurrency, spread, |_| {
        let client = target.client.clone();
        let base_url = fake.base_url();
        async move { direct_ttft(&client, &base_url, per_session).await }
    })
    .await?;
    let loaded_delay = millis(percentiles(direct_loaded.clone()).p50);
    let concurrent: Vec<Sample> = spread_sessions(concurrency, spread, |session| {
        let target = target.clone();
        async move { run_sequential(&target, &format!("bench-c{session}"), per_session).await }
    })
    .await?;
    let mut loaded = summarise(format!("{concurrency} sessions"), &concurrent, loaded_delay);
    loaded.direct_upstream_ttft_ms = Some(percentiles(direct_loaded));
    scenarios.push(loaded);

    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);

    let mut speech_results = Vec::new();
    if args.speech_trials > 0 {
        let speech_args = speech::SpeechArgs {
            trials: args.speech_trials,
            first_token,
            token_gap: Duration::from_millis(args.token_gap_ms),
        };
        for provider in args
            .speech_providers
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            eprintln!(
                "speech benchmark: {provider}, {} STOP trials…",
                args.speech_trials
            );
            speech_results.push(speech::run(provider, &speech_args).await?);
        }
    }
    let piper_results = piper_bench(&args, first_token).await?;
    let voice = if args.voice_trials > 0 {
        eprintln!(
            "voice-to-voice benchmark: {} trials, ASR {}, echo {}…",
            args.voice_trials,
            args.voice_asr_url.as_deref().unwrap_or("mock"),
            args.voice_echo
        );
        Some(
            voice::run(&voice::VoiceArgs {
                trials: args.voice_trials,
                asr_url: args.voice_asr_url.clone(),
                echo: args.voice_echo.clone(),
                first_token,
                token_gap: Duration::from_millis(args.token_gap_ms),
            })
            .await?,
        )
    } else {
        None
    };
    let audio_cpu = if args.audio_cpu_sessions > 0 && args.audio_cpu_turns > 0 {
        eprintln!(
            "audio-path CPU benchmark: {} sessions × {} turns, 3 clients each…",
            args.audio_cpu_sessions, args.audio_cpu_turns
        );
        Some(audio_cpu::run(args.audio_cpu_sessions, args.audio_cpu_turns).await?)
    } else {
        None
    };
    let outbox = if args.outbox_events > 0 {
        eprintln!(
            "outbox benchmark: {} events through a private redis-server…",
            args.outbox_events
        );
        Some(outbox_bench(args.outbox_events).await?)
    } else {
        None
    };
    let chat = if args.chat_seconds > 0 {
        eprintln!(
            "chat flood: {} messages/s for {} s…",
            args.chat_rate, args.chat_seconds
        );
        Some(chat::run(args.chat_rate, args.chat_seconds).await?)
    } else {
        None
    };
    let report = Report {
        voice,
        audio_cpu,
        chat,
        outbox,
        speech: speech_results,
        piper: piper_results,
        first_token_delay_ms: args.first_token_ms,
        direct_upstream_ttft_ms: percentiles(direct),
        tokens_per_reply: args.tokens,
        prefilled_turns: args.prefill_turns,
        scenarios,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

async fn piper_bench(
    args: &BenchArgs,
    first_token: Duration,
) -> anyhow::Result<Vec<piper::PiperScenario>> {
    let mut results = Vec::new();
    if args.piper_turns == 0 {
        return Ok(results);
    }
    let piper_args = piper::PiperArgs {
        turns: args.piper_turns,
        barge_ins: args.piper_barge_ins.min(args.piper_turns),
        first_token,
        token_gap: Duration::from_millis(args.token_gap_ms),
        threads: args.piper_threads,
    };
    for runtime in args
        .piper_runtimes
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        eprintln!(
            "piper benchmark: {runtime}, {} turns, {} barge-ins…",
            piper_args.turns, piper_args.barge_ins
        );
        results.push(piper::run(runtime, &piper_args).await?);
    }
    Ok(results)
}

/// What every benchmark's server starts from: loopback on a free port, a data directory of its
/// own, the OpenAI client against `llm_url` (a fake, or a real local server), and input limits
/// no benchmark reaches.
fn bench_config(dir: &std::path::Path, llm_url: &str) -> RawConfig {
    let mut raw = RawConfig::default();
    raw.set("bind", "127.0.0.1:0");
    raw.set("data_dir", dir.to_string_lossy());
    raw.set("llm_provider", "openai");
    raw.set("openai_base_url", llm_url.to_owned());
    raw.set("llm_model", "bench");
    raw.set("input_rate_per_sec", "100000");
    raw.set("input_burst", "100000");
    // The app-wide limits too (SECURITY.md): a benchmark's back-to-back turns pass 20/s.
    raw.set("input_global_rate_per_sec", "100000");
    raw.set("input_global_burst", "100000");
    raw.set("max_sessions", "100000");
    raw.set("max_live_clients", "100000");
    raw.set("max_sockets", "100000");
    raw
}

#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    url: String,
    token: String,
}

struct Sample {
    ttft: Duration,
    turn: Duration,
}

async fn run_sequential(
    target: &Target,
    session: &str,
    turns: usize,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::with_capacity(turns);
    for n in 0..turns {
        let body = serde_json::json!({ "sessionId": session, "content": format!("question {n}") });
        let started = Instant::now();
        let response = target
            .client
            .post(&target.url)
            .bearer_auth(&target.token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "bench turn refused: {}",
            response.status()
        );
        let mut stream = response.bytes_stream();
        let mut ttft = None;
        let mut seen = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if ttft.is_none() {
                seen.extend_from_slice(&chunk);
                if contains(&seen, b"event: text-delta") {
                    ttft = Some(started.elapsed());
                }
            }
        }
        let turn = started.elapsed();
        samples.push(Sample {
            ttft: ttft.context("a turn produced no text")?,
            turn,
        });
    }
    Ok(samples)
}

/// Client → fake upstream with no Kotodama in between: time to the first content delta.
/// Runs `run(session)` for `concurrency` sessions at once, their starts spread over `spread`.
async fn spread_sessions<T, F, Fut>(
    concurrency: usize,
    spread: Duration,
    run: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<T>>> + Send + 'static,
{
    let mut tasks = Vec::with_capacity(concurrency);
    for session in 0..concurrency {
        let offset = spread.mul_f64(session as f64 / concurrency as f64);
        let job = run(session);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            job.await
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

async fn direct_ttft(
    client: &reqwest::Client,
    base_url: &str,
    n: usize,
) -> anyhow::Result<Vec<f64>> {
    let url = format!("{base_url}/chat/completions");
    let body = serde_json::json!({
        "model": "bench",
        "stream": true,
        "messages": [{"role": "user", "content": "direct"}],
    });
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let mut stream = client.post(&url).json(&body).send().await?.bytes_stream();
        let mut seen = Vec::new();
        let mut ttft = None;
        while let Some(chunk) = stream.next().await {
            seen.extend_from_slice(&chunk?);
            if ttft.is_none() && contains(&seen, b"word0") {
                ttft = Some(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        samples.push(ttft.context("the fake sent no token")?);
    }
    Ok(samples)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn summarise(name: String, samples: &[Sample], upstream_ttft: Duration) -> Scenario {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ttft: Vec<f64> = samples.iter().map(|s| ms(s.ttft)).collect();
    let overhead: Vec<f64> = samples
        .iter()
        .map(|s| ms(s.ttft) - ms(upstream_ttft))
        .collect();
    let turn: Vec<f64> = samples.iter().map(|s| ms(s.turn)).collect();
    Scenario {
        name,
        turns: samples.len(),
        ttft_ms: percentiles(ttft),
        overhead_ms: percentiles(overhead),
        direct_upstream_ttft_ms: None,
        turn_ms: percentiles(turn),
    }
}

/// `ms` as a duration. No samples (`--turns 0`: a NaN percentile) is zero, not a panic.
fn millis(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1e3).unwrap_or(Duration::ZERO)
}

pub fn percentiles(mut values: Vec<f64>) -> Percentiles {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if values.is_empty() {
            return f64::NAN;
        }
        let index = ((values.len() as f64 - 1.0) * q).round() as usize;
        values[index.min(values.len() - 1)]
    };
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

fn print_table(report: &Report) {
    print_ttft_table(report);
    for scenario in &report.piper {
        println!();
        piper::print(scenario);
    }
    if let Some(flood) = &report.chat {
        println!();
        chat::print(flood);
    }
    if let Some(outbox) = &report.outbox {
        let d = &outbox.delivery;
        println!();
        println!("outbox → Redis Streams (commit → entry readable by a consumer)");
        println!(
            "  latency ms p50/p95/p99: {:.2} / {:.2} / {:.2} ({} samples)",
            d.p50_ms, d.p95_ms, d.p99_ms, d.latency_samples
        );
        println!(
            "  relay {:.0} events/s vs redis-benchmark XADD -P 16 -c 1 {:.0}/s = {:.2}; with commits {:.0} events/s",
            d.relay_events_per_sec,
            outbox.redis_benchmark_xadd_per_sec,
            outbox.ratio,
            d.events_per_sec
        );
    }
    if let Some(v) = &report.voice {
        let fmt = |p: &Percentiles| format!("{:.1} / {:.1} / {:.1}", p.p50, p.p95, p.p99);
        println!();
        println!(
            "voice to voice — end of speech → first audio at a /ws/live client (mic pipeline, ASR {}, espeak voice), {} trials",
            v.asr, v.trials
        );
        println!(
            "  baseline: VAD hangover {} ms; ASR {} ms; LLM → first segment {} ms; TTS → first chunk {} ms",
            v.vad_hangover_ms,
            fmt(&v.asr_direct_ms),
            fmt(&v.llm_first_segment_ms),
            fmt(&v.tts_first_chunk_ms)
        );
        println!(
            "  voice to voice       {:>24} ms",
            fmt(&v.voice_to_voice_ms)
        );
        println!(
            "  overhead             {:>24} ms  (− hangover and the three p50s)",
            fmt(&v.overhead_ms)
        );
        println!(
            "  overhead per turn    {:>24} ms  (− hangover, ASR and LLM p50s and that turn's own TTS first chunk; {} trials)",
            fmt(&v.overhead_per_turn_ms),
            v.per_turn_trials
        );
        println!(
            "  end → USER_INPUT     {:>24} ms  (overhead beyond hangover + ASR p50: {})",
            fmt(&v.end_to_turn_ms),
            fmt(&v.end_to_turn_overhead_ms)
        );
        println!(
            "  USER_INPUT → audio   {:>24} ms  (overhead beyond LLM + TTS p50s: {})",
            fmt(&v.turn_to_audio_ms),
            fmt(&v.turn_to_audio_overhead_ms)
        );
        println!(
            "  USER_INPUT → audio, per turn {:>16} ms  (overhead beyond LLM p50 + that turn's TTS)",
            fmt(&v.turn_to_audio_per_turn_overhead_ms)
        );
        println!(
            "  barge-in onset → PAUSE {:>22} ms  ({} trials over a speaking co-host)",
            fmt(&v.onset_to_pause_ms),
            v.barge_in_trials
        );
    }
    if let Some(a) = &report.audio_cpu {
        println!();
        println!(
            "audio path — {} sessions × {} whole turns (mock voice), {} /ws/live clients each (JSON, binary, no audio)",
            a.sessions,
            a.turns / a.sessions.max(1),
            a.clients_per_session
        );
        println!(
            "  {:.1} s of speech in {:.1} s: server {:.0} ms CPU = {:.2} ms CPU per spoken second (the bench's clients: {:.0} ms more)",
            a.spoken_s, a.wall_s, a.cpu_ms, a.cpu_ms_per_spoken_s, a.clients_cpu_ms
        );
    }
    if report.speech.is_empty() {
        return;
    }
    let fmt = |p: &Percentiles| format!("{:.2} / {:.2} / {:.2}", p.p50, p.p95, p.p99);
    println!();
    println!(
        "speech — first audio at a /ws/live client; STOPs at random 0–800 ms after the request"
    );
    for s in &report.speech {
        println!(
            "[{}] {} trials ({} stopped before any audio)",
            s.provider, s.trials, s.stops_before_first_audio
        );
        println!(
            "  baseline: LLM → first segment {} ms; TTS → first chunk {} ms (p50/p95/p99)",
            fmt(&s.llm_first_segment_ms),
            fmt(&s.tts_first_chunk_ms)
        );
        println!("  first audio          {:>26} ms", fmt(&s.first_audio_ms));
        println!(
            "  first-audio overhead {:>26} ms  (first audio − both baselines' p50)",
            fmt(&s.first_audio_overhead_ms)
        );
        println!("  STOP → STOP_ACK      {:>26} ms", fmt(&s.stop_to_ack_ms));
        println!(
            "  STOP → last chunk    {:>26} ms",
            fmt(&s.stop_to_last_chunk_ms)
        );
        println!("  chunks after STOP_ACK: {}", s.chunks_after_stop_ack);
        println!(
            "  LLM complete         {:>26} ms  (request → eos at the SSE client, speech on; direct {})",
            fmt(&s.llm_complete_ms),
            fmt(&s.llm_complete_direct_ms)
        );
        println!(
            "  LLM-complete overhead{:>26} ms  (− the direct p50)",
            fmt(&s.llm_complete_overhead_ms)
        );
    }
}

fn print_ttft_table(report: &Report) {
    for scenario in &report.scenarios {
        if let Some(direct) = &scenario.direct_upstream_ttft_ms {
            println!(
                "({}: overhead measured against the fake's direct TTFT under the same load, p50 {:.2} ms)",
                scenario.name, direct.p50
            );
        }
    }
    println!(
        "kotodama bench — fake LLM: first token after D = {} ms ({:.2} ms p50 measured directly), {} tokens/reply; prefilled turns: {}",
        report.first_token_delay_ms,
        report.direct_upstream_ttft_ms.p50,
        report.tokens_per_reply,
        report.prefilled_turns
    );
    println!("overhead = Kotodama's client TTFT − the fake's direct TTFT (p50)");
    println!(
        "{:<14} {:>6}  {:>26}  {:>26}  {:>26}",
        "scenario",
        "turns",
        "TTFT ms p50/p95/p99",
        "overhead ms p50/p95/p99",
        "turn ms p50/p95/p99"
    );
    for s in &report.scenarios {
        let fmt = |p: &Percentiles| format!("{:.2} / {:.2} / {:.2}", p.p50, p.p95, p.p99);
        println!(
            "{:<14} {:>6}  {:>26}  {:>26}  {:>26}",
            s.name,
            s.turns,
            fmt(&s.ttft_ms),
            fmt(&s.overhead_ms),
            fmt(&s.turn_ms)
        );
    }
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kotodama-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_samples_is_a_zero_duration_not_a_panic() {
        assert!(
            percentiles(Vec::new()).p50.is_nan(),
            "no samples, no median"
        );
        assert_eq!(millis(percentiles(Vec::new()).p50), Duration::ZERO);
        assert_eq!(millis(-3.0), Duration::ZERO);
        assert_eq!(millis(1e300), Duration::ZERO, "unrepresentable");
        assert_eq!(millis(1500.0), Duration::from_millis(1500));
    }
}
