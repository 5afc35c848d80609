//! `kotodama soak`: a live session compressed in time. Many streamer sessions at once, each
//! talking to the co-host with short think times (divided by `--speed`), typed and spoken inputs,
//! chat messages (some deleted by a moderator while they are answered), random barge-ins on
//! every stop path, live settings changes, `/ws/live` clients joining and leaving, and with
//! `--redis` a Redis restarted mid-run. Audio plays at its real pace; the hour is compressed by
//! running the sessions side by side.
//!
//! It counts what must never happen — fatal errors (a 5xx, a dropped connection, an SSE
//! `error`, a panic), chunks of a stopped turn after its STOP_ACK, STOPs never acknowledged,
//! events the consumers never got — and samples RSS, open fds and the database's size.
//! Everything runs in this process (server, fakes, clients), so RSS and fds are the whole
//! process's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::bench_config;

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Wall-clock minutes to run.
    #[arg(long, default_value_t = 2.0)]
    pub minutes: f64,
    /// Time compression: think times between inputs and the LLM's pace are divided by it.
    #[arg(long, default_value_t = 10.0)]
    pub speed: f64,
    /// Streamer sessions talking at once.
    #[arg(long, default_value_t = 16)]
    pub sessions: usize,
    /// Also run the outbox into a real Redis (`redis-server` on 127.0.0.1, started here) and
    /// restart it halfway.
    #[arg(long)]
    pub redis: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How a barge-in reaches the one stop fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum StopPath {
    /// `POST /control/stop` (the panel's button, hotkey and tray call the same).
    ControlRoute,
    /// `COMMAND stop` on `/chat/stream` (the typed `/stop`).
    TypedStop,
    /// The turn's SSE client goes away.
    Disconnect,
    /// `CONTROL STOP` from a `/ws/live` client.
    LiveSocket,
    /// A moderator deletes the chat message being answered.
    ChatDeletion,
}

const STOP_PATHS: [StopPath; 4] = [
    StopPath::ControlRoute,
    StopPath::TypedStop,
    StopPath::Disconnect,
    StopPath::LiveSocket,
];

const REPLIES: [&str; 4] = [
    "Hi there, friend. That was a close one!",
    "好的，我们继续吧。",
    "Nice move. The boss is almost down, keep going.",
    "えっと、それはいい質問ですね。",
];

#[derive(Debug, Default, Serialize)]
pub struct SoakReport {
    pub minutes: f64,
    pub speed: f64,
    pub sessions: usize,
    pub redis: bool,
    pub turns: u64,
    pub stops: u64,
    pub stops_by_path: BTreeMap<String, u64>,
    pub fatal_errors: u64,
    /// The first few, in words.
    pub fatal_samples: Vec<String>,
    pub chunks_after_stop: u64,
    pub stops_without_ack: u64,
    pub events_expected: u64,
    pub events_delivered: u64,
    /// Per outbox stream (see [`delivery`]).
    pub streams: BTreeMap<String, StreamDelivery>,
    pub dead_letters: u64,
    pub settings_changes: u64,
    pub live_clients_joined: u64,
    pub redis_restarts: u64,
    /// After the warm-up (the first tenth of the run).
    pub rss_start_mb: f64,
    pub rss_end_mb: f64,
    pub rss_peak_mb: f64,
    pub fds_start: u64,
    pub fds_end: u64,
    pub fds_peak: u64,
    pub sqlite_mb: f64,
}

/// What every task adds to.
#[derive(Default)]
struct Tally {
    fatal: AtomicU64,
    fatal_samples: Mutex<Vec<String>>,
    stops: Mutex<BTreeMap<StopPath, u64>>,
    chunks_after_stop: AtomicU64,
    stops_without_ack: AtomicU64,
    settings_changes: AtomicU64,
    live_joined: AtomicU64,
}

impl Tally {
    fn fatal(&self, what: impl Into<String>) {
        self.fatal.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.fatal_samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() < 10 {
            samples.push(what.into());
        }
    }

    fn stopped(&self, path: StopPath) {
        *self
            .stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(path)
            .or_default() += 1;
    }
}

#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Target {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    fn live_url(&self, session: &str) -> String {
        format!(
            "{}/ws/live?token={}&session={session}",
            self.base.replace("http://", "ws://"),
            self.token
        )
    }
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let report = soak(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    let clean = report.fatal_errors == 0
        && report.chunks_after_stop == 0
        && report.stops_without_ack == 0
        && report.events_delivered == report.events_expected;
    anyhow::ensure!(clean, "the soak found faults (see the report)");
    Ok(())
}

