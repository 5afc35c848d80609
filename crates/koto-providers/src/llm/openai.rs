//! `OpenAiLlm`: streaming client for OpenAI-compatible `POST {base_url}/chat/completions`
//! (OpenAI, llama.cpp `llama-server`, Ollama, vLLM, LM Studio, …) on `reqwest`.
//!
//! Lenient about what compatible servers send (see `sse.rs`, `chunk.rs`). Deliberately absent:
//! tool calls, typed response structs, and any retry once a delta has been yielded — the system
//! this replaces retried mid-stream and duplicated text on screen and in speech.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, stream};
use koto_core::ProviderError;
use koto_core::llm::{LlmDelta, LlmProvider, LlmRequest, LlmStream};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep, timeout_at};
use tracing::{Instrument, Span, debug, info_span, warn};

use super::chunk::{self, Signal};
use super::sse::{SseEvent, SseParser};

/// OpenAI's own endpoint base; the default of `OPENAI_BASE_URL`.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// First retry waits this long, each further one twice as long (plus up to 25 % jitter, so
/// sessions that failed together do not retry together).
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A `retry-after` longer than this is not waited out: a live conversation cannot pause that
/// long, so the caller gets `RateLimited` at once and can tell the user.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(5);
/// After `finish_reason` or `[DONE]`, how long to keep reading for the end of the body. Reading
/// to the end lets the connection go back to the pool (no new TLS handshake on the next turn);
/// a server that keeps the body open after finishing does not hold the reply back longer.
const TRAILER_GRACE: Duration = Duration::from_millis(250);
/// Most bytes of an error response body read for its message.
const ERROR_BODY_MAX: usize = 64 * 1024;

/// Configuration of an OpenAI-compatible endpoint.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// The API base *including* the version path, exactly as `OPENAI_BASE_URL` holds it:
    /// `https://api.openai.com/v1`, `http://127.0.0.1:8080/v1` (llama-server),
    /// `http://127.0.0.1:11434/v1` (Ollama). Requests go to `{base_url}/chat/completions`; a
    /// trailing `/` is ignored, and no `/v1` is added or removed.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set; local servers usually need none. Never logged.
    pub api_key: Option<String>,
    pub model: String,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// TCP (and TLS) connection establishment, per attempt.
    pub connect_timeout: Duration,
    /// From sending the request to the first delta (reply text or reasoning), per attempt. Not
    /// retried when it expires: the user has already waited the whole budget.
    pub first_token_timeout: Duration,
    /// Longest silence (no SSE data event) once the first delta has arrived; reasoning counts
    /// as activity.
    pub idle_timeout: Duration,
    /// From sending the request to the first reply text when the model reasons first: a model
    /// may think this long, however alive it is, before the turn fails.
    pub reasoning_timeout: Duration,
    /// Extra attempts after a retryable failure (transport, 5xx, 408, 429, connect timeout),
    /// only ever before the first delta was yielded.
    pub max_retries: u32,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            model: "gpt-4o-mini".to_owned(),
            temperature: None,
            max_tokens: None,
            connect_timeout: Duration::from_secs(5),
            first_token_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            reasoning_timeout: Duration::from_secs(120),
            max_retries: 2,
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    // Hand-written so the key can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("reasoning_timeout", &self.reasoning_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// An OpenAI-compatible LLM. Cheap to share: streams hold an `Arc` of the client and its
/// connection pool, so concurrent sessions reuse connections.
#[derive(Clone, Debug)]
pub struct OpenAiLlm {
    endpoint: Arc<Endpoint>,
}

#[derive(Debug)]
struct Endpoint {
    client: reqwest::Client,
    url: Url,
    /// `Bearer …`, marked sensitive so `reqwest`/`http` never print it.
    authorization: Option<HeaderValue>,
    config: OpenAiConfig,
    /// A server on this machine (llama.cpp, LM Studio, Ollama): asked to keep its prompt cache.
    local: bool,
}

