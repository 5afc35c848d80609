//! `kotodama crash`: crash durability as a figure. The real `kotodama serve` runs as a child
//! process on one data dir and is SIGKILLed again and again at random points — while the LLM
//! streams, while the voice speaks, right after a turn committed (its events being relayed),
//! and idle — then started again on the same files. At the end one more start recovers, and the
//! database itself is read: every turn a client saw completed must be there, done; no row may be
//! left `open`; `PRAGMA integrity_check` must say ok; every event of a stream something reads
//! must have been delivered (and with `--redis`, duplicates re-sent after a kill are absorbed by
//! their outbox id).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript, FakeStream};
use rand::Rng;
use serde::Serialize;
use serde_json::json;

use super::soak::{RedisChild, StreamDelivery, delivery, open};

const TOKEN: &str = "crash-test-token-0123456789";

#[derive(Debug, clap::Args)]
pub struct CrashArgs {
    /// How many times the server is killed.
    #[arg(long, default_value_t = 200)]
    pub kills: usize,
    /// Sessions talking at once in each life of the server.
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
    /// Relay the outbox into a real Redis (`redis-server` on 127.0.0.1, started here).
    #[arg(long)]
    pub redis: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where in a turn's life the kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum KillPoint {
    /// After the first text, while the LLM still streams.
    MidLlm,
    /// After the LLM's end, while the voice speaks the rest.
    MidSpeech,
    /// The moment a turn's `done` arrived: its commit's events are being relayed.
    MidOutbox,
    /// Every turn ended, nothing running.
    Idle,
}

const KILL_POINTS: [KillPoint; 4] = [
    KillPoint::MidLlm,
    KillPoint::MidSpeech,
    KillPoint::MidOutbox,
    KillPoint::Idle,
];

#[derive(Debug, Default, Serialize)]
pub struct CrashReport {
    pub kills: usize,
    pub redis: bool,
    pub kills_by_point: BTreeMap<String, u64>,
    /// Turns whose client got `done` not interrupted: they must survive.
    pub committed_turns: u64,
    pub committed_turns_lost: u64,
    pub turns_in_db: u64,
    pub rows_left_open: u64,
    pub integrity_check: String,
    pub events_expected: u64,
    pub events_delivered: u64,
    pub events_lost: u64,
    pub streams: BTreeMap<String, StreamDelivery>,
    /// Re-deliveries a consumer recognised by outbox id (`koto_events_consumed_total` with
    /// `result="duplicate"`, read from each life's `/metrics` just before its kill and from the
    /// last start).
    pub duplicates_absorbed: u64,
    /// Starts that did not come up (each is a fault).
    pub failed_starts: u64,
}

