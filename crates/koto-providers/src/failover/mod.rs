//! Failover chains (`llm_chain`, `tts_chain`): an ordered list of providers, each behind its
//! own circuit breaker ([`breaker`]).
//!
//! One request (an LLM turn, one TTS segment) goes to the first provider the plan allows:
//! healthy closed ones and a half-open one's probe in the configured order, then closed ones
//! whose last request failed. A provider that fails *before its first output* (connect error,
//! 5xx, 429, auth, no first output within its timeout) hands the request to the next one at
//! once, so nothing is heard twice. A failure *after* output ends the request with that error
//! (the turn keeps what was heard), and the next request starts on a healthy provider. When
//! every provider fails, the request fails with all of their errors in one message.

pub mod breaker;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use koto_core::ProviderError;
use koto_core::llm::{LlmProvider, LlmRequest, LlmStream};
use koto_core::tts::{ChunkStream, TtsRequest, Voice};

use breaker::{Admission, Breaker, BreakerPolicy};
use koto_core::chain_status::ChainLinkStatus;

/// One provider of a chain, as configured.
pub struct ChainLink<P: ?Sized> {
    /// How `/health` and errors name it (`openai gpt-4o-mini`, `espeak-ng`).
    pub label: String,
    pub provider: Arc<P>,
    /// No first output within this time counts as a failure before output (`None`: the
    /// provider's own timeouts decide).
    pub first_output_timeout: Option<Duration>,
}

struct Link<P: ?Sized> {
    label: String,
    provider: Arc<P>,
    first_output_timeout: Option<Duration>,
    breaker: Breaker,
}

struct Chain<P: ?Sized> {
    links: Vec<Link<P>>,
    /// Index of the link that served the last request (its first output).
    current: AtomicUsize,
}

type ResultStream<T> = Pin<Box<dyn Stream<Item = Result<T, ProviderError>> + Send + 'static>>;

impl<P: ?Sized + Send + Sync + 'static> Chain<P> {
    fn new(links: Vec<ChainLink<P>>, policy: BreakerPolicy) -> Result<Chain<P>, ProviderError> {
        if links.is_empty() {
            return Err(ProviderError::Unavailable(
                "a failover chain needs at least one provider".into(),
            ));
        }
        Ok(Chain {
            links: links
                .into_iter()
                .map(|link| Link {
                    label: link.label,
                    provider: link.provider,
                    first_output_timeout: link.first_output_timeout,
                    breaker: Breaker::new(policy),
                })
                .collect(),
            current: AtomicUsize::new(0),
        })
    }

    fn current(&self) -> &Link<P> {
        &self.links[self
            .current
            .load(Ordering::Relaxed)
            .min(self.links.len() - 1)]
    }

    /// The order to try the links in now (see the module's doc).
    fn plan(&self, now: Instant) -> Vec<usize> {
        let mut first = Vec::new();
        let mut then = Vec::new();
        for (index, link) in self.links.iter().enumerate() {
            match link.breaker.peek(now) {
                Admission::Use { healthy: true } | Admission::Probe => first.push(index),
                Admission::Use { healthy: false } => then.push(index),
                Admission::Skip => {}
            }
        }
        first.extend(then);
        first
    }

    fn statuses(&self, name: impl Fn(&P) -> &'static str) -> Vec<ChainLinkStatus> {
        let now = Instant::now();
        let current = self.current.load(Ordering::Relaxed);
        self.links
            .iter()
            .enumerate()
            .map(|(index, link)| {
                let breaker = link.breaker.status(now);
                ChainLinkStatus {
                    label: link.label.clone(),
                    provider: name(&link.provider),
                    state: breaker.state.as_str(),
                    failures: breaker.failures,
                    opened_count: breaker.opened_count,
                    last_error: breaker.last_error,
                    current: index == current,
                }
            })
            .collect()
    }
}

/// Reports the verdict of the link being tried when the stream is dropped before one (a STOP):
/// a probe slot is given back, nothing is counted.
struct Attempt<P: ?Sized> {
    chain: Arc<Chain<P>>,
    link: Option<usize>,
}