pub async fn soak(args: &SoakArgs) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(
        args.minutes > 0.0 && args.speed > 0.0 && args.sessions > 0,
        "--minutes, --speed and --sessions must be positive"
    );
    let tally = Arc::new(Tally::default());
    install_panic_counter(tally.clone());
    let speed = args.speed;
    let fake = FakeOpenAi::start(FakeScript::cycle(
        REPLIES
            .iter()
            .map(|reply| {
                FakeResponse::Stream(
                    FakeStream::from_text(reply)
                        .with_first_token_delay(scaled(Duration::from_millis(300), speed))
                        .with_token_gap(scaled(Duration::from_millis(40), speed)),
                )
            })
            .collect(),
    ))
    .await;
    let dir = std::env::temp_dir().join(format!("kotodama-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut redis = if args.redis {
        Some(RedisChild::start(&dir)?)
    } else {
        None
    };
    let mut raw = bench_config(&dir, &fake.base_url());
    raw.set("tts_provider", "mock");
    raw.set("sync_tts_streaming", "true");
    raw.set("asr_provider", "mock");
    raw.set("chat_answer_every_s", "0");
    raw.set("chat_answer_during_streamer", "true");
    raw.set("chat_max_per_user", "1000");
    raw.set("chat_duplicate_window_s", "0");
    if let Some(redis) = &redis {
        raw.set("redis_url", redis.url());
    }
    let server = crate::start(raw.build()?).await?;
    let target = Target {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        base: server.base_url(),
        token: server.token.expose().to_owned(),
    };
    let db = server.data_dir.join("kotodama.sqlite3");
    let chat_session = raw.value("chat_session").unwrap_or("live-chat").to_owned();

    let started = Instant::now();
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let deadline = started + run_for;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.sessions {
        let (target, tally) = (target.clone(), tally.clone());
        tasks.spawn(streamer(
            target,
            tally,
            format!("soak-{n}"),
            deadline,
            speed,
        ));
    }
    tasks.spawn(chat_viewers(
        target.clone(),
        tally.clone(),
        chat_session.clone(),
        deadline,
        speed,
    ));
    tasks.spawn(live_churn(
        target.clone(),
        tally.clone(),
        args.sessions,
        deadline,
        speed,
    ));
    tasks.spawn(settings_changes(
        target.clone(),
        tally.clone(),
        deadline,
        speed,
    ));

    // Samples every second; the warm-up is the first tenth of the run.
    let warm_up = started + run_for / 10;
    let mut samples: Vec<(Instant, f64, u64)> = Vec::new();
    let mut redis_restarts = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((Instant::now(), rss_mb(), open_fds()));
        if let Some(redis) = &mut redis
            && redis_restarts == 0
            && Instant::now() >= started + run_for / 2
        {
            redis.restart(Duration::from_secs(3)).await?;
            redis_restarts += 1;
        }
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(error) = result {
            tally.fatal(format!("a soak task failed: {error}"));
        }
    }
    // Everything committed must reach the consumers (or Redis) once the inputs stop.
    let (mut streams, mut dead) = (BTreeMap::new(), 0);
    let (mut expected, mut delivered) = (0, 0);
    let wait_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < wait_until {
        (streams, dead) = delivery(&db, args.redis)?;
        let consumed = streams.values().filter(|s| s.consumed);
        expected = consumed.clone().map(|s| s.rows).sum();
        delivered = consumed.map(|s| s.delivered).sum();
        if delivered == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let turns = count_turns(&db)?;
    let sqlite_mb = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", db.display())).ok())
        .map(|meta| meta.len() as f64 / 1_048_576.0)
        .sum();
    let after_warm_up: Vec<_> = samples.iter().filter(|(at, ..)| *at >= warm_up).collect();
    let first = after_warm_up.first().copied().or(samples.first()).copied();
    let last = samples.last().copied();
    server.shutdown().await?;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);

    let stops_by_path: BTreeMap<String, u64> = tally
        .stops
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(path, n)| {
            let name = serde_json::to_value(path)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (name, *n)
        })
        .collect();
    Ok(SoakReport {
        minutes: args.minutes,
        speed,
        sessions: args.sessions,
        redis: args.redis,
        turns,
        stops: stops_by_path.values().sum(),
        stops_by_path,
        fatal_errors: tally.fatal.load(Ordering::Relaxed),
        fatal_samples: tally
            .fatal_samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        chunks_after_stop: tally.chunks_after_stop.load(Ordering::Relaxed),
        stops_without_ack: tally.stops_without_ack.load(Ordering::Relaxed),
        events_expected: expected,
        events_delivered: delivered,
        streams,
        dead_letters: dead,
        settings_changes: tally.settings_changes.load(Ordering::Relaxed),
        live_clients_joined: tally.live_joined.load(Ordering::Relaxed),
        redis_restarts,
        rss_start_mb: first.map_or(0.0, |s| s.1),
        rss_end_mb: last.map_or(0.0, |s| s.1),
        rss_peak_mb: samples.iter().map(|s| s.1).fold(0.0, f64::max),
        fds_start: first.map_or(0, |s| s.2),
        fds_end: last.map_or(0, |s| s.2),
        fds_peak: samples.iter().map(|s| s.2).max().unwrap_or(0),
        sqlite_mb,
    })
}

