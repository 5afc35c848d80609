//! `EventsRuntime`: picks the delivery mode at start (Redis Streams or embedded), spawns the
//! relay, the consumer groups, retention and the metrics sampler as tracked tasks that stop on
//! the shutdown token, and hands out recall, stats and metrics. Also the standalone worker entry.
//!
//! Mode rule (documented in ARCHITECTURE.md by the lead): Redis when the `redis` feature is
//! built, `REDIS_URL` is set, `ENABLE_ASYNC_EXT` is on and Redis answers PING at start;
//! embedded otherwise, for the whole run. Switching between runs loses nothing because both
//! modes keep the same per-group bookkeeping in SQLite (cursor + handled ids, see
//! `koto_store::consumer`), retention never deletes a row a group has not handled, and the
//! Redis workers read the outbox row an entry points to. Embedded → Redis: the relay sends
//! every row it never sent (consumers outside the process get the full history; ours skip what
//! they handled, by outbox id). Redis → embedded: consumers resume at their cursor, including
//! rows Redis had but no worker handled.

use std::sync::Arc;
use std::time::Duration;

use koto_core::SessionId;
use koto_core::memory::MemoryRecall;
use koto_core::metrics::Registry;
use koto_store::{AnalyticsReport, SessionAnalytics, Store};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{EventsConfig, GroupKind};
use crate::consumer::{Effects, Group, blocking, now_ms};
use crate::embedded::EmbeddedConsumer;
use crate::error::EventsError;
use crate::metrics::EventsMetrics;
use crate::plugin::Plugin;
use crate::recall::LtmRecall;
use crate::retention::Retention;

/// How often sampled gauges (backlog, lag, stream lengths) refresh without a scrape.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// A `/metrics` scrape waits at most this long for fresh samples, then serves what it has.
const SCRAPE_REFRESH_BUDGET: Duration = Duration::from_secs(1);
/// Sessions and samples in `GET /stats`.
const STATS_SESSIONS: usize = 100;
const STATS_SAMPLES: usize = 10_000;

/// Where events go this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Outbox → Redis Streams → consumer groups.
    Redis,
    /// Outbox → in-process consumers, no Redis.
    Embedded,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Redis => "redis",
            Mode::Embedded => "embedded",
        }
    }
}

/// Builder for the event runtime.
pub struct EventsRuntime {
    store: Store,
    config: EventsConfig,
    registry: Registry,
    plugins: Vec<Arc<dyn Plugin>>,
}

impl std::fmt::Debug for EventsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsRuntime")
            .field("store", &self.store)
            .field("config", &self.config)
            .field("plugins", &self.plugins.len())
            .finish()
    }
}

impl EventsRuntime {
    pub fn new(store: Store, config: EventsConfig) -> EventsRuntime {
        EventsRuntime {
            store,
            config,
            registry: Registry::new(),
            plugins: Vec::new(),
        }
    }

    /// Registers the runtime's metrics in `registry` (share the server's, so one `/metrics`
    /// serves everything). Without it the runtime uses a registry of its own.
    pub fn with_registry(mut self, registry: Registry) -> EventsRuntime {
        self.registry = registry;
        self
    }

    /// Adds an in-process consumer of `events.plugins` (group `plugins_group`).
    pub fn with_plugin(mut self, plugin: Arc<dyn Plugin>) -> EventsRuntime {
        self.plugins.push(plugin);
        self
    }