impl<P: ?Sized> Attempt<P> {
    /// The link's verdict was reported: nothing to give back on drop.
    fn settle(&mut self) {
        self.link = None;
    }
}

impl<P: ?Sized> Drop for Attempt<P> {
    fn drop(&mut self) {
        if let Some(index) = self.link.take() {
            self.chain.links[index].breaker.abandoned();
        }
    }
}

/// Runs one request through the chain; `start` begins it on one provider.
fn failover_stream<P, T, F>(chain: Arc<Chain<P>>, start: F) -> ResultStream<T>
where
    P: ?Sized + Send + Sync + 'static,
    T: Send + 'static,
    F: Fn(&P) -> ResultStream<T> + Send + 'static,
{
    struct State<P: ?Sized, T, F> {
        order: std::vec::IntoIter<usize>,
        attempt: Attempt<P>,
        stream: Option<ResultStream<T>>,
        deadline: Option<tokio::time::Instant>,
        started: bool,
        errors: Vec<String>,
        last_error: Option<ProviderError>,
        start: F,
        done: bool,
    }
    let order = chain.plan(Instant::now()).into_iter();
    let state = State {
        order,
        attempt: Attempt { chain, link: None },
        stream: None,
        deadline: None,
        started: false,
        errors: Vec::new(),
        last_error: None,
        start,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        |mut state| async move {
            if state.done {
                return None;
            }
            loop {
                if state.stream.is_none() {
                    let Some(index) = state.order.next() else {
                        state.done = true;
                        return Some((
                            Err(all_failed(&state.errors, state.last_error.take())),
                            state,
                        ));
                    };
                    let chain = state.attempt.chain.clone();
                    let link = &chain.links[index];
                    if link.breaker.admit(Instant::now()) == Admission::Skip {
                        continue; // its probe was taken by a request planned at the same time
                    }
                    state.attempt.link = Some(index);
                    state.stream = Some((state.start)(&link.provider));
                    state.deadline = link
                        .first_output_timeout
                        .map(|timeout| tokio::time::Instant::now() + timeout);
                }
                let index = state.attempt.link?;
                let chain = state.attempt.chain.clone();
                let link = &chain.links[index];
                let stream = state.stream.as_mut()?;
                let next = match (state.started, state.deadline) {
                    (false, Some(deadline)) => {
                        match tokio::time::timeout_at(deadline, stream.next()).await {
                            Ok(next) => next,
                            Err(_) => Some(Err(ProviderError::Timeout(format!(
                                "no first output within {:.1} s",
                                link.first_output_timeout.unwrap_or_default().as_secs_f64()
                            )))),
                        }
                    }
                    _ => stream.next().await,
                };
                match next {
                    Some(Ok(item)) => {
                        if !state.started {
                            state.started = true;
                            chain.current.store(index, Ordering::Relaxed);
                            if index > 0 {
                                tracing::info!(provider = %link.label, "failover: served by a later provider of the chain");
                            }
                        }
                        return Some((Ok(item), state));
                    }
                    Some(Err(error)) => {
                        state.attempt.settle();
                        state.stream = None;
                        link.breaker.failed(Instant::now(), &error.to_string());
                        tracing::warn!(provider = %link.label, %error, started = state.started, "failover: a provider failed");
                        if state.started {
                            // Output was heard: the request ends here, never on a second voice.
                            state.done = true;
                            return Some((Err(error), state));
                        }
                        state.errors.push(format!("{}: {error}", link.label));
                        state.last_error = Some(error);
                    }
                    None => {
                        state.attempt.settle();
                        link.breaker.succeeded();
                        return None;
                    }
                }
            }
        },
    ))
}

/// Every provider failed before output: the last error's kind (so the client sees a timeout as
/// a timeout), with every provider's error in its message.
fn all_failed(errors: &[String], last: Option<ProviderError>) -> ProviderError {
    let joined = if errors.is_empty() {
        "every provider of the chain is open (failing); the next probe is after its cooldown"
            .to_owned()
    } else {
        format!("every provider of the chain failed: {}", errors.join("; "))
    };
    match last {
        Some(ProviderError::Timeout(_)) => ProviderError::Timeout(joined),
        Some(ProviderError::Auth(_)) => ProviderError::Auth(joined),
        Some(ProviderError::Transport(_)) => ProviderError::Transport(joined),
        Some(ProviderError::Protocol(_)) => ProviderError::Protocol(joined),
        Some(ProviderError::RateLimited { .. }) | Some(ProviderError::Unavailable(_)) | None => {
            ProviderError::Unavailable(joined)
        }
    }
}