fn scaled(duration: Duration, speed: f64) -> Duration {
    duration.div_f64(speed)
}

/// A session's `/ws/live` watcher: what it saw, for the STOP checks.
#[derive(Default)]
struct Watch {
    /// Turns up to this one are fenced: a chunk of them now is a fault.
    fenced_through: Option<u64>,
    max_turn: Option<u64>,
    acks: u64,
}

/// Watches `session` on `/ws/live` until `done`, sending the STOPs it is handed; counts chunks
/// of fenced turns.
async fn watch_live(
    target: Target,
    tally: Arc<Tally>,
    session: String,
    watch: Arc<Mutex<Watch>>,
    mut stops: mpsc::Receiver<()>,
    done: tokio_util::sync::CancellationToken,
) {
    let socket = match tokio_tungstenite::connect_async(target.live_url(&session)).await {
        Ok((socket, _)) => socket,
        Err(error) => {
            tally.fatal(format!("/ws/live for {session} refused: {error}"));
            return;
        }
    };
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            Some(()) = stops.recv() => {
                let stop = json!({"type":"CONTROL","action":"STOP","sessionId":session,"reason":"user_interrupt"});
                if sink.send(Message::Text(stop.to_string().into())).await.is_err() {
                    tally.fatal(format!("/ws/live for {session} closed before its STOP"));
                    return;
                }
            }
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => {
                        tally.fatal(format!("/ws/live for {session} failed: {error}"));
                        return;
                    }
                    None => {
                        tally.fatal(format!("/ws/live for {session} closed by the server"));
                        return;
                    }
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    tally.fatal(format!("/ws/live sent a frame that is not JSON: {text}"));
                    continue;
                };
                let turn = frame["turn"].as_u64();
                let mut watch = watch.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(turn) = turn {
                    watch.max_turn = watch.max_turn.max(Some(turn));
                }
                match (frame["type"].as_str(), frame["action"].as_str()) {
                    (Some("SPEECH_CHUNK"), _) => {
                        if let (Some(turn), Some(fenced)) = (turn, watch.fenced_through)
                            && turn <= fenced
                        {
                            tally.chunks_after_stop.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    (Some("CONTROL"), Some("STOP_ACK")) => {
                        let fenced = turn.or(watch.max_turn);
                        watch.fenced_through = watch.fenced_through.max(fenced);
                        watch.acks += 1;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One streamer: typed and spoken inputs one after another, a random half of them barged in.
async fn streamer(
    target: Target,
    tally: Arc<Tally>,
    session: String,
    deadline: Instant,
    speed: f64,
) {
    let watch = Arc::new(Mutex::new(Watch::default()));
    let (stop_tx, stop_rx) = mpsc::channel(4);
    let done = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(watch_live(
        target.clone(),
        tally.clone(),
        session.clone(),
        watch.clone(),
        stop_rx,
        done.clone(),
    ));
    // The watcher is on before the first turn, so it sees every STOP_ACK.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut n = 0u64;
    while Instant::now() < deadline {
        let think = rand::rng().random_range(0..3_000);
        tokio::time::sleep(scaled(Duration::from_millis(think), speed)).await;
        n += 1;
        let spoken = rand::rng().random_bool(0.15);
        let request = if spoken {
            target
                .post(&format!("/chat/audio/stream?sessionId={session}"))
                .header("content-type", "audio/wav")
                .body(wav_tone(Duration::from_millis(600)))
        } else {
            target
                .post("/chat/stream")
                .json(&json!({"sessionId": session, "content": format!("question {n}")}))
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tally.fatal(format!("{session}: input not sent: {error}"));
                continue;
            }
        };
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            tally.fatal(format!("{session}: input answered {status}: {body}"));
            continue;
        }
        let barge_in = rand::rng()
            .random_bool(0.5)
            .then(|| STOP_PATHS[rand::rng().random_range(0..STOP_PATHS.len())]);
        let acks_before = watch.lock().unwrap_or_else(|p| p.into_inner()).acks;
        let body = match barge_in {
            None => read_turn(&tally, &session, response).await,
            Some(path) => {
                let after = Duration::from_millis(rand::rng().random_range(0..1_500));
                let reading = read_turn(&tally, &session, response);
                tokio::pin!(reading);
                tokio::select! {
                    body = &mut reading => body,
                    () = tokio::time::sleep(after) => {
                        tally.stopped(path);
                        match path {
                            StopPath::Disconnect => None,
                            _ => {
                                stop(&target, &tally, &session, path, &stop_tx).await;
                                reading.await
                            }
                        }
                    }
                }
            }
        };
        // A turn that ended interrupted has its STOP_ACK on every live client.
        let interrupted = body
            .as_ref()
            .is_none_or(|body| body.contains("\"interrupted\":true"));
        if barge_in.is_some() && interrupted {
            let acked = wait_for(Duration::from_secs(5), || {
                watch.lock().unwrap_or_else(|p| p.into_inner()).acks > acks_before
            })
            .await;
            if !acked {
                tally.stops_without_ack.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    done.cancel();
    let _ = watcher.await;
}

/// The SSE body of a turn, to its end; an `error` event or a broken stream is fatal.
async fn read_turn(tally: &Tally, session: &str, response: reqwest::Response) -> Option<String> {
    match response.text().await {
        Ok(body) => {
            if body.contains("event: error") {
                tally.fatal(format!("{session}: an SSE error: {}", last_lines(&body)));
            }
            Some(body)
        }
        Err(error) => {
            tally.fatal(format!("{session}: the turn's stream broke: {error}"));
            None
        }
    }
}

fn last_lines(body: &str) -> String {
    let lines: Vec<&str> = body.lines().rev().take(6).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

async fn stop(
    target: &Target,
    tally: &Tally,
    session: &str,
    path: StopPath,
    live: &mpsc::Sender<()>,
) {
    let sent = match path {
        StopPath::ControlRoute => target
            .post("/control/stop")
            .json(&json!({"sessionId": session}))
            .send()
            .await
            .map(|r| r.status()),
        StopPath::TypedStop => target
            .post("/chat/stream")
            .json(&json!({"sessionId": session, "type": "COMMAND", "content": "stop"}))
            .send()
            .await
            .map(|r| r.status()),
        StopPath::LiveSocket => {
            let _ = live.send(()).await;
            return;
        }
        StopPath::Disconnect | StopPath::ChatDeletion => return,
    };
    match sent {
        Ok(status) if status.is_success() => {}
        Ok(status) => tally.fatal(format!("{session}: {path:?} answered {status}")),
        Err(error) => tally.fatal(format!("{session}: {path:?} not sent: {error}")),
    }
}

/// Viewers writing in chat; a moderator deletes a quarter of the messages, often while they
/// are being answered (a STOP of that answer).
async fn chat_viewers(
    target: Target,
    tally: Arc<Tally>,
    chat_session: String,
    deadline: Instant,
    speed: f64,
) {
    let watch = Arc::new(Mutex::new(Watch::default()));
    let (_stop_tx, stop_rx) = mpsc::channel(1);
    let done = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(watch_live(
        target.clone(),
        tally.clone(),
        chat_session,
        watch,
        stop_rx,
        done.clone(),
    ));
    let mut n = 0u64;
    while Instant::now() < deadline {
        let think = rand::rng().random_range(500..4_000);
        tokio::time::sleep(scaled(Duration::from_millis(think), speed)).await;
        n += 1;
        let id = format!("soak-m{n}");
        let message = json!({"messages": [{"id": id, "platform": "twitch",
            "user": {"id": format!("viewer{}", n % 40), "name": format!("viewer{}", n % 40)},
            "kind": "message", "text": format!("Kotodama, what about level {n}?")}]});
        post_chat(&target, &tally, message).await;
        if rand::rng().random_bool(0.25) {
            let target = target.clone();
            let tally = tally.clone();
            let after = Duration::from_millis(rand::rng().random_range(0..1_500));
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                tally.stopped(StopPath::ChatDeletion);
                let deletion = json!({"messages": [{"id": format!("mod-{id}"), "platform": "twitch",
                    "user": {"id": "mod"}, "kind": "delete", "targetId": id}]});
                post_chat(&target, &tally, deletion).await;
            });
        }
    }
    done.cancel();
    let _ = watcher.await;
}

async fn post_chat(target: &Target, tally: &Tally, body: Value) {
    match target.post("/chat/messages").json(&body).send().await {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => tally.fatal(format!("/chat/messages answered {}", response.status())),
        Err(error) => tally.fatal(format!("/chat/messages not sent: {error}")),
    }
}

/// `/ws/live` clients (an OBS source reloading, a second window) joining a random session and
/// leaving after a random while.
async fn live_churn(
    target: Target,
    tally: Arc<Tally>,
    sessions: usize,
    deadline: Instant,
    speed: f64,
) {
    let mut clients = tokio::task::JoinSet::new();
    while Instant::now() < deadline {
        let pause = rand::rng().random_range(200..2_000);
        tokio::time::sleep(scaled(Duration::from_millis(pause), speed)).await;
        let session = format!("soak-{}", rand::rng().random_range(0..sessions));
        let url = target.live_url(&session);
        let tally = tally.clone();
        let stay = Duration::from_millis(rand::rng().random_range(100..3_000));
        clients.spawn(async move {
            match tokio_tungstenite::connect_async(url).await {
                Ok((mut socket, _)) => {
                    tally.live_joined.fetch_add(1, Ordering::Relaxed);
                    let _ = tokio::time::timeout(stay, async {
                        while let Some(Ok(_)) = socket.next().await {}
                    })
                    .await;
                    // Half leave politely, half just vanish.
                    let polite = rand::rng().random_bool(0.5);
                    if polite {
                        let _ = socket.close(None).await;
                    }
                }
                Err(error) => tally.fatal(format!("a /ws/live client was refused: {error}")),
            }
        });
        while clients.try_join_next().is_some() {}
    }
    while clients.join_next().await.is_some() {}
}

/// The streamer adjusting live settings while the show goes on.
async fn settings_changes(target: Target, tally: Arc<Tally>, deadline: Instant, speed: f64) {
    let changes = [
        json!({"stm_context_turns": 10}),
        json!({"tts_rate": "1.1"}),
        json!({"stm_context_turns": 20}),
        json!({"tts_rate": "1.0"}),
    ];
    for change in changes.iter().cycle() {
        tokio::time::sleep(scaled(Duration::from_secs(20), speed)).await;
        if Instant::now() >= deadline {
            return;
        }
        let answer = target
            .client
            .put(format!("{}/settings", target.base))
            .bearer_auth(&target.token)
            .json(change)
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => {
                tally.settings_changes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                tally.fatal(format!("PUT /settings {change} answered {status}: {body}"));
            }
            Err(error) => tally.fatal(format!("PUT /settings not sent: {error}")),
        }
    }
}

async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// Counts panics (on any thread) as fatal errors, and still prints them.
fn install_panic_counter(tally: Arc<Tally>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tally.fatal(format!("panic: {info}"));
        previous(info);
    }));
}

