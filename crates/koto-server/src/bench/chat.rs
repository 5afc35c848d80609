//! The chat flood: `rate` messages/s for `seconds` through `POST /chat/messages` (batches every
//! 100 ms; a mix of chat, questions, super chats, duplicates, links and moderation) into the
//! running app. Reports what the streamer must trust during a flood: nothing lost (received =
//! picked + dropped + still waiting), the queue's length bounded by its capacity, how long a
//! decision takes, `ChatQueue::pick` over a full queue, and the chat turns' time to first text.
//! A benchmark: it measures wall-clock time on purpose and asserts nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use koto_core::chat::{ChatEvent, ChatKind, ChatUser};
use koto_core::chat_queue::{ChatQueue, QueueConfig};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Percentiles, percentiles};
use crate::config::RawConfig;

const SESSION: &str = "bench-chat";
const BATCH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
pub struct ChatFlood {
    pub rate_per_sec: usize,
    pub seconds: u64,
    /// Messages the API accepted (moderation events included). RSS below is the whole bench
    /// process: the app plus this bench's own record of every id and frame.
    pub sent: usize,
    pub achieved_per_sec: f64,
    pub received: u64,
    pub moderation: u64,
    pub picked: u64,
    pub dropped: u64,
    pub retracted: u64,
    pub waiting_at_end: usize,
    /// received − picked − dropped − waiting: must be 0.
    pub lost: i64,
    pub capacity: usize,
    pub max_waiting_seen: usize,
    pub rss_kib_before: u64,
    pub rss_kib_after: u64,
    /// POST sent → drop decision (server clock), ms, for drops at the door (duplicate, link,
    /// filters, flood, queue full): the intake path's latency.
    pub drop_at_intake_ms: Percentiles,
    /// POST sent → drop of a message that had waited (evicted, expired, deleted, banned), ms.
    pub drop_after_waiting_ms: Percentiles,
    /// POST sent → pick, ms (includes the wait for the cadence).
    pub pick_wait_ms: Percentiles,
    /// `ChatQueue::pick` over a full queue, µs (in process, no IO).
    pub pick_compute_us: Percentiles,
    /// A chat turn's user-input frame → its first text-delta frame at a `/ws/live` client, ms.
    pub chat_turn_first_text_ms: Percentiles,
    pub decision_frames_seen: usize,
}