/// `llm_chain`: an [`LlmProvider`] over several.
pub struct FailoverLlm {
    chain: Arc<Chain<dyn LlmProvider>>,
}

impl FailoverLlm {
    pub fn new(
        links: Vec<ChainLink<dyn LlmProvider>>,
        policy: BreakerPolicy,
    ) -> Result<FailoverLlm, ProviderError> {
        Ok(FailoverLlm {
            chain: Arc::new(Chain::new(links, policy)?),
        })
    }

    pub fn statuses(&self) -> Vec<ChainLinkStatus> {
        self.chain.statuses(|provider| provider.name())
    }
}

impl LlmProvider for FailoverLlm {
    /// The provider that served the last turn.
    fn name(&self) -> &'static str {
        self.chain.current().provider.name()
    }

    fn model(&self) -> String {
        self.chain.current().provider.model()
    }

    fn stream_chat(&self, request: LlmRequest) -> LlmStream {
        failover_stream(self.chain.clone(), move |provider: &dyn LlmProvider| {
            provider.stream_chat(request.clone())
        })
    }

    fn caches_prompts(&self) -> bool {
        self.chain.current().provider.caches_prompts()
    }

    fn chain(&self) -> Option<Vec<ChainLinkStatus>> {
        Some(self.statuses())
    }
}

/// `tts_chain`: a [`Voice`] over several, all at one sample rate. Each segment fails over on
/// its own, so a reply can move to the next voice at a segment boundary.
pub struct FailoverVoice {
    chain: Arc<Chain<dyn Voice>>,
    sample_rate: u32,
}

impl FailoverVoice {
    pub fn new(
        links: Vec<ChainLink<dyn Voice>>,
        policy: BreakerPolicy,
    ) -> Result<FailoverVoice, ProviderError> {
        let chain = Chain::new(links, policy)?;
        let sample_rate = chain.links[0].provider.sample_rate();
        if let Some(other) = chain
            .links
            .iter()
            .find(|link| link.provider.sample_rate() != sample_rate)
        {
            return Err(ProviderError::Unavailable(format!(
                "the voices of a chain must speak at one sample rate: {} is at {} Hz, {} at {sample_rate} Hz",
                other.label,
                other.provider.sample_rate(),
                chain.links[0].label
            )));
        }
        Ok(FailoverVoice {
            chain: Arc::new(chain),
            sample_rate,
        })
    }

    pub fn statuses(&self) -> Vec<ChainLinkStatus> {
        self.chain.statuses(|voice| voice.name())
    }
}