    /// Chooses the mode (logging which and why), spawns every task and returns at once; tasks
    /// run until `shutdown` is cancelled. Fails only on a broken store or a metrics name clash.
    pub async fn start(self, shutdown: CancellationToken) -> Result<EventsHandle, EventsError> {
        let EventsRuntime {
            store,
            config,
            registry,
            plugins,
        } = self;
        let metrics = EventsMetrics::register(&registry)?;
        let (mode, mode_reason) = choose_mode(&config).await;
        metrics.mode.with(&[mode.as_str()]).set(1.0);
        match mode {
            Mode::Redis => {
                tracing::info!(mode = mode.as_str(), reason = %mode_reason, "event delivery mode chosen")
            }
            Mode::Embedded => {
                tracing::warn!(mode = mode.as_str(), reason = %mode_reason, "event delivery mode chosen")
            }
        }

        let mut kinds = vec![GroupKind::Ltm, GroupKind::Analytics];
        if !plugins.is_empty() {
            kinds.push(GroupKind::Plugins);
        }
        let groups: Vec<Group> = kinds
            .into_iter()
            .map(|kind| Group {
                kind,
                name: config.group_name(kind).to_owned(),
                stream: kind.stream(),
            })
            .collect();
        let effects = Effects {
            store: store.clone(),
            plugins: plugins.into(),
            metrics: metrics.clone(),
            dlq_after_attempts: config.dlq_after_attempts.max(1),
        };

        // One commit hook wakes every task that reads the outbox; Notify keeps a permit when
        // nobody waits, so a commit between two reads is never missed.
        let wakes: Vec<Arc<Notify>> = (0..=groups.len())
            .map(|_| Arc::new(Notify::new()))
            .collect();
        let subscription = store.subscribe_outbox({
            let wakes = wakes.clone();
            Arc::new(move |_max_id| {
                for wake in &wakes {
                    wake.notify_one();
                }
            })
        });

        let tracker = TaskTracker::new();
        tracker.spawn({
            let shutdown = shutdown.clone();
            async move {
                // The hook lives exactly as long as the runtime.
                let _subscription = subscription;
                shutdown.cancelled().await;
            }
        });

        let retry_max = config.reclaim_idle.max(Duration::from_millis(10));
        let retry_base = Duration::from_millis(200).min(retry_max);
        match mode {
            Mode::Embedded => {
                if !config.in_process_workers {
                    tracing::warn!(
                        "EVENT_WORKERS_IN_PROCESS is off but there is no Redis: consuming in process anyway"
                    );
                }
                for (group, wake) in groups.iter().zip(&wakes) {
                    let consumer = EmbeddedConsumer {
                        effects: effects.clone(),
                        group: group.clone(),
                        wake: Arc::clone(wake),
                        poll: config.outbox_poll,
                        batch: config.outbox_batch.max(1),
                        retry_base,
                        retry_max,
                    };
                    tracker.spawn(consumer.run(shutdown.clone()));
                }
            }
            Mode::Redis => {
                #[cfg(feature = "redis")]
                spawn_redis_tasks(
                    &tracker, &store, &config, &effects, &groups, &wakes, &shutdown,
                )
                .await?;
            }
        }

        tracker.spawn(
            Retention {
                effects: effects.clone(),
                groups: groups.clone(),
                keep: config.outbox_retention,
                interval: config.outbox_prune_interval.max(Duration::from_millis(10)),
                require_delivered: mode == Mode::Redis,
            }
            .run(shutdown.clone()),
        );

        let sampler = Arc::new(Sampler {
            store: store.clone(),
            metrics: metrics.clone(),
            groups: groups.clone(),
            mode,
            #[cfg(feature = "redis")]
            redis: tokio::sync::Mutex::new(None),
            #[cfg(feature = "redis")]
            config: config.clone(),
        });
        tracker.spawn({
            let sampler = Arc::clone(&sampler);
            let shutdown = shutdown.clone();
            async move {
                loop {
                    sampler.refresh().await;
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
                    }
                }
            }
        });
        tracker.close();

        Ok(EventsHandle {
            mode,
            mode_reason,
            store: store.clone(),
            registry,
            recall: Arc::new(LtmRecall::new(store, config.ltm_inline_budget)),
            sampler,
            tracker,
        })
    }
}

