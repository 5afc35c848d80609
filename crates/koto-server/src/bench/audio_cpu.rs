//! The audio path's CPU cost in `kotodama bench`: whole turns (no STOP) spoken by the mock voice
//! through the relay to three `/ws/live` clients per session — JSON with audio (the original
//! overlay's way), binary audio, and no audio (subtitles only) — and the process's CPU time
//! divided by the audio the binary clients received.
//!
//! The figure is the server's: segmenting, the mock voice (a cheap synthetic tone, resampled),
//! chunking, the relay's pacing and fan-out, and the socket edge's encoding. The bench's own
//! WebSocket clients run on a thread of their own, whose CPU time is subtracted (their
//! WebSocket library zeroes a 128 KiB read buffer per frame: left in, it hid the server's share).
//! CPU time is read from `/proc/self/stat` and `/proc/thread-self/stat` (Linux only, 10 ms
//! ticks, so runs are long enough for it to matter little).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream, split_tokens};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

const REPLY: &str = "Welcome back, everyone! Tonight we are trying the hard mode that chat asked \
for, and I have a feeling it will go badly. First a warm-up round, then the real thing. Stay \
with me until the end, because the best part is always at the very end of the stream.";

#[derive(Debug, Serialize)]
pub struct AudioCpu {
    pub sessions: usize,
    pub turns: usize,
    pub clients_per_session: usize,
    /// Audio received by one binary client per session, summed over sessions.
    pub spoken_s: f64,
    /// The server's CPU time: the process's, less the bench clients' thread.
    pub cpu_ms: f64,
    /// The bench clients' own CPU time (not in `cpu_ms`).
    pub clients_cpu_ms: f64,
    /// `cpu_ms / spoken_s`: the server's CPU milliseconds per second of speech delivered.
    pub cpu_ms_per_spoken_s: f64,
    pub wall_s: f64,
}

pub async fn run(sessions: usize, turns_per_session: usize) -> anyhow::Result<AudioCpu> {
    let reply = FakeStream::new(split_tokens(REPLY)).with_first_token_delay(Duration::ZERO);
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Stream(reply))).await;
    let dir = std::env::temp_dir().join(format!("kotodama-bench-audio-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut raw = super::bench_config(&dir, &fake.base_url());
    raw.set("tts_provider", "mock");
    let server = crate::start(raw.build()?).await?;
    let token = server.token.expose().to_owned();
    let ws_base = server.base_url().replace("http://", "ws://");
    let chat_url = format!("{}/chat/stream", server.base_url());

    // Microseconds of audio the binary clients received.
    let received_us = Arc::new(AtomicU64::new(0));
    let clients = ClientThread::start(sessions, &ws_base, &token, Arc::clone(&received_us))?;

    let cpu_before = process_cpu()?;
    let started = Instant::now();
    let http = reqwest::Client::new();
    let mut speakers = Vec::new();
    for session in 0..sessions {
        let (http, url, token) = (http.clone(), chat_url.clone(), token.clone());
        speakers.push(tokio::spawn(async move {
            for _ in 0..turns_per_session {
                let body = serde_json::json!({
                    "sessionId": format!("bench-audio-{session}"),
                    "content": "Tell the stream what we do tonight."
                });
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await?
                    .error_for_status()?;
                // `done` comes after the relay released the turn's END: the audio is out.
                let text = response.text().await?;
                anyhow::ensure!(
                    text.contains("event: done"),
                    "turn did not complete: {text}"
                );
            }
            anyhow::Ok(())
        }));
    }
    for speaker in speakers {
        speaker.await??;
    }
    // `done` means the relay released the END; the last chunks may still be on the wire.
    let mut seen = received_us.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = received_us.load(Ordering::Relaxed);
        if now == seen {
            break;
        }
        seen = now;
    }
    let wall = started.elapsed();
    let process = process_cpu()?.saturating_sub(cpu_before);
    // The clients go first: a graceful shutdown waits for open sockets.
    let clients_cpu = clients.stop()?;
    let cpu = process.saturating_sub(clients_cpu);
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    let spoken_s = seen as f64 / 1e6;
    let cpu_ms = cpu.as_secs_f64() * 1000.0;
    Ok(AudioCpu {
        sessions,
        turns: sessions * turns_per_session,
        clients_per_session: 3,
        spoken_s,
        cpu_ms,
        clients_cpu_ms: clients_cpu.as_secs_f64() * 1000.0,
        cpu_ms_per_spoken_s: if spoken_s > 0.0 {
            cpu_ms / spoken_s
        } else {
            0.0
        },
        wall_s: wall.as_secs_f64(),
    })
}