pub async fn run(args: CrashArgs) -> anyhow::Result<()> {
    let report = crash(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    let clean = report.committed_turns_lost == 0
        && report.rows_left_open == 0
        && report.integrity_check == "ok"
        && report.events_lost == 0
        && report.failed_starts == 0;
    anyhow::ensure!(clean, "the crash test found losses (see the report)");
    Ok(())
}

pub async fn crash(args: &CrashArgs) -> anyhow::Result<CrashReport> {
    anyhow::ensure!(args.sessions > 0, "--sessions must be positive");
    let reply = "Welcome back, everyone! Today we build a castle, block by block, and then we \
                 defend it against the night.";
    let fake = FakeOpenAi::start(FakeScript::cycle(vec![FakeResponse::Stream(
        FakeStream::from_text(reply)
            .with_first_token_delay(Duration::from_millis(40))
            .with_token_gap(Duration::from_millis(25)),
    )]))
    .await;
    let dir = std::env::temp_dir().join(format!("kotodama-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir)?;
    let redis = if args.redis {
        Some(RedisChild::start(&dir)?)
    } else {
        None
    };
    let life = Life {
        exe: std::env::current_exe().context("finding the kotodama binary")?,
        data_dir: data_dir.clone(),
        llm_url: fake.base_url(),
        redis_url: redis.as_ref().map(RedisChild::url),
    };
    let client = reqwest::Client::new();
    let mut report = CrashReport {
        kills: args.kills,
        redis: args.redis,
        ..CrashReport::default()
    };
    // What clients saw completed: (session, input).
    let committed: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for kill in 0..args.kills {
        let point = KILL_POINTS[rand::rng().random_range(0..KILL_POINTS.len())];
        *report.kills_by_point.entry(name_of(point)).or_default() += 1;
        let Some(mut server) = life.start().await? else {
            report.failed_starts += 1;
            continue;
        };
        let (seen_text, seen_eos, seen_done) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let mut turns = tokio::task::JoinSet::new();
        for s in 0..args.sessions {
            let request = client
                .post(format!("{}/chat/stream", server.base))
                .bearer_auth(TOKEN)
                .json(
                    &json!({"sessionId": format!("crash-{s}"), "content": format!("q{kill}-{s}")}),
                );
            let (text, eos, done) = (seen_text.clone(), seen_eos.clone(), seen_done.clone());
            let committed = committed.clone();
            turns.spawn(async move {
                let Ok(response) = request.send().await else {
                    return;
                };
                let mut body = response.bytes_stream();
                let mut seen = String::new();
                while let Some(Ok(bytes)) = body.next().await {
                    seen.push_str(&String::from_utf8_lossy(&bytes));
                    if seen.contains("event: text-delta") {
                        text.notify_one();
                    }
                    if seen.contains("\"eos\":true") {
                        eos.notify_one();
                    }
                    if seen.contains("event: done") {
                        if seen.contains("\"interrupted\":false") {
                            committed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((format!("crash-{s}"), format!("q{kill}-{s}")));
                        }
                        done.notify_one();
                    }
                }
            });
        }
        let limit = Duration::from_secs(20);
        let _ = match point {
            KillPoint::MidLlm => tokio::time::timeout(limit, seen_text.notified()).await,
            KillPoint::MidSpeech => {
                let reached = tokio::time::timeout(limit, seen_eos.notified()).await;
                let wait = rand::rng().random_range(0..600);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                reached
            }
            KillPoint::MidOutbox => tokio::time::timeout(limit, seen_done.notified()).await,
            KillPoint::Idle => {
                let _ = tokio::time::timeout(limit * 2, async {
                    while turns.join_next().await.is_some() {}
                })
                .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(())
            }
        };
        report.duplicates_absorbed += duplicates(&client, &server.base).await;
        server.kill();
        turns.abort_all();
        while turns.join_next().await.is_some() {}
    }

    // The last start recovers; then its consumers catch up.
    let Some(mut server) = life.start().await? else {
        anyhow::bail!("the server did not start after the last kill");
    };
    let db = data_dir.join("kotodama.sqlite3");
    let wait_until = Instant::now() + Duration::from_secs(60);
    loop {
        let (streams, _) = delivery(&db, args.redis)?;
        let consumed = streams.values().filter(|s| s.consumed);
        report.events_expected = consumed.clone().map(|s| s.rows).sum();
        report.events_delivered = consumed.map(|s| s.delivered).sum();
        report.streams = streams;
        if report.events_delivered == report.events_expected || Instant::now() > wait_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.events_lost = report.events_expected - report.events_delivered;
    report.duplicates_absorbed += duplicates(&client, &server.base).await;
    server.kill();

    let conn = open(&db)?;
    let committed = committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.committed_turns = committed.len() as u64;
    for (session, input) in &committed {
        let done: i64 = conn.query_row(
            "SELECT COUNT(*) FROM turns AS u JOIN turns AS a
               ON a.sessionId = u.sessionId AND a.turn = u.turn AND a.role = 'assistant'
             WHERE u.sessionId = ?1 AND u.role = 'user' AND u.text = ?2
               AND u.status = 'done' AND a.status = 'done' AND a.text <> ''",
            [session, input],
            |row| row.get(0),
        )?;
        if done == 0 {
            report.committed_turns_lost += 1;
        }
    }
    report.turns_in_db = conn.query_row(
        "SELECT COUNT(*) FROM turns WHERE role = 'user'",
        [],
        |row| row.get::<_, i64>(0),
    )? as u64;
    report.rows_left_open = conn.query_row(
        "SELECT COUNT(*) FROM turns WHERE status = 'open'",
        [],
        |row| row.get::<_, i64>(0),
    )? as u64;
    report.integrity_check =
        conn.query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0))?;
    drop(conn);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

fn name_of(point: KillPoint) -> String {
    serde_json::to_value(point)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// How to start one life of the server.
struct Life {
    exe: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    llm_url: String,
    redis_url: Option<String>,
}

struct Server {
    base: String,
    child: Child,
}

impl Server {
    fn kill(&mut self) {
        // SIGKILL on Unix, TerminateProcess on Windows: no shutdown code runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Life {
    /// Starts `kotodama serve` and waits for its ready line; `None` if it did not come up.
    async fn start(&self) -> anyhow::Result<Option<Server>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(&self.exe);
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("KOTODAMA_TOKEN", TOKEN)
            .env("LLM_PROVIDER", "openai")
            .env("OPENAI_BASE_URL", &self.llm_url)
            .env("LLM_MODEL", "crash")
            .env("TTS_PROVIDER", "mock")
            .env("SYNC_TTS_STREAMING", "true")
            .env("INPUT_RATE_PER_SEC", "100000")
            .env("INPUT_BURST", "100000")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(url) = &self.redis_url {
            command.env("REDIS_URL", url);
        }
        let mut child = command.spawn().context("starting kotodama serve")?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        // Read to the end, not just to the ready line: a closed pipe would fail the child's
        // next line on stdout.
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(" ready: ")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(60), ready).await,
            Ok(Ok(()))
        );
        let mut server = Server {
            base: format!("http://127.0.0.1:{port}"),
            child,
        };
        if !up {
            server.kill();
            return Ok(None);
        }
        Ok(Some(server))
    }
}

/// `koto_events_consumed_total{…,result="duplicate"}` summed over groups, from `/metrics`.
async fn duplicates(client: &reqwest::Client, base: &str) -> u64 {
    let Ok(response) = client
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| {
            line.starts_with("koto_events_consumed_total") && line.contains("result=\"duplicate\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub fn print(report: &CrashReport) {
    println!(
        "crash — {} SIGKILLs of `kotodama serve` on one data dir{} {:?}",
        report.kills,
        if report.redis {
            ", outbox → Redis"
        } else {
            ""
        },
        report.kills_by_point
    );
    println!(
        "  committed turns {} (lost {}), turns in the database {}, rows left open {}, integrity_check {}",
        report.committed_turns,
        report.committed_turns_lost,
        report.turns_in_db,
        report.rows_left_open,
        report.integrity_check
    );
    println!(
        "  events delivered {} of {} (lost {}), duplicates absorbed by outbox id {}, failed starts {}",
        report.events_delivered,
        report.events_expected,
        report.events_lost,
        report.duplicates_absorbed,
        report.failed_starts
    );
    for (name, stream) in &report.streams {
        let reader = if stream.consumed {
            ""
        } else {
            " (nothing reads it: kept for retention)"
        };
        println!(
            "    {name}: {} of {} rows delivered{reader}",
            stream.delivered, stream.rows
        );
    }
}