#[cfg(feature = "redis")]
async fn spawn_redis_tasks(
    tracker: &TaskTracker,
    store: &Store,
    config: &EventsConfig,
    effects: &Effects,
    groups: &[Group],
    wakes: &[Arc<Notify>],
    shutdown: &CancellationToken,
) -> Result<(), EventsError> {
    let url = config.redis_url.clone().unwrap_or_default();
    let epoch_ms = blocking(store, |store| store.stream_epoch_ms()).await?;
    let relay_wake = wakes.last().map(Arc::clone).unwrap_or_default();
    tracker.spawn(
        crate::redis::relay::Relay {
            store: store.clone(),
            metrics: effects.metrics.clone(),
            url: url.clone(),
            epoch_ms,
            wake: relay_wake,
            poll: config.outbox_poll,
            batch: config.outbox_batch.max(1),
            stream_maxlen: config.stream_maxlen.max(1),
            connect_timeout: config.redis_connect_timeout,
        }
        .run(shutdown.clone()),
    );
    if config.in_process_workers {
        for group in groups {
            tracker
                .spawn(group_worker(effects, group, config, &url, epoch_ms).run(shutdown.clone()));
        }
    } else {
        tracing::info!("EVENT_WORKERS_IN_PROCESS is off: standalone workers consume the streams");
    }
    Ok(())
}

#[cfg(feature = "redis")]
fn group_worker(
    effects: &Effects,
    group: &Group,
    config: &EventsConfig,
    url: &str,
    epoch_ms: i64,
) -> crate::redis::group::GroupWorker {
    crate::redis::group::GroupWorker {
        effects: effects.clone(),
        group: group.clone(),
        url: url.to_owned(),
        consumer: config.consumer_name.clone(),
        epoch_ms,
        batch: config.outbox_batch.max(1),
        block: config.redis_block.max(Duration::from_millis(1)),
        reclaim_idle: config.reclaim_idle,
        repair_after: config.repair_after,
        connect_timeout: config.redis_connect_timeout,
        stream_maxlen: config.stream_maxlen.max(1),
    }
}

/// Decides the mode; the reason is logged and available from the handle.
async fn choose_mode(config: &EventsConfig) -> (Mode, String) {
    if !config.async_ext {
        return (Mode::Embedded, "ENABLE_ASYNC_EXT is off".to_owned());
    }
    let Some(url) = config
        .redis_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())
    else {
        return (Mode::Embedded, "REDIS_URL is not set".to_owned());
    };
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        (
            Mode::Embedded,
            "built without the `redis` feature; REDIS_URL is ignored".to_owned(),
        )
    }
    #[cfg(feature = "redis")]
    {
        let shown = redact_url(url);
        let probe = async {
            let mut connection = crate::redis::connect(
                url,
                config.redis_connect_timeout,
                config.redis_connect_timeout,
            )
            .await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(
            config.redis_connect_timeout + Duration::from_millis(500),
            probe,
        )
        .await
        {
            Ok(Ok(_)) => (Mode::Redis, format!("Redis at {shown} answered PING")),
            Ok(Err(error)) => (
                Mode::Embedded,
                format!("Redis at {shown} is unreachable at start: {error}"),
            ),
            Err(_) => (
                Mode::Embedded,
                format!("Redis at {shown} did not answer within the connect timeout"),
            ),
        }
    }
}

/// The URL without its password, for logs.
#[cfg(feature = "redis")]
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The running runtime. Dropping it does not stop anything: cancel the token, then `wait`.
pub struct EventsHandle {
    mode: Mode,
    mode_reason: String,
    store: Store,
    registry: Registry,
    recall: Arc<LtmRecall>,
    sampler: Arc<Sampler>,
    tracker: TaskTracker,
}

impl std::fmt::Debug for EventsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsHandle")
            .field("mode", &self.mode)
            .field("mode_reason", &self.mode_reason)
            .finish_non_exhaustive()
    }
}

impl EventsHandle {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Why this mode was chosen (for `/health` and logs).
    pub fn mode_reason(&self) -> &str {
        &self.mode_reason
    }

