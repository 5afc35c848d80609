//! Benchmark support for `kotodama bench`: outbox commit → entry readable by a Redis consumer
//! (latency percentiles and sustained events/s through the real relay), and `redis-benchmark`'s
//! own XADD rate on the same server for comparison. It asserts nothing; callers print.

use std::time::Duration;

use serde::Serialize;

/// What one delivery benchmark measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Samples {
    /// Sequential single-event commits timed from commit to arrival at a reader.
    pub latency_samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Events in each throughput phase.
    pub throughput_events: usize,
    /// Sustained, commits included: events committed three per transaction (one turn's worth)
    /// while the relay runs, / (first commit → last entry read).
    pub events_per_sec: f64,
    /// The relay alone: a committed backlog drained by a fresh relay, / (relay start → last
    /// entry read). Comparable to `redis-benchmark`'s XADD rate.
    pub relay_events_per_sec: f64,
}

impl Samples {
    /// The relay's own rate as a fraction of another rate (e.g. `redis-benchmark`'s XADD).
    pub fn ratio_to(&self, other_per_sec: f64) -> f64 {
        if other_per_sec > 0.0 {
            self.relay_events_per_sec / other_per_sec
        } else {
            0.0
        }
    }
}

/// A payload of the size the engine writes (an `AnalyticsChatStats`), for both benchmarks.
pub const BENCH_PAYLOAD: &str = r#"{"correlationId":"bench-001#42","sessionId":"bench-001","turn":42,"ttft_ms":12.5,"first_audio_ms":80.25,"tokens":57,"interrupted":false,"outcome":"completed","ts":1764000000000}"#;

fn percentile(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// Builds `Samples` from raw latencies (any order) and a throughput measurement.
pub fn summarise(
    mut latencies: Vec<Duration>,
    throughput_events: usize,
    elapsed: Duration,
) -> Samples {
    latencies.sort_unstable();
    Samples {
        latency_samples: latencies.len(),
        p50_ms: percentile(&latencies, 0.50),
        p95_ms: percentile(&latencies, 0.95),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies
            .last()
            .map_or(0.0, |max| max.as_secs_f64() * 1000.0),
        throughput_events,
        events_per_sec: rate(throughput_events, elapsed),
        relay_events_per_sec: 0.0,
    }
}

pub(crate) fn rate(events: usize, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        events as f64 / elapsed.as_secs_f64()
    }
}

#[cfg(feature = "redis")]
pub use redis_bench::{outbox_delivery, redis_benchmark_xadd};

#[cfg(feature = "redis")]
mod redis_bench {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use koto_core::metrics::Registry;
    use koto_store::{NewOutboxEvent, Store};
    use redis::streams::StreamReadReply;
    use tokio::sync::{Notify, mpsc};
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::{BENCH_PAYLOAD, Samples, rate, summarise};
    use crate::consumer::blocking;
    use crate::error::EventsError;
    use crate::metrics::EventsMetrics;
    use crate::redis::{connect, field, field_text, relay::Relay};

    /// Sequential latency samples taken before the throughput run.
    const LATENCY_SAMPLES: usize = 300;
    /// Events per committed transaction in the sustained run: what one turn writes.
    const EVENTS_PER_COMMIT: usize = 3;
    /// Rows per relay pipeline in the benchmark (the server's default is `OUTBOX_BATCH`).
    const RELAY_BATCH: usize = 1024;