impl Voice for FailoverVoice {
    fn name(&self) -> &'static str {
        self.chain.current().provider.name()
    }

    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn speak(&self, request: TtsRequest) -> ChunkStream {
        failover_stream(self.chain.clone(), move |voice: &dyn Voice| {
            voice.speak(request.clone())
        })
    }

    fn chain(&self) -> Option<Vec<ChainLinkStatus>> {
        Some(self.statuses())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use futures_util::StreamExt;
    use koto_core::llm::LlmDelta;

    use super::*;

    /// What a fake LLM does on its n-th call.
    #[derive(Clone)]
    enum Act {
        Reply(&'static str),
        FailBefore(ProviderError),
        /// Some text, then the error.
        FailAfter(&'static str, ProviderError),
        Hang,
    }

    struct FakeLlm {
        name: &'static str,
        acts: Mutex<Vec<Act>>,
        calls: AtomicUsize,
    }

    impl FakeLlm {
        /// Plays `acts` in order, the last one forever after.
        fn new(name: &'static str, acts: Vec<Act>) -> Arc<FakeLlm> {
            Arc::new(FakeLlm {
                name,
                acts: Mutex::new(acts),
                calls: AtomicUsize::new(0),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl LlmProvider for FakeLlm {
        fn name(&self) -> &'static str {
            self.name
        }

        fn model(&self) -> String {
            format!("{}-model", self.name)
        }

        fn stream_chat(&self, _: LlmRequest) -> LlmStream {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let act = {
                let mut acts = self.acts.lock().unwrap();
                if acts.len() > 1 {
                    acts.remove(0)
                } else {
                    acts[0].clone()
                }
            };
            let items: Vec<Result<LlmDelta, ProviderError>> = match act {
                Act::Reply(text) => vec![Ok(LlmDelta::text(text))],
                Act::FailBefore(error) => vec![Err(error)],
                Act::FailAfter(text, error) => vec![Ok(LlmDelta::text(text)), Err(error)],
                Act::Hang => return Box::pin(futures_util::stream::pending()),
            };
            Box::pin(futures_util::stream::iter(items))
        }
    }

    fn request() -> LlmRequest {
        LlmRequest {
            messages: Vec::new(),
            lang: None,
            correlation_id: "s#0".into(),
        }
    }

    fn link(llm: &Arc<FakeLlm>) -> ChainLink<dyn LlmProvider> {
        ChainLink {
            label: llm.name.to_owned(),
            provider: llm.clone(),
            first_output_timeout: Some(Duration::from_secs(5)),
        }
    }

    fn chain(llms: &[&Arc<FakeLlm>], policy: BreakerPolicy) -> FailoverLlm {
        FailoverLlm::new(llms.iter().map(|llm| link(llm)).collect(), policy).unwrap()
    }

    async fn run(llm: &FailoverLlm) -> (String, Option<ProviderError>) {
        let mut text = String::new();
        let mut error = None;
        let mut stream = llm.stream_chat(request());
        while let Some(item) = stream.next().await {
            match item {
                Ok(LlmDelta::Text(piece)) => text.push_str(&piece),
                Ok(_) => {}
                Err(failure) => error = Some(failure),
            }
        }
        (text, error)
    }

    fn state(llm: &FailoverLlm, index: usize) -> &'static str {
        llm.statuses()[index].state
    }

    #[tokio::test]
    async fn a_failure_before_output_hands_the_turn_to_the_next_at_once() {
        let cloud = FakeLlm::new(
            "cloud",
            vec![Act::FailBefore(ProviderError::Transport(
                "connect refused".into(),
            ))],
        );
        let local = FakeLlm::new("local", vec![Act::Reply("from local")]);
        let llm = chain(&[&cloud, &local], BreakerPolicy::default());
        for error in [
            ProviderError::Transport("connect refused".into()),
            ProviderError::Protocol("HTTP 503".into()),
            ProviderError::RateLimited { retry_after: None },
            ProviderError::Timeout("first token".into()),
        ] {
            *cloud.acts.lock().unwrap() = vec![Act::FailBefore(error), Act::Reply("cloud")];
            let (text, error) = run(&llm).await;
            assert_eq!(text, "from local", "only the next provider's text");
            assert!(error.is_none());
        }
        assert_eq!(
            llm.name(),
            "local",
            "the provider that served the last turn"
        );
        assert_eq!(
            llm.statuses()[0].failures,
            1,
            "a success resets, so one in a row"
        );
    }

    #[tokio::test]
    async fn a_failure_after_output_ends_the_turn_and_the_next_turn_starts_healthy() {
        let cloud = FakeLlm::new(
            "cloud",
            vec![
                Act::FailAfter("Hello, ", ProviderError::Transport("reset".into())),
                Act::Reply("cloud again"),
            ],
        );
        let local = FakeLlm::new("local", vec![Act::Reply("local")]);
        let llm = chain(&[&cloud, &local], BreakerPolicy::default());
        let (text, error) = run(&llm).await;
        assert_eq!(
            text, "Hello, ",
            "what was heard, nothing from a second provider"
        );
        assert!(matches!(error, Some(ProviderError::Transport(_))));
        assert_eq!(local.calls(), 0);
        let (text, _) = run(&llm).await;
        assert_eq!(
            text, "local",
            "the next turn starts on the healthy provider"
        );
        assert_eq!(state(&llm, 0), "closed", "one failure does not open it");
    }

    #[tokio::test]
    async fn the_breaker_opens_skips_then_probes_and_closes_when_the_provider_recovers() {
        let cloud = FakeLlm::new(
            "cloud",
            vec![Act::FailBefore(ProviderError::Protocol("HTTP 500".into()))],
        );
        let local = FakeLlm::new("local", vec![Act::Reply("local")]);
        let llm = chain(
            &[&cloud, &local],
            BreakerPolicy {
                failures: 2,
                cooldown: Duration::from_secs(3600),
            },
        );
        // Turn 1: cloud fails first. Turn 2: cloud (unhealthy) is tried after local, which
        // answers, so cloud is not called. Force two failures in a row with local failing too.
        run(&llm).await;
        assert_eq!(cloud.calls(), 1);
        *local.acts.lock().unwrap() = vec![Act::FailBefore(ProviderError::Auth("401".into()))];
        let (_, error) = run(&llm).await;
        let message = error.unwrap().to_string();
        assert!(
            message.contains("every provider of the chain failed")
                && message.contains("cloud: ")
                && message.contains("local: "),
            "one error naming both: {message}"
        );
        assert_eq!(state(&llm, 0), "open");
        let calls = cloud.calls();
        *local.acts.lock().unwrap() = vec![Act::Reply("local")];
        run(&llm).await;
        assert_eq!(
            cloud.calls(),
            calls,
            "an open breaker is skipped, not called"
        );

        // With no cooldown the open breaker is half-open at once: the next turn probes it.
        let cloud = FakeLlm::new(
            "cloud",
            vec![
                Act::FailBefore(ProviderError::Protocol("HTTP 500".into())),
                Act::Reply("cloud is back"),
            ],
        );
        let llm = chain(
            &[&cloud, &local],
            BreakerPolicy {
                failures: 1,
                cooldown: Duration::ZERO,
            },
        );
        assert_eq!(run(&llm).await.0, "local");
        assert_eq!(state(&llm, 0), "half_open");
        assert_eq!(
            run(&llm).await.0,
            "cloud is back",
            "the probe is a real turn"
        );
        assert_eq!(state(&llm, 0), "closed");
        assert_eq!(llm.name(), "cloud");
    }

    #[tokio::test(start_paused = true)]
    async fn no_first_output_within_the_timeout_is_a_failure_before_output() {
        let hung = FakeLlm::new("hung", vec![Act::Hang]);
        let local = FakeLlm::new("local", vec![Act::Reply("local")]);
        let llm = FailoverLlm::new(
            vec![
                ChainLink {
                    first_output_timeout: Some(Duration::from_secs(2)),
                    ..link(&hung)
                },
                link(&local),
            ],
            BreakerPolicy::default(),
        )
        .unwrap();
        assert_eq!(run(&llm).await.0, "local");
        let status = &llm.statuses()[0];
        assert!(
            status
                .last_error
                .as_deref()
                .unwrap()
                .contains("no first output within 2.0 s"),
            "{status:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_probe_gives_its_slot_back() {
        let cloud = FakeLlm::new(
            "cloud",
            vec![
                Act::FailBefore(ProviderError::Protocol("HTTP 500".into())),
                Act::Hang,
            ],
        );
        let local = FakeLlm::new("local", vec![Act::Reply("local")]);
        let llm = chain(
            &[&cloud, &local],
            BreakerPolicy {
                failures: 1,
                cooldown: Duration::ZERO,
            },
        );
        run(&llm).await;
        let mut probe = llm.stream_chat(request());
        // The probe hangs; a STOP drops the turn before any verdict.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), probe.next())
                .await
                .is_err()
        );
        drop(probe);
        assert_eq!(state(&llm, 0), "half_open", "not counted as a failure");
        *cloud.acts.lock().unwrap() = vec![Act::Reply("cloud")];
        assert_eq!(run(&llm).await.0, "cloud", "the next turn may probe again");
    }
}