/// Per outbox stream: its rows, and the rows that reached where they go — handled by every
/// embedded group reading the stream (at or below its cursor, or recorded as processed above
/// it), or with `--redis` put into Redis by the relay. `consumed` says whether anything in this
/// run reads the stream: an embedded stream no group or plugin reads (`events.plugins` with no
/// plugin) is kept for retention, not delivered, and is not counted as expected.
pub(super) fn delivery(
    db: &Path,
    redis: bool,
) -> anyhow::Result<(BTreeMap<String, StreamDelivery>, u64)> {
    let conn = open(db)?;
    let handled = if redis {
        "o.delivered = 1"
    } else {
        "CASE WHEN EXISTS (SELECT 1 FROM consumer_cursors AS c WHERE c.stream = o.stream)
           THEN NOT EXISTS (
             SELECT 1 FROM consumer_cursors AS c
              WHERE c.stream = o.stream AND o.id > c.last_id
                AND NOT EXISTS (SELECT 1 FROM consumer_processed AS p
                                 WHERE p.consumer = c.consumer AND p.stream = o.stream
                                   AND p.outbox_id = o.id))
           ELSE o.delivered = 1 END"
    };
    let consumed = if redis {
        "1"
    } else {
        "EXISTS (SELECT 1 FROM consumer_cursors AS c WHERE c.stream = o.stream) OR MAX(o.delivered) = 1"
    };
    let mut select = conn.prepare(&format!(
        "SELECT o.stream, COUNT(*), SUM(CASE WHEN {handled} THEN 1 ELSE 0 END), {consumed}
           FROM outbox_events AS o GROUP BY o.stream ORDER BY o.stream"
    ))?;
    let rows = select.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            StreamDelivery {
                rows: row.get::<_, i64>(1)? as u64,
                delivered: row.get::<_, i64>(2)? as u64,
                consumed: row.get::<_, i64>(3)? != 0,
            },
        ))
    })?;
    let streams = rows.collect::<Result<BTreeMap<_, _>, _>>()?;
    let dead = conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| {
        r.get::<_, i64>(0).map(|n| n as u64)
    })?;
    Ok((streams, dead))
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StreamDelivery {
    pub rows: u64,
    pub delivered: u64,
    pub consumed: bool,
}