    /// Long-term memory recall for the engine (`ENABLE_LTM_INLINE`).
    pub fn recall(&self) -> Arc<dyn MemoryRecall> {
        self.recall.clone()
    }

    /// `GET /stats`: global aggregates and the 100 most recently active sessions.
    pub async fn stats(&self) -> Result<AnalyticsReport, EventsError> {
        blocking(&self.store, |store| {
            store.analytics_report(STATS_SESSIONS, STATS_SAMPLES)
        })
        .await
    }

    /// One session's aggregates (`None` if it has no recorded turn yet).
    pub async fn session_stats(
        &self,
        session: &SessionId,
    ) -> Result<Option<SessionAnalytics>, EventsError> {
        let session = session.clone();
        blocking(&self.store, move |store| {
            store.session_analytics(&session, STATS_SAMPLES)
        })
        .await
    }

    /// The registry the runtime's metrics live in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Refreshes sampled gauges (at most ~1 s, so a scrape never hangs on Redis) and encodes the
    /// whole registry in the Prometheus text format.
    pub async fn metrics_text(&self) -> String {
        let _ = tokio::time::timeout(SCRAPE_REFRESH_BUDGET, self.sampler.refresh()).await;
        self.registry.encode()
    }

    /// Waits until every task has stopped (after the shutdown token was cancelled).
    pub async fn wait(&self) {
        self.tracker.wait().await;
    }
}