impl OpenAiLlm {
    /// Validates the configuration (URL shape, key characters) and builds the HTTP client.
    /// Does no IO: an unreachable server shows up as the first stream's error.
    pub fn new(config: OpenAiConfig) -> Result<OpenAiLlm, ProviderError> {
        let base = config.base_url.trim().trim_end_matches('/');
        let url = Url::parse(&format!("{base}/chat/completions")).map_err(|error| {
            ProviderError::Unavailable(format!(
                "invalid OpenAI base URL {:?}: {error}",
                config.base_url
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ProviderError::Unavailable(format!(
                "OpenAI base URL {:?} must be an http(s) URL with a host",
                config.base_url
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ProviderError::Unavailable(format!(
                "OpenAI base URL {:?} must not carry a query or fragment",
                config.base_url
            )));
        }
        let authorization = match config.api_key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(key) => {
                let mut value = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
                    // The key itself is deliberately not part of the message.
                    ProviderError::Unavailable(
                        "the OpenAI API key contains characters not allowed in a header".into(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let local = is_loopback(&url);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("kotodama/", env!("CARGO_PKG_VERSION")));
        // A proxy from the environment cannot reach this machine's loopback server.
        if local {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|error| {
            ProviderError::Unavailable(format!("cannot build the HTTP client: {error}"))
        })?;
        Ok(OpenAiLlm {
            endpoint: Arc::new(Endpoint {
                client,
                url,
                authorization,
                config,
                local,
            }),
        })
    }

    /// The URL completions are posted to (`{base_url}/chat/completions`).
    /// Whether the server is on this machine (loopback): it gets `cache_prompt`.
    pub fn is_local(&self) -> bool {
        self.endpoint.local
    }

    pub fn endpoint_url(&self) -> &str {
        self.endpoint.url.as_str()
    }
}

impl LlmProvider for OpenAiLlm {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> String {
        self.endpoint.config.model.clone()
    }

    fn caches_prompts(&self) -> bool {
        self.endpoint.local
    }

    fn stream_chat(&self, request: LlmRequest) -> LlmStream {
        let config = &self.endpoint.config;
        let mut body = json!({
            "model": config.model,
            "messages": request.messages,
            "stream": true,
        });
        if let Some(temperature) = config.temperature {
            body["temperature"] = json!(temperature);
        }
        if let Some(max_tokens) = config.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        // llama.cpp's server reuses the evaluated prompt prefix only when asked (older builds
        // default to off); other local servers ignore the field. Cloud APIs may refuse unknown
        // fields, so they never get it.
        if self.endpoint.local {
            body["cache_prompt"] = json!(true);
        }
        let generation = Generation {
            endpoint: Arc::clone(&self.endpoint),
            body: Bytes::from(body.to_string()),
            span: info_span!("llm", provider = "openai", correlationId = %request.correlation_id),
            phase: Phase::NotStarted,
            n_deltas: 0,
            started: Instant::now(),
            replying: false,
        };
        Box::pin(stream::unfold(generation, |mut generation| async move {
            let span = generation.span.clone();
            let item = generation.next_item().instrument(span).await;
            item.map(|item| (item, generation))
        }))
    }
}

/// One `stream_chat` call: the retry loop before the first delta, then the open response.
/// Dropping it drops the response, which closes the connection and stops generation upstream.
struct Generation {
    endpoint: Arc<Endpoint>,
    body: Bytes,
    span: Span,
    phase: Phase,
    n_deltas: u64,
    /// When the first attempt began (the reasoning budget counts from here).
    started: Instant,
    /// Reply text has arrived (reasoning alone does not count).
    replying: bool,
}

enum Phase {
    NotStarted,
    Streaming(Box<Upstream>),
    Finished,
}

impl Generation {
    async fn next_item(&mut self) -> Option<Result<LlmDelta, ProviderError>> {
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Finished => None,
            Phase::NotStarted => {
                self.started = Instant::now();
                match self.open_with_retries().await {
                    Ok(Some((upstream, first))) => {
                        debug!(
                            ttft_ms = self.started.elapsed().as_secs_f64() * 1e3,
                            reasoning = matches!(first, LlmDelta::Reasoning(_)),
                            "first delta"
                        );
                        self.replying = matches!(first, LlmDelta::Text(_));
                        self.phase = Phase::Streaming(upstream);
                        self.n_deltas = 1;
                        Some(Ok(first))
                    }
                    Ok(None) => {
                        debug!("upstream finished without any text");
                        None
                    }
                    Err(error) => {
                        warn!(%error, "llm request failed");
                        Some(Err(error))
                    }
                }
            }
            Phase::Streaming(mut upstream) => {
                // Still reasoning: the reply must begin within the reasoning budget.
                let reply_by = (!self.replying)
                    .then(|| later(self.started, self.endpoint.config.reasoning_timeout));
                match upstream
                    .next_step(Wait::Idle(self.endpoint.config.idle_timeout, reply_by))
                    .await
                {
                    Step::Delta(delta) => {
                        self.replying |= matches!(delta, LlmDelta::Text(_));
                        if !self.replying && reply_by.is_some_and(|by| Instant::now() >= by) {
                            let error = reasoning_timeout(self.endpoint.config.reasoning_timeout);
                            warn!(%error, deltas = self.n_deltas, "llm reasoned too long");
                            return Some(Err(error));
                        }
                        self.phase = Phase::Streaming(upstream);
                        self.n_deltas += 1;
                        Some(Ok(delta))
                    }
                    Step::End => {
                        debug!(deltas = self.n_deltas, "llm stream complete");
                        None
                    }
                    Step::Fail(error) => {
                        // Never retried: text already reached the caller (see the module doc).
                        let error = match reply_by {
                            Some(by) if Instant::now() >= by => {
                                reasoning_timeout(self.endpoint.config.reasoning_timeout)
                            }
                            _ => error,
                        };
                        warn!(%error, deltas = self.n_deltas, "llm stream failed mid-reply");
                        Some(Err(error))
                    }
                }
            }
        }
    }

    /// Attempts until one yields its first delta (or finishes empty), or retries run out.
    async fn open_with_retries(&self) -> Result<Option<(Box<Upstream>, LlmDelta)>, ProviderError> {
        let max_retries = self.endpoint.config.max_retries;
        let mut retry = 0;
        loop {
            debug!(url = %self.endpoint.url, model = %self.endpoint.config.model, retry, "llm request");
            let failure = match self.open_once().await {
                Ok(opened) => return Ok(opened),
                Err(failure) => failure,
            };
            let delay = if retry < max_retries {
                failure.delay(retry)
            } else {
                None
            };
            let Some(delay) = delay else {
                return Err(failure.error);
            };
            retry += 1;
            warn!(error = %failure.error, retry, of = max_retries, delay_ms = delay.as_millis() as u64, "retrying llm request");
            sleep(delay).await;
        }
    }

    /// One HTTP attempt, up to and including its first delta.
    async fn open_once(&self) -> Result<Option<(Box<Upstream>, LlmDelta)>, Failure> {
        let endpoint = &self.endpoint;
        let deadline = later(Instant::now(), endpoint.config.first_token_timeout);
        let mut request = endpoint
            .client
            .post(endpoint.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream")
            .body(self.body.clone());
        if let Some(authorization) = &endpoint.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let response = match timeout_at(deadline, request.send()).await {
            Err(_elapsed) => return Err(Failure::fatal(first_token_timeout())),
            Ok(Err(error)) => return Err(send_failure(&error)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            return Err(status_failure(response, deadline).await);
        }
        let mut upstream = if is_json(response.headers()) {
            // A server that ignored `stream: true` and answered one `chat.completion`.
            Upstream::whole(read_completion(response, deadline).await?)
        } else {
            Upstream::streaming(response)
        };
        match upstream.next_step(Wait::FirstToken(deadline)).await {
            Step::Delta(first) => Ok(Some((Box::new(upstream), first))),
            Step::End => Ok(None),
            Step::Fail(error) => Err(match error {
                // The connection broke or ended before any text: nothing reached the user yet.
                ProviderError::Transport(_) => Failure::retryable(error),
                _ => Failure::fatal(error),
            }),
        }
    }
}

/// A failed attempt and whether (and how soon) another attempt may follow.
struct Failure {
    error: ProviderError,
    retry: Retry,
}

enum Retry {
    No,
    Backoff,
    After(Duration),
}

impl Failure {
    fn fatal(error: ProviderError) -> Failure {
        Failure {
            error,
            retry: Retry::No,
        }
    }

    fn retryable(error: ProviderError) -> Failure {
        Failure {
            error,
            retry: Retry::Backoff,
        }
    }

    /// The wait before retry number `retry + 1`, or `None` when this failure is not retried.
    fn delay(&self, retry: u32) -> Option<Duration> {
        match self.retry {
            Retry::No => None,
            Retry::After(after) => (after <= RETRY_AFTER_MAX).then_some(after),
            Retry::Backoff => {
                let exponential = BACKOFF_BASE
                    .saturating_mul(1u32 << retry.min(16))
                    .min(BACKOFF_MAX);
                Some(exponential.mul_f64(1.0 + rand::random::<f64>() * 0.25))
            }
        }
    }
}

/// `from + wait`, saturated at a year: a timeout too long to add (an `OpenAiConfig` built by
/// hand) means "no timeout", not a panic.
fn later(from: Instant, wait: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    from.checked_add(wait.min(FAR)).unwrap_or(from)
}

fn first_token_timeout() -> ProviderError {
    ProviderError::Timeout("first token".to_owned())
}

fn reasoning_timeout(budget: Duration) -> ProviderError {
    ProviderError::Timeout(format!(
        "the model reasoned for {:.0} s without starting its reply (LLM_REASONING_TIMEOUT)",
        budget.as_secs_f64()
    ))
}

fn send_failure(error: &reqwest::Error) -> Failure {
    if error.is_connect() && error.is_timeout() {
        return Failure::retryable(ProviderError::Timeout("connect".to_owned()));
    }
    Failure::retryable(ProviderError::Transport(describe(error)))
}

/// Maps a non-2xx response to the error callers branch on, reading the body for its message.
async fn status_failure(response: reqwest::Response, deadline: Instant) -> Failure {
    let status = response.status();
    let retry_after = crate::retry_after::from_headers(response.headers());
    let body = read_capped(response, deadline).await;
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    let message = parsed
        .as_ref()
        .and_then(chunk::error_message)
        .unwrap_or_else(|| match String::from_utf8_lossy(&body).trim() {
            "" => status.canonical_reason().unwrap_or("no reason").to_owned(),
            text => chunk::quote(text),
        });
    let error_code = parsed.as_ref().and_then(|value| {
        let error = value.get("error")?;
        error
            .get("code")
            .or_else(|| error.get("type"))?
            .as_str()
            .map(str::to_owned)
    });
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::fatal(ProviderError::Auth(
            format!("HTTP {}: {message}", status.as_u16()),
        )),
        StatusCode::TOO_MANY_REQUESTS => {
            warn!(%message, ?retry_after, "rate limited by the llm provider");
            let error = ProviderError::RateLimited { retry_after };
            // An exhausted quota does not come back by waiting a few seconds.
            if error_code.as_deref() == Some("insufficient_quota") {
                Failure::fatal(error)
            } else {
                Failure {
                    error,
                    retry: retry_after.map_or(Retry::Backoff, Retry::After),
                }
            }
        }
        StatusCode::NOT_FOUND => Failure::fatal(ProviderError::Protocol(format!(
            "HTTP 404: {message} (base URL must include the API version path, e.g. `/v1`)"
        ))),
        _ => {
            let error = ProviderError::Protocol(format!("HTTP {}: {message}", status.as_u16()));
            if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
                Failure::retryable(error)
            } else {
                Failure::fatal(error)
            }
        }
    }
}

/// Up to [`ERROR_BODY_MAX`] bytes of the body, or what arrived before `deadline`.
async fn read_capped(mut response: reqwest::Response, deadline: Instant) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_MAX {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(bytes))) => body.extend_from_slice(&bytes),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_MAX);
    body
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// The reply text of a non-streamed `chat.completion` body.
async fn read_completion(
    response: reqwest::Response,
    deadline: Instant,
) -> Result<String, Failure> {
    let body = match timeout_at(deadline, response.bytes()).await {
        Err(_elapsed) => return Err(Failure::fatal(first_token_timeout())),
        Ok(Err(error)) => {
            return Err(Failure::retryable(ProviderError::Transport(describe(
                &error,
            ))));
        }
        Ok(Ok(body)) => body,
    };
    let value: Value = serde_json::from_slice(&body).map_err(|_| {
        Failure::fatal(ProviderError::Protocol(format!(
            "upstream sent a JSON content type but not JSON: {}",
            chunk::quote(&String::from_utf8_lossy(&body))
        )))
    })?;
    if let Some(message) = value
        .get("error")
        .and_then(|_| chunk::error_message(&value))
    {
        return Err(Failure::fatal(ProviderError::Protocol(format!(
            "upstream error: {message}"
        ))));
    }
    Ok(value
        .pointer("/choices/0/message/content")
        .map(chunk::content_text)
        .unwrap_or_default())
}

/// How long `Upstream::next_step` may wait.
#[derive(Clone, Copy)]
enum Wait {
    /// Until this instant, for the first delta of an attempt.
    FirstToken(Instant),
    /// For this long after the last SSE data event, and never past the instant (the reasoning
    /// budget) when one is given.
    Idle(Duration, Option<Instant>),
}

enum Step {
    Delta(LlmDelta),
    End,
    Fail(ProviderError),
}

/// An open `200 OK` response being read as SSE.
struct Upstream {
    /// `None` once the body has been read to its end (or was read whole).
    response: Option<reqwest::Response>,
    parser: SseParser,
    events: Vec<SseEvent>,
    signals: Vec<Signal>,
    /// Steps decoded but not yet handed out; a failure is always last.
    pending: std::collections::VecDeque<Step>,
    /// `finish_reason` was seen: the reply is complete even if the body ends without `[DONE]`.
    finished: bool,
    /// `[DONE]` was seen: nothing after it is read as reply.
    done: bool,
    failed: bool,
}

impl Upstream {
    fn streaming(response: reqwest::Response) -> Upstream {
        Upstream::new(Some(response))
    }

    /// A reply that arrived in one piece (non-streamed `chat.completion`).
    fn whole(text: String) -> Upstream {
        let mut upstream = Upstream::new(None);
        if !text.is_empty() {
            upstream
                .pending
                .push_back(Step::Delta(LlmDelta::Text(text)));
        }
        upstream.done = true;
        upstream
    }

    fn new(response: Option<reqwest::Response>) -> Upstream {
        Upstream {
            response,
            parser: SseParser::new(),
            events: Vec::new(),
            signals: Vec::new(),
            pending: Default::default(),
            finished: false,
            done: false,
            failed: false,
        }
    }

    async fn next_step(&mut self, wait: Wait) -> Step {
        let mut idle_from = Instant::now();
        loop {
            if let Some(step) = self.pending.pop_front() {
                return step;
            }
            if self.failed {
                return Step::End; // the failure was handed out already; never read on
            }
            let complete = self.finished || self.done;
            let Some(response) = self.response.as_mut() else {
                return self.end_of_body();
            };
            let mut deadline = match wait {
                Wait::FirstToken(deadline) => deadline,
                Wait::Idle(gap, None) => later(idle_from, gap),
                Wait::Idle(gap, Some(by)) => later(idle_from, gap).min(by),
            };
            if complete {
                deadline = deadline.min(Instant::now() + TRAILER_GRACE);
            }
            let read = timeout_at(deadline, response.chunk()).await;
            match read {
                Err(_elapsed) if complete => return self.close_early(),
                Err(_elapsed) => {
                    return Step::Fail(match wait {
                        Wait::FirstToken(_) => first_token_timeout(),
                        // Past the reasoning budget: the caller names it (it knows the budget).
                        Wait::Idle(..) => ProviderError::Timeout("idle".to_owned()),
                    });
                }
                Ok(Err(_)) if complete => return self.close_early(),
                Ok(Err(error)) => return Step::Fail(ProviderError::Transport(describe(&error))),
                Ok(Ok(None)) => {
                    // Body complete: the connection can be reused by the pool.
                    self.response = None;
                    self.parser.finish(&mut self.events);
                    self.absorb_events();
                }
                Ok(Ok(Some(bytes))) => {
                    self.parser.push(&bytes, &mut self.events);
                    if self.absorb_events() {
                        idle_from = Instant::now();
                    }
                }
            }
        }
    }

    /// The body ended (or was never streamed): complete if the reply said so, else cut short.
    fn end_of_body(&mut self) -> Step {
        if self.finished || self.done || self.failed {
            Step::End
        } else {
            self.failed = true;
            Step::Fail(ProviderError::Transport("stream ended early".to_owned()))
        }
    }

    /// The reply is complete but the body did not end in time (or broke after the end): stop
    /// reading. Dropping the response closes the connection instead of pooling it.
    fn close_early(&mut self) -> Step {
        self.response = None;
        Step::End
    }

    /// Turns parsed events into pending steps. Returns whether any data event arrived (the
    /// server is alive, so the idle clock restarts).
    fn absorb_events(&mut self) -> bool {
        let any = !self.events.is_empty();
        for event in self.events.drain(..) {
            if self.done || self.failed {
                continue; // nothing after `[DONE]` or an error is part of the reply
            }
            if let Err(error) = chunk::read_event(&event, &mut self.signals) {
                self.pending.push_back(Step::Fail(error));
                self.failed = true;
                self.response = None; // do not read (or pool) a connection that spoke garbage
            }
            for signal in self.signals.drain(..) {
                match signal {
                    _ if self.done => {}
                    Signal::Text(text) => {
                        self.pending.push_back(Step::Delta(LlmDelta::Text(text)));
                    }
                    Signal::Reasoning(text) => {
                        self.pending
                            .push_back(Step::Delta(LlmDelta::Reasoning(text)));
                    }
                    Signal::Finished => self.finished = true,
                    Signal::FinishedAtCap => {
                        if !self.finished {
                            self.pending.push_back(Step::Delta(LlmDelta::Capped));
                        }
                        self.finished = true;
                    }
                    Signal::Done => self.done = true,
                }
            }
        }
        // Whatever is already buffered after `[DONE]` is read now, so a body that has ended
        // returns its connection to the pool without waiting for the consumer.
        if self.done
            && let Some(response) = self.response.as_mut()
        {
            loop {
                match response.chunk().now_or_never() {
                    Some(Ok(Some(_trailer))) => {}
                    Some(Ok(None) | Err(_)) => {
                        self.response = None;
                        break;
                    }
                    None => break,
                }
            }
        }
        any
    }
}

/// A reqwest error with its chain of causes (`reqwest` keeps the useful part in `source`).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