    /// Commit → readable latency and sustained rate of the real relay on `store` (use a scratch
    /// store: its rows go to a private stream `bench.outbox.<pid>.<n>`, deleted afterwards).
    /// Three phases: 300 sequential single-event commits (latency); `n` events committed three
    /// per transaction while the relay runs (sustained rate, commits included); `n` events
    /// committed first, then a fresh relay drains them (the relay's own rate).
    pub async fn outbox_delivery(
        store: &Store,
        redis_url: &str,
        n: usize,
    ) -> Result<Samples, EventsError> {
        let stream = format!(
            "bench.outbox.{}.{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let token = CancellationToken::new();
        let (arrivals_tx, mut arrivals) = mpsc::channel::<(i64, Instant)>(8192);
        let mut reader =
            connect(redis_url, Duration::from_secs(2), Duration::from_secs(10)).await?;
        let reader_task = tokio::spawn({
            let stream = stream.clone();
            let token = token.clone();
            async move {
                let mut last = "0-0".to_owned();
                loop {
                    let mut command = redis::cmd("XREAD");
                    command
                        .arg("COUNT")
                        .arg(8192)
                        .arg("BLOCK")
                        .arg(1000)
                        .arg("STREAMS")
                        .arg(&stream)
                        .arg(&last);
                    let read = tokio::select! {
                        _ = token.cancelled() => return,
                        read = command.query_async::<Option<StreamReadReply>>(&mut reader) => read,
                    };
                    let Ok(Some(reply)) = read else { continue };
                    let now = Instant::now();
                    for entry in reply.keys.into_iter().flat_map(|key| key.ids) {
                        let id = entry
                            .map
                            .get(field::OUTBOX_ID)
                            .and_then(field_text)
                            .and_then(|id| id.parse().ok());
                        last = entry.id;
                        if let Some(id) = id
                            && arrivals_tx.send((id, now)).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let payload: serde_json::Value = serde_json::from_str(BENCH_PAYLOAD).unwrap_or_default();
        let event = |index: usize| NewOutboxEvent {
            event_type: "BenchEvent".to_owned(),
            stream: stream.clone(),
            correlation_id: format!("bench#{index}"),
            payload: payload.clone(),
            ts_ms: crate::consumer::now_ms(),
        };
        let relay = BenchRelay::start(store, redis_url, n).await?;

        let result = async {
            let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
            for index in 0..LATENCY_SAMPLES {
                let events = vec![event(index)];
                let ids = blocking(store, move |store| store.append_events(&events)).await?;
                let committed = Instant::now();
                let wanted = ids.first().copied().unwrap_or_default();
                loop {
                    let (id, at) = arrivals.recv().await.ok_or_else(reader_stopped)?;
                    if id == wanted {
                        latencies.push(at.saturating_duration_since(committed));
                        break;
                    }
                }
            }

            let sustained_events: Vec<NewOutboxEvent> =
                (0..n).map(|index| event(LATENCY_SAMPLES + index)).collect();
            let started = Instant::now();
            let ids = commit_in_chunks(store, sustained_events, EVENTS_PER_COMMIT).await?;
            let sustained_end = last_arrival(&mut arrivals, ids).await?;
            let sustained = sustained_end.saturating_duration_since(started);

            // The relay alone: stop it, commit a backlog, time a fresh relay draining it.
            relay.stop().await;
            let backlog: Vec<NewOutboxEvent> = (0..n)
                .map(|index| event(LATENCY_SAMPLES + n + index))
                .collect();
            let ids = commit_in_chunks(store, backlog, 1_000).await?;
            let drain_started = Instant::now();
            let relay = BenchRelay::start(store, redis_url, n).await?;
            let drain_end = last_arrival(&mut arrivals, ids).await?;
            relay.stop().await;
            let mut samples = summarise(latencies, n, sustained);
            samples.relay_events_per_sec =
                rate(n, drain_end.saturating_duration_since(drain_started));
            Ok(samples)
        };
        let outcome = tokio::time::timeout(Duration::from_secs(300), result).await;
        token.cancel();
        let _ = reader_task.await;
        if let Ok(mut cleanup) =
            connect(redis_url, Duration::from_secs(2), Duration::from_secs(5)).await
        {
            let _ = redis::cmd("DEL")
                .arg(&stream)
                .query_async::<i64>(&mut cleanup)
                .await;
        }
        match outcome {
            Ok(samples) => samples,
            Err(_) => Err(EventsError::Tool(
                "the delivery benchmark did not finish within 300 s".to_owned(),
            )),
        }
    }

    fn reader_stopped() -> EventsError {
        EventsError::Tool("the bench reader stopped".to_owned())
    }

    /// When the last of `ids` arrived at the reader.
    async fn last_arrival(
        arrivals: &mut mpsc::Receiver<(i64, Instant)>,
        ids: Vec<i64>,
    ) -> Result<Instant, EventsError> {
        let mut outstanding: HashSet<i64> = ids.into_iter().collect();
        let mut last = Instant::now();
        while !outstanding.is_empty() {
            let (id, at) = arrivals.recv().await.ok_or_else(reader_stopped)?;
            if outstanding.remove(&id) {
                last = at;
            }
        }
        Ok(last)
    }

    async fn commit_in_chunks(
        store: &Store,
        events: Vec<NewOutboxEvent>,
        per_commit: usize,
    ) -> Result<Vec<i64>, EventsError> {
        blocking(store, move |store| {
            let mut ids = Vec::with_capacity(events.len());
            for chunk in events.chunks(per_commit.max(1)) {
                ids.extend(store.append_events(chunk)?);
            }
            Ok(ids)
        })
        .await
    }

    /// A relay of its own for the benchmark's rows, woken by the store's commit hook.
    struct BenchRelay {
        token: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        _subscription: koto_store::OutboxSubscription,
    }

    impl BenchRelay {
        async fn start(
            store: &Store,
            redis_url: &str,
            n: usize,
        ) -> Result<BenchRelay, EventsError> {
            let token = CancellationToken::new();
            let metrics = EventsMetrics::register(&Registry::new())?;
            let epoch_ms = blocking(store, |store| store.stream_epoch_ms()).await?;
            let wake = Arc::new(Notify::new());
            let subscription = store.subscribe_outbox({
                let wake = Arc::clone(&wake);
                Arc::new(move |_| wake.notify_one())
            });
            let task = tokio::spawn(
                Relay {
                    store: store.clone(),
                    metrics,
                    url: redis_url.to_owned(),
                    epoch_ms,
                    wake,
                    poll: Duration::from_millis(100),
                    batch: RELAY_BATCH,
                    stream_maxlen: (n * 2 + LATENCY_SAMPLES) * 2,
                    connect_timeout: Duration::from_secs(2),
                }
                .run(token.clone()),
            );
            Ok(BenchRelay {
                token,
                task,
                _subscription: subscription,
            })
        }

        async fn stop(self) {
            self.token.cancel();
            let _ = self.task.await;
        }
    }

    /// `redis-benchmark -h 127.0.0.1 -p PORT -c CLIENTS -P PIPELINE -n N --csv XADD …` with an
    /// entry shaped like ours; returns its requests/s. `clients = 1` matches the relay's single
    /// connection; the default of `redis-benchmark` is 50.
    pub async fn redis_benchmark_xadd(
        port: u16,
        requests: usize,
        pipeline: usize,
        clients: usize,
    ) -> Result<f64, EventsError> {
        let key = format!("bench.redis-benchmark.{}", std::process::id());
        let output = tokio::process::Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", &clients.max(1).to_string()])
            .args(["-P", &pipeline.max(1).to_string()])
            .args(["-n", &requests.max(1).to_string()])
            .arg("--csv")
            .args(["XADD", &key, "MAXLEN", "~", "100000", "*"])
            .args(["type", "BenchEvent", "payload", BENCH_PAYLOAD, "outboxId", "1", "correlationId", "bench#1"])
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|error| EventsError::Tool(format!("cannot run redis-benchmark: {error} (scripts/test.sh installs redis-server with it)")))?;
        if let Ok(mut cleanup) = connect(
            &format!("redis://127.0.0.1:{port}/0"),
            Duration::from_secs(2),
            Duration::from_secs(5),
        )
        .await
        {
            let _ = redis::cmd("DEL")
                .arg(&key)
                .query_async::<i64>(&mut cleanup)
                .await;
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        parse_csv_rps(&stdout).ok_or_else(|| {
            EventsError::Tool(format!(
                "cannot read requests/s from redis-benchmark (status {}): {}",
                output.status,
                stdout.trim()
            ))
        })
    }

    /// The `rps` column of `redis-benchmark --csv` (second line, second field).
    pub(crate) fn parse_csv_rps(csv: &str) -> Option<f64> {
        let mut lines = csv.lines().filter(|line| !line.trim().is_empty());
        let header = lines.next()?;
        let column = header
            .split(',')
            .position(|name| name.trim_matches('"') == "rps")?;
        let row = lines.next()?;
        // The test name (first column) may contain commas inside quotes; count from the end.
        let fields: Vec<&str> = row.rsplitn(header.split(',').count(), ',').collect();
        let from_end = header.split(',').count() - 1 - column;
        fields.get(from_end)?.trim_matches('"').parse().ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_the_rps_column_even_with_commas_in_the_test_name() {
            let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                       \"XADD k * payload {\"a\":1,\"b\":2}\",\"566572.25\",\"1.323\",\"0.376\",\"1.391\",\"1.623\",\"1.695\",\"2.007\"\n";
            assert_eq!(
                parse_csv_rps(csv),
                Some(566_572.25),
                "the second column of the data row"
            );
            assert_eq!(parse_csv_rps("garbage"), None, "no header, no number");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank_and_the_measured_window() {
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let samples = summarise(latencies, 1_000, Duration::from_millis(500));
        assert_eq!(samples.p50_ms, 50.0, "p50 of 1..=100 ms");
        assert_eq!(samples.p95_ms, 95.0, "p95 of 1..=100 ms");
        assert_eq!(samples.p99_ms, 99.0, "p99 of 1..=100 ms");
        assert_eq!(samples.max_ms, 100.0, "max is the slowest");
        assert_eq!(samples.events_per_sec, 2_000.0, "1000 events in 0.5 s");
        let samples = Samples {
            relay_events_per_sec: 3_000.0,
            ..samples
        };
        assert_eq!(
            samples.ratio_to(6_000.0),
            0.5,
            "the relay's rate against the reference"
        );
    }
}