pub async fn run(rate: usize, seconds: u64) -> anyhow::Result<ChatFlood> {
    let pick_compute_us = pick_compute();
    let dir = std::env::temp_dir().join(format!("kotodama-bench-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut raw = RawConfig::default();
    raw.set("bind", "127.0.0.1:0");
    raw.set("data_dir", dir.to_string_lossy());
    raw.set("llm_provider", "mock");
    raw.set("mock_llm_token_ms", "5");
    raw.set("sync_tts_streaming", "false");
    raw.set("chat_session", SESSION);
    raw.set("chat_answer_every_s", "1");
    raw.set("chat_batch_max", "10000");
    raw.set("max_body_bytes", "4194304");
    let server = crate::start(raw.build()?).await?;
    let base = server.base_url();
    let token = server.token.expose().to_owned();
    let client = reqwest::Client::new();

    let url = format!(
        "{}/ws/live?session={SESSION}&audio=0&token={token}",
        base.replace("http://", "ws://")
    );
    let (mut live, _) = tokio_tungstenite::connect_async(url).await?;
    let reader = tokio::spawn(async move {
        let mut frames: Vec<(Instant, Value)> = Vec::new();
        while let Some(Ok(message)) = live.next().await {
            if let Message::Text(text) = message
                && let Ok(frame) = serde_json::from_str::<Value>(&text)
            {
                if frame["type"] == "CONTROL" && frame["reason"] == "bench_done" {
                    break;
                }
                frames.push((Instant::now(), frame));
            }
        }
        frames
    });

    let rss_kib_before = rss_kib();
    let per_batch = (rate as f64 * BATCH_EVERY.as_secs_f64()).round().max(1.0) as usize;
    let mut sent_at: HashMap<String, i64> = HashMap::new();
    let mut sent = 0usize;
    let mut max_waiting_seen = 0usize;
    let started = Instant::now();
    let mut tick = tokio::time::interval(BATCH_EVERY);
    let mut serial = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let mut batch = Vec::with_capacity(per_batch);
        for _ in 0..per_batch {
            batch.push(flood_message(serial));
            serial += 1;
        }
        let now = crate::live_chat::now_ms();
        for message in &batch {
            if let Some(id) = message["id"].as_str() {
                sent_at.insert(id.to_owned(), now);
            }
        }
        let answer: Value = client
            .post(format!("{base}/chat/messages"))
            .bearer_auth(&token)
            .json(&json!({ "messages": batch }))
            .send()
            .await?
            .json()
            .await?;
        sent += answer["accepted"].as_u64().unwrap_or(0) as usize;
        if serial % (per_batch * 10) < per_batch {
            let view = queue(&client, &base, &token).await?;
            max_waiting_seen = max_waiting_seen.max(view["waiting"].as_array().map_or(0, Vec::len));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the driver take in what the intake still holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let view = queue(&client, &base, &token).await?;
    let rss_kib_after = rss_kib();
    // The reader stops on a STOP for the session whose reason marks the end.
    let session = koto_core::SessionId::parse(SESSION)?;
    if let Some(relay) = server.engine.relay() {
        drop(relay.begin_stop(&session, "bench_done"));
    }
    let frames = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);

    let mut drop_ms = Vec::new();
    let mut drop_later_ms = Vec::new();
    let mut pick_ms = Vec::new();
    let mut first_text = Vec::new();
    let mut input_at: Option<Instant> = None;
    let mut decision_frames_seen = 0;
    for (at, frame) in &frames {
        match frame["type"].as_str() {
            Some("CHAT_DECISION") => {
                decision_frames_seen += 1;
                let sent = frame["messageId"].as_str().and_then(|id| sent_at.get(id));
                if let (Some(sent), Some(ts)) = (sent, frame["ts"].as_i64()) {
                    let ms = (ts - sent) as f64;
                    match frame["decision"].as_str() {
                        Some("picked") => pick_ms.push(ms),
                        Some("dropped") => match frame["reasonCode"].as_str() {
                            Some("evicted" | "expired" | "deleted" | "banned" | "skipped") => {
                                drop_later_ms.push(ms)
                            }
                            _ => drop_ms.push(ms),
                        },
                        _ => {}
                    }
                }
            }
            Some("USER_INPUT") => input_at = Some(*at),
            Some("TEXT_DELTA") => {
                if let Some(input) = input_at.take() {
                    first_text.push(at.duration_since(input).as_secs_f64() * 1e3);
                }
            }
            _ => {}
        }
    }
    let stats = &view["stats"];
    let count = |key: &str| stats[key].as_u64().unwrap_or(0);
    let waiting_at_end = view["waiting"].as_array().map_or(0, Vec::len);
    let lost = count("received") as i64
        - count("picked") as i64
        - count("dropped") as i64
        - waiting_at_end as i64;
    Ok(ChatFlood {
        rate_per_sec: rate,
        seconds,
        sent,
        achieved_per_sec: sent as f64 / elapsed.max(1e-9),
        received: count("received"),
        moderation: count("moderation"),
        picked: count("picked"),
        dropped: count("dropped"),
        retracted: count("retracted"),
        waiting_at_end,
        lost,
        capacity: view["capacity"].as_u64().unwrap_or(0) as usize,
        max_waiting_seen: max_waiting_seen.max(waiting_at_end),
        rss_kib_before,
        rss_kib_after,
        drop_at_intake_ms: percentiles(drop_ms),
        drop_after_waiting_ms: percentiles(drop_later_ms),
        pick_wait_ms: percentiles(pick_ms),
        pick_compute_us,
        chat_turn_first_text_ms: percentiles(first_text),
        decision_frames_seen,
    })
}

async fn queue(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(format!("{base}/chat/queue"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?)
}

/// A flood's mix, deterministic by serial: mostly chat with many repeats, some questions, a
/// few super chats, links and deletions, from 3000 viewers.
fn flood_message(serial: usize) -> Value {
    const CHAT: &[&str] = &[
        "LOL",
        "gg",
        "pog",
        "hello from Berlin",
        "this boss is hard",
        "666",
        "哈哈哈",
        "草",
        "first time here",
        "love the music",
    ];
    let user = format!("viewer{}", serial % 3000);
    let id = format!("flood-{serial}");
    let user_json = json!({"id": user, "name": user});
    match serial % 100 {
        0..=1 => json!({"id": id, "platform": "twitch", "user": user_json, "kind": "superchat",
                         "text": format!("big fan #{serial}"), "amount": 5, "currency": "USD"}),
        2..=11 => json!({"id": id, "platform": "youtube", "user": user_json, "kind": "question",
                          "text": format!("what is your setup {}?", serial % 40)}),
        12..=13 => json!({"id": id, "platform": "twitch", "user": user_json, "kind": "message",
                           "text": "free followers at spam.com"}),
        14 => json!({"id": id, "platform": "twitch", "user": {"id": "mod"}, "kind": "delete",
                      "targetId": format!("flood-{}", serial.saturating_sub(3))}),
        // Distinct lines, so the queue fills to its capacity and evicts.
        15..=49 => json!({"id": id, "platform": "twitch", "user": user_json, "kind": "message",
                           "text": format!("chat line {}", serial % 997)}),
        _ => json!({"id": id, "platform": "bilibili", "user": user_json, "kind": "message",
                     "text": CHAT[serial % CHAT.len()]}),
    }
}

/// `ChatQueue::pick` with the queue at its capacity (200), 2000 times.
fn pick_compute() -> Percentiles {
    let mut queue = ChatQueue::new(QueueConfig {
        answer_every_ms: 0,
        max_per_user: 1000,
        ..QueueConfig::default()
    });
    let mut samples = Vec::with_capacity(2000);
    let mut serial = 0u64;
    let mut now = 0i64;
    for _ in 0..2000 {
        while queue.len() < queue.config().capacity {
            serial += 1;
            queue.push(event(serial), now);
        }
        now += 10;
        let started = Instant::now();
        let pick = queue.pick(now, false);
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        if let Some(pick) = pick {
            queue.finished(&pick.event.message_id);
        }
    }
    percentiles(samples)
}

fn event(serial: u64) -> ChatEvent {
    ChatEvent {
        platform: "twitch".into(),
        channel: String::new(),
        message_id: format!("m{serial}"),
        user: ChatUser {
            id: format!("u{}", serial % 500),
            name: String::new(),
            badges: Vec::new(),
            roles: Default::default(),
        },
        kind: if serial.is_multiple_of(7) {
            ChatKind::Question
        } else {
            ChatKind::Message
        },
        text: format!("message number {serial}"),
        emotes: Vec::new(),
        amount: None,
        target_id: None,
        platform_time_ms: None,
        received_ms: 0,
    }
}

/// This process's resident memory (the app runs in it), KiB; 0 where `/proc` is missing.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn print(flood: &ChatFlood) {
    let fmt = |p: &Percentiles| {
        format!(
            "{:.2} / {:.2} / {:.2} (max {:.2})",
            p.p50, p.p95, p.p99, p.max
        )
    };
    println!(
        "chat flood — {} msg/s asked, {:.0} msg/s sent for {} s through POST /chat/messages",
        flood.rate_per_sec, flood.achieved_per_sec, flood.seconds
    );
    println!(
        "  sent {}: received {} + moderation {}; picked {} + dropped {} + waiting {} → lost {}",
        flood.sent,
        flood.received,
        flood.moderation,
        flood.picked,
        flood.dropped,
        flood.waiting_at_end,
        flood.lost
    );
    println!(
        "  queue: at most {} waiting seen (capacity {}); RSS {} → {} KiB; {} retracted",
        flood.max_waiting_seen,
        flood.capacity,
        flood.rss_kib_before,
        flood.rss_kib_after,
        flood.retracted
    );
    println!(
        "  drop at intake ms p50/p95/p99  {}",
        fmt(&flood.drop_at_intake_ms)
    );
    println!(
        "  drop after waiting ms          {}",
        fmt(&flood.drop_after_waiting_ms)
    );
    println!(
        "  pick wait ms p50/p95/p99       {}",
        fmt(&flood.pick_wait_ms)
    );
    println!(
        "  pick() over a full queue µs    {}",
        fmt(&flood.pick_compute_us)
    );
    println!(
        "  chat turn first text ms        {}",
        fmt(&flood.chat_turn_first_text_ms)
    );
    println!(
        "  CHAT_DECISION frames seen by one /ws/live client: {}",
        flood.decision_frames_seen
    );
}