/// Sets the gauges that need a query: outbox backlog, lag, stream lengths, dead letters.
struct Sampler {
    store: Store,
    metrics: EventsMetrics,
    groups: Vec<Group>,
    mode: Mode,
    #[cfg(feature = "redis")]
    config: EventsConfig,
    #[cfg(feature = "redis")]
    redis: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Sampler {
    async fn refresh(&self) {
        let positions: Vec<(String, &'static str)> = self
            .groups
            .iter()
            .map(|group| (group.name.clone(), group.stream))
            .collect();
        let sampled = blocking(&self.store, move |store| {
            let backlog = store.outbox_backlog()?;
            let dead_letters = store.dead_letter_count()?;
            let mut lags = Vec::with_capacity(positions.len());
            for (name, stream) in positions {
                let position = store.consumer_position(&name, stream)?;
                lags.push((name, stream, position.lag));
            }
            Ok((backlog, dead_letters, lags))
        })
        .await;
        match sampled {
            Ok(((backlog, oldest), dead_letters, lags)) => {
                let (backlog, oldest) = if self.mode == Mode::Redis {
                    (backlog, oldest)
                } else {
                    (0, None)
                };
                self.metrics.outbox_backlog.set(backlog as f64);
                let age = oldest.map_or(0.0, |created| (now_ms() - created).max(0) as f64 / 1000.0);
                self.metrics.outbox_oldest_age.set(age);
                self.metrics.dead_letters.set(dead_letters as f64);
                if self.mode == Mode::Embedded {
                    for (name, stream, lag) in lags {
                        self.metrics
                            .group_lag
                            .with(&[&name, stream])
                            .set(lag as f64);
                        self.metrics.group_pending.with(&[&name, stream]).set(0.0);
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "metrics sampling could not read the store"),
        }
        #[cfg(feature = "redis")]
        if self.mode == Mode::Redis {
            self.refresh_redis().await;
        }
    }

    #[cfg(feature = "redis")]
    async fn refresh_redis(&self) {
        use koto_protocol::events::stream;
        let mut slot = self.redis.lock().await;
        if slot.is_none() {
            let url = self.config.redis_url.clone().unwrap_or_default();
            match crate::redis::connect(
                &url,
                self.config.redis_connect_timeout,
                Duration::from_secs(2),
            )
            .await
            {
                Ok(connection) => *slot = Some(connection),
                Err(_) => return,
            }
        }
        let Some(connection) = slot.as_mut() else {
            return;
        };
        let streams = [stream::LTM, stream::ANALYTICS, stream::PLUGINS, stream::DLQ];
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for name in streams {
            pipe.cmd("XLEN").arg(name);
        }
        for name in [stream::LTM, stream::ANALYTICS, stream::PLUGINS] {
            pipe.cmd("XINFO").arg("GROUPS").arg(name);
        }
        let replies: Result<Vec<redis::RedisResult<redis::Value>>, redis::RedisError> =
            pipe.query_async(connection).await;
        let Ok(replies) = replies else {
            *slot = None;
            return;
        };
        let mut replies = replies.into_iter();
        for name in streams {
            if let Some(Ok(value)) = replies.next()
                && let Ok(length) = redis::from_redis_value::<i64>(value)
            {
                self.metrics.stream_length.with(&[name]).set(length as f64);
            }
        }
        for name in [stream::LTM, stream::ANALYTICS, stream::PLUGINS] {
            let Some(Ok(value)) = replies.next() else {
                continue;
            };
            let Ok(groups) =
                redis::from_redis_value::<redis::streams::StreamInfoGroupsReply>(value)
            else {
                continue;
            };
            for group in groups.groups {
                self.metrics
                    .group_pending
                    .with(&[&group.name, name])
                    .set(group.pending as f64);
                if let Some(lag) = group.lag {
                    self.metrics
                        .group_lag
                        .with(&[&group.name, name])
                        .set(lag as f64);
                }
            }
        }
    }
}

/// `kotodama worker --group …`: consumer groups against Redis only, in this process, until
/// `shutdown`. `groups` are configured group names (`LTM_GROUP`, `ANALYTICS_GROUP`); empty means
/// both. Open the store with `Store::open_shared` on the server's database file: effects land
/// where the server's recall and stats read them, and the worker reads the outbox rows entries
/// point to. Redis unreachable → retries until it is (a worker has nothing else to do).
pub async fn run_standalone_worker(
    store: Store,
    config: EventsConfig,
    groups: Vec<String>,
    shutdown: CancellationToken,
) -> Result<(), EventsError> {
    let kinds: Vec<GroupKind> = if groups.is_empty() {
        vec![GroupKind::Ltm, GroupKind::Analytics]
    } else {
        groups
            .iter()
            .map(|name| match config.group_kind(name) {
                // Plugins live in the server process; a standalone consumer would take their
                // events away from them.
                Some(GroupKind::Plugins) | None => Err(EventsError::UnknownGroup(name.clone())),
                Some(kind) => Ok(kind),
            })
            .collect::<Result<_, _>>()?
    };
    #[cfg(not(feature = "redis"))]
    {
        let _ = (store, kinds, shutdown);
        Err(EventsError::RedisRequired(
            "this build has no `redis` feature",
        ))
    }
    #[cfg(feature = "redis")]
    {
        let Some(url) = config
            .redis_url
            .clone()
            .filter(|url| !url.trim().is_empty())
        else {
            return Err(EventsError::RedisRequired("REDIS_URL is not set"));
        };
        let metrics = EventsMetrics::register(&Registry::new())?;
        let epoch_ms = blocking(&store, |store| store.stream_epoch_ms()).await?;
        let effects = Effects {
            store,
            plugins: Arc::from(Vec::new()),
            metrics,
            dlq_after_attempts: config.dlq_after_attempts.max(1),
        };
        let tracker = TaskTracker::new();
        for kind in kinds {
            let group = Group {
                kind,
                name: config.group_name(kind).to_owned(),
                stream: kind.stream(),
            };
            tracing::info!(group = %group.name, redis = %redact_url(&url), consumer = %config.consumer_name, "standalone worker starting");
            tracker.spawn(
                group_worker(&effects, &group, &config, &url, epoch_ms).run(shutdown.clone()),
            );
        }
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("redis://:secret@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0",
            "userinfo is hidden"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379",
            "nothing to hide"
        );
    }
}