/// The `/ws/live` clients, on a current-thread runtime of their own thread, so their CPU time
/// can be told apart from the server's.
struct ClientThread {
    stop: tokio::sync::oneshot::Sender<()>,
    /// The thread's CPU time when it is stopped (read on the thread itself).
    done: std::thread::JoinHandle<anyhow::Result<Duration>>,
    started_cpu: Duration,
}

impl ClientThread {
    fn start(
        sessions: usize,
        ws_base: &str,
        token: &str,
        received_us: Arc<AtomicU64>,
    ) -> anyhow::Result<ClientThread> {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (ws_base, token) = (ws_base.to_owned(), token.to_owned());
        let done = std::thread::spawn(move || -> anyhow::Result<Duration> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut clients = Vec::new();
                for session in 0..sessions {
                    for query in ["audio=1", "audio=1&binary=1", "audio=0"] {
                        let url = format!(
                            "{ws_base}/ws/live?token={token}&session=bench-audio-{session}&{query}"
                        );
                        let (live, _) = tokio_tungstenite::connect_async(url)
                            .await
                            .context("connecting /ws/live")?;
                        clients.push(tokio::spawn(count_audio(live, Arc::clone(&received_us))));
                    }
                }
                let _ = ready_tx.send(thread_cpu());
                let _ = stopped.await;
                for client in &clients {
                    client.abort();
                }
                anyhow::Ok(())
            })?;
            thread_cpu()
        });
        let started_cpu = ready
            .recv()
            .context("the bench clients did not connect")??;
        Ok(ClientThread {
            stop,
            done,
            started_cpu,
        })
    }

    /// Disconnects the clients; their thread's CPU time since they connected.
    fn stop(self) -> anyhow::Result<Duration> {
        let _ = self.stop.send(());
        let total = self
            .done
            .join()
            .map_err(|_| anyhow::anyhow!("the bench clients' thread panicked"))??;
        Ok(total.saturating_sub(self.started_cpu))
    }
}

type Live =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Adds the audio in the binary frames this client receives to `received_us` (JSON clients
/// add nothing, so each session's audio is counted once).
async fn count_audio(mut live: Live, received_us: Arc<AtomicU64>) {
    while let Some(Ok(message)) = live.next().await {
        match message {
            Message::Binary(frame) => {
                let Some((len, rest)) = frame.split_first_chunk::<4>() else {
                    continue;
                };
                let header_len = u32::from_le_bytes(*len) as usize;
                let Some((header, pcm)) = rest.split_at_checked(header_len) else {
                    continue;
                };
                let rate = serde_json::from_slice::<serde_json::Value>(header)
                    .ok()
                    .and_then(|h| h["sampleRate"].as_f64())
                    .unwrap_or(24_000.0);
                let micros = pcm.len() as f64 / 2.0 / rate * 1e6;
                received_us.fetch_add(micros as u64, Ordering::Relaxed);
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
}

/// User + system CPU time of the whole process so far.
fn process_cpu() -> anyhow::Result<Duration> {
    cpu_of("/proc/self/stat")
}

/// User + system CPU time of the calling thread so far.
fn thread_cpu() -> anyhow::Result<Duration> {
    cpu_of("/proc/thread-self/stat")
}

fn cpu_of(path: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(path)
        .with_context(|| format!("the CPU figure needs {path} (Linux)"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("odd /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("short /proc/self/stat")?
            .parse()
            .context("odd /proc/self/stat")
    };
    // Fields 14 and 15 of stat(5), counted from 3 after the command name; 100 ticks a second
    // on every Linux build this runs on (the kernel's user tick rate).
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 10))
}