fn count_turns(db: &Path) -> anyhow::Result<u64> {
    Ok(
        open(db)?.query_row("SELECT COUNT(*) FROM turns WHERE role = 'user'", [], |r| {
            r.get::<_, i64>(0).map(|n| n as u64)
        })?,
    )
}

pub(super) fn open(db: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64)
}

/// A 16 kHz mono WAV of a tone: the mock ASR hears "something" in it.
fn wav_tone(length: Duration) -> Vec<u8> {
    const RATE: u32 = 16_000;
    let samples = (RATE as f64 * length.as_secs_f64()) as u32;
    let mut wav = Vec::with_capacity(44 + samples as usize * 2);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples * 2).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(samples * 2).to_le_bytes());
    for i in 0..samples {
        let t = i as f64 / RATE as f64;
        let value = (t * 220.0 * std::f64::consts::TAU).sin() * 8_000.0;
        wav.extend_from_slice(&(value as i16).to_le_bytes());
    }
    wav
}

/// A real `redis-server` on a free loopback port, without persistence, that can be restarted.
pub(super) struct RedisChild {
    port: u16,
    dir: PathBuf,
    child: std::process::Child,
}

impl RedisChild {
    pub(super) fn start(dir: &Path) -> anyhow::Result<RedisChild> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Self::spawn(port, dir)?;
        Ok(RedisChild {
            port,
            dir: dir.to_owned(),
            child,
        })
    }

    fn spawn(port: u16, dir: &Path) -> anyhow::Result<std::process::Child> {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("--redis needs redis-server (apt-get install redis-server)")?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("redis-server did not listen on 127.0.0.1:{port}")
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Down for `outage`, then back on the same port (empty: no persistence).
    async fn restart(&mut self, outage: Duration) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tokio::time::sleep(outage).await;
        self.child = Self::spawn(self.port, &self.dir)?;
        Ok(())
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn print(report: &SoakReport) {
    println!(
        "soak — {:.1} min at speed {}, {} sessions{}, mock voice, loopback fake LLM, all in this process",
        report.minutes,
        report.speed,
        report.sessions,
        if report.redis {
            ", Redis restarted halfway"
        } else {
            ""
        }
    );
    println!(
        "  turns {}   stops {} {:?}",
        report.turns, report.stops, report.stops_by_path
    );
    println!(
        "  fatal errors {}   chunks after STOP_ACK {}   STOPs never acknowledged {}",
        report.fatal_errors, report.chunks_after_stop, report.stops_without_ack
    );
    for sample in &report.fatal_samples {
        println!("    {sample}");
    }
    println!(
        "  events delivered {} of {} ({} dead letters)",
        report.events_delivered, report.events_expected, report.dead_letters
    );
    for (name, stream) in &report.streams {
        let reader = if stream.consumed {
            ""
        } else {
            " (nothing in this run reads it: kept for retention)"
        };
        println!(
            "    {name}: {} of {} rows delivered{reader}",
            stream.delivered, stream.rows
        );
    }
    println!(
        "  RSS after warm-up {:.1} MB → end {:.1} MB (peak {:.1}); fds {} → {} (peak {}); SQLite {:.1} MB",
        report.rss_start_mb,
        report.rss_end_mb,
        report.rss_peak_mb,
        report.fds_start,
        report.fds_end,
        report.fds_peak,
        report.sqlite_mb
    );
    println!(
        "  settings changes {}   /ws/live clients joined and left {}   Redis restarts {}",
        report.settings_changes, report.live_clients_joined, report.redis_restarts
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tone_is_a_wav_of_the_asked_length() {
        let wav = wav_tone(Duration::from_millis(500));
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav.len(), 44 + 8_000 * 2);
    }
}
