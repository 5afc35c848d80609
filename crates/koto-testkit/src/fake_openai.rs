//! A fake OpenAI-compatible `/v1/chat/completions` server on 127.0.0.1:0 speaking the real wire
//! format (HTTP/1.1, chunked `text/event-stream`, `chat.completion.chunk` frames, `[DONE]`),
//! scriptable per request: delays, byte-level write splits, error statuses, hangs, resets, garbage.
//!
//! HTTP is hand-rolled so every write is under the script's control. Deliberately not a general
//! HTTP server: no TLS, no chunked request bodies, no `Expect: 100-continue`.
//!
//! Latency: sockets are `TCP_NODELAY`, every frame is written (and so sent) as soon as its
//! scripted time comes, and nothing else is awaited on the way, because `kotodama bench` measures
//! engine overhead as TTFT minus the scripted first-token delay.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::WriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The only path that gets scripted answers; the client's base URL is `http://…/v1`.
pub const COMPLETIONS_PATH: &str = "/v1/chat/completions";
/// Largest request head + body the fake accepts.
const REQUEST_MAX: usize = 4 * 1024 * 1024;

/// Which response each chat-completions request gets: request `i` (0-based, in arrival order)
/// gets `responses[i]`, and every request after the list gets its last entry.
#[derive(Debug, Clone)]
pub struct FakeScript {
    responses: Vec<FakeResponse>,
    /// `cycle`: request `i` gets `responses[i % len]`, and requests are counted, not logged
    /// (a soak sends tens of thousands: a log would be the fake's own memory growth).
    cycling: bool,
}

impl FakeScript {
    /// Every request gets `response`.
    pub fn always(response: FakeResponse) -> FakeScript {
        FakeScript {
            responses: vec![response],
            cycling: false,
        }
    }

    /// Request `i` gets `responses[i % len]`, forever, and no request is kept in the log
    /// (`requests()` stays empty; `request_count()` counts). For long runs. Panics on an empty
    /// list.
    pub fn cycle(responses: Vec<FakeResponse>) -> FakeScript {
        assert!(
            !responses.is_empty(),
            "a FakeScript needs at least one response"
        );
        FakeScript {
            responses,
            cycling: true,
        }
    }

    /// Request `i` gets `responses[i]`; the last one repeats. Panics on an empty list.
    pub fn sequence(responses: Vec<FakeResponse>) -> FakeScript {
        assert!(
            !responses.is_empty(),
            "a FakeScript needs at least one response"
        );
        FakeScript {
            responses,
            cycling: false,
        }
    }

    fn response_for(&self, index: usize) -> Option<&FakeResponse> {
        if self.cycling {
            return self.responses.get(index % self.responses.len());
        }
        self.responses.get(index).or_else(|| self.responses.last())
    }
}

/// One scripted answer to a chat-completions request.
#[derive(Debug, Clone)]
pub enum FakeResponse {
    /// `200 OK` with a streamed reply.
    Stream(FakeStream),
    /// A plain response, e.g. an error: `status`, extra `headers`, `body` (sent as
    /// `application/json` unless `headers` name another content type).
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// `200 OK` `text/event-stream` whose body is exactly `body`, written in pieces cut at the
    /// byte offsets `cuts` (each piece its own write and HTTP chunk), then ended cleanly.
    SseBytes { body: Vec<u8>, cuts: Vec<usize> },
    /// `200 OK` with a non-streamed `chat.completion` JSON (a server ignoring `stream: true`).
    Completion { content: String },
    /// Read the request, then never answer (the connection stays open).
    Hang,
}

impl FakeResponse {
    /// A normal streamed reply of `text`, cut into token-sized deltas by [`split_tokens`].
    pub fn reply(text: &str) -> FakeResponse {
        FakeResponse::Stream(FakeStream::from_text(text))
    }

    /// A normal streamed reply of exactly these deltas.
    pub fn tokens<S: Into<String>>(tokens: impl IntoIterator<Item = S>) -> FakeResponse {
        FakeResponse::Stream(FakeStream::new(tokens))
    }

    /// `status` with OpenAI's error body `{"error":{"message":…,"type":…,"code":…}}`.
    pub fn error(status: u16, message: &str) -> FakeResponse {
        let kind = match status {
            401 | 403 => "invalid_request_error",
            429 => "rate_limit_exceeded",
            _ => "server_error",
        };
        FakeResponse::Status {
            status,
            headers: Vec::new(),
            body: json!({"error": {"message": message, "type": kind, "param": null, "code": kind}})
                .to_string(),
        }
    }

    /// `429` with `retry-after: <seconds>`.
    pub fn rate_limited(retry_after_secs: u64) -> FakeResponse {
        FakeResponse::rate_limited_with(&retry_after_secs.to_string())
    }

    /// `429` with `retry-after: <retry_after>` exactly as given: a huge or negative number, an
    /// HTTP-date, garbage (one line; a CR or LF would end the header).
    pub fn rate_limited_with(retry_after: &str) -> FakeResponse {
        match FakeResponse::error(429, "Rate limit reached for requests") {
            FakeResponse::Status { status, body, .. } => FakeResponse::Status {
                status,
                headers: vec![("retry-after".to_owned(), retry_after.to_owned())],
                body,
            },
            other => other,
        }
    }
}

/// How a streamed reply is sent. Build with [`FakeStream::new`] and the `with_…` methods.
#[derive(Debug, Clone)]
pub struct FakeStream {
    /// The `delta.content` of successive chunks.
    pub tokens: Vec<String>,
    /// From the end of the request to the first content chunk (the role chunk goes at once).
    pub first_token_delay: Duration,
    /// Between successive content chunks.
    pub token_gap: Duration,
    /// Split every SSE frame into writes of at most this many bytes (also inside UTF-8
    /// characters), each its own HTTP chunk, so the client sees them separately.
    pub write_size: Option<usize>,
    /// `"\n"` (default), `"\r\n"` or `"\r"`.
    pub line_ending: &'static str,
    /// Send OpenAI's role-only first chunk (`{"role":"assistant","content":""}`). Default on.
    pub role_chunk: bool,
    /// `reasoning_content` chunks sent before the content, as thinking models do.
    pub reasoning: Vec<String>,
    /// Before each reasoning chunk (a model thinking for a while).
    pub reasoning_gap: Duration,
    /// A `: keep-alive` comment before every content chunk.
    pub keepalive_comments: bool,
    /// A `usage` chunk with empty `choices` after the finish chunk.
    pub usage_chunk: bool,
    pub end: FakeEnd,
}

/// How a streamed reply ends after its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeEnd {
    /// Finish chunk (`finish_reason: "stop"`), `data: [DONE]`, clean end of body. Default.
    Done,
    /// Finish chunk with `finish_reason: "length"` (the `max_tokens` cap), then `[DONE]`.
    Length,
    /// `data: [DONE]` without a finish chunk.
    DoneWithoutFinish,
    /// Finish chunk, then a clean end of body without `[DONE]`.
    FinishWithoutDone,
    /// A clean end of the HTTP body with neither finish chunk nor `[DONE]`.
    Truncated,
    /// Close the TCP connection with the HTTP body incomplete.
    Close,
    /// Reset the TCP connection (RST).
    Reset,
    /// Send nothing more and keep the connection open.
    Hang,
    /// Send `data: <this>` (not JSON), then `[DONE]`.
    Garbage(String),
}

impl FakeStream {
    pub fn new<S: Into<String>>(tokens: impl IntoIterator<Item = S>) -> FakeStream {
        FakeStream {
            tokens: tokens.into_iter().map(Into::into).collect(),
            first_token_delay: Duration::ZERO,
            token_gap: Duration::ZERO,
            write_size: None,
            line_ending: "\n",
            role_chunk: true,
            reasoning: Vec::new(),
            reasoning_gap: Duration::ZERO,
            keepalive_comments: false,
            usage_chunk: false,
            end: FakeEnd::Done,
        }
    }

    /// `text` cut into token-sized deltas by [`split_tokens`].
    pub fn from_text(text: &str) -> FakeStream {
        FakeStream::new(split_tokens(text))
    }

    pub fn with_first_token_delay(mut self, delay: Duration) -> FakeStream {
        self.first_token_delay = delay;
        self
    }

    pub fn with_token_gap(mut self, gap: Duration) -> FakeStream {
        self.token_gap = gap;
        self
    }

    pub fn with_write_size(mut self, bytes: usize) -> FakeStream {
        self.write_size = Some(bytes.max(1));
        self
    }

    pub fn with_line_ending(mut self, line_ending: &'static str) -> FakeStream {
        self.line_ending = line_ending;
        self
    }

    pub fn without_role_chunk(mut self) -> FakeStream {
        self.role_chunk = false;
        self
    }

    pub fn with_reasoning<S: Into<String>>(
        mut self,
        reasoning: impl IntoIterator<Item = S>,
    ) -> FakeStream {
        self.reasoning = reasoning.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_reasoning_gap(mut self, gap: Duration) -> FakeStream {
        self.reasoning_gap = gap;
        self
    }

    pub fn with_keepalive_comments(mut self) -> FakeStream {
        self.keepalive_comments = true;
        self
    }

    pub fn with_usage_chunk(mut self) -> FakeStream {
        self.usage_chunk = true;
        self
    }

    pub fn with_end(mut self, end: FakeEnd) -> FakeStream {
        self.end = end;
        self
    }

    /// The reply text the client should reassemble.
    pub fn text(&self) -> String {
        self.tokens.concat()
    }
}

impl From<FakeStream> for FakeResponse {
    fn from(stream: FakeStream) -> FakeResponse {
        FakeResponse::Stream(stream)
    }
}

/// Cuts text the way LLM tokenizers roughly do: ASCII words with their leading space
/// (`"Hello"`, `" world"`), other scripts two characters at a time.
pub fn split_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut n_wide = 0;
    let mut has_narrow = false;
    for c in text.chars() {
        let wide = !c.is_ascii() && !c.is_whitespace();
        let boundary = if c.is_whitespace() {
            n_wide > 0 || has_narrow
        } else if wide {
            n_wide >= 2 || has_narrow
        } else {
            n_wide > 0
        };
        if boundary && !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
            n_wide = 0;
            has_narrow = false;
        }
        if wide {
            n_wide += 1;
        } else if !c.is_whitespace() {
            has_narrow = true;
        }
        current.push(c);
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// A chat-completions request as the fake received it.
pub type FakeRequest = crate::http1::HttpRequest;

/// State shared by the handle and the connection tasks.
#[derive(Debug)]
struct Shared {
    script: FakeScript,
    /// Std mutex, only held to push or clone (never across an await). A request's index in
    /// this log is its script index.
    requests: Mutex<Vec<FakeRequest>>,
    /// How many chat-completions requests arrived. Written by connection tasks (after the log
    /// push), watched by `wait_for_requests`.
    n_requests: watch::Sender<usize>,
    /// TCP connections accepted.
    n_connections: AtomicUsize,
    /// Responses the client abandoned by closing the connection before the fake finished them.
    /// Written by connection tasks, watched by `wait_for_disconnects`.
    disconnects: watch::Sender<usize>,
}

/// A running fake. Dropping it stops the server and every open connection.
#[derive(Debug)]
pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl FakeOpenAi {
    /// Binds 127.0.0.1:0 and serves `script`. Panics if loopback cannot be bound (a test
    /// environment without loopback cannot run these tests anyway).
    pub async fn start(script: FakeScript) -> FakeOpenAi {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding 127.0.0.1:0 for the fake OpenAI server");
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let shared = Arc::new(Shared {
            script,
            requests: Mutex::new(Vec::new()),
            n_requests: watch::Sender::new(0),
            n_connections: AtomicUsize::new(0),
            disconnects: watch::Sender::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FakeOpenAi {
            addr,
            shared,
            accept_task,
        }
    }

    /// `http://127.0.0.1:<port>/v1`, what `OPENAI_BASE_URL` would hold.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bodies of the chat-completions requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.request_log()
            .into_iter()
            .map(|request| request.body)
            .collect()
    }

    /// The chat-completions requests received so far, with method, path and headers.
    pub fn request_log(&self) -> Vec<FakeRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many chat-completions requests arrived.
    pub fn request_count(&self) -> usize {
        *self.shared.n_requests.borrow()
    }

    /// Waits until at least `n` chat-completions requests have arrived (and so are being
    /// answered). Wrap it in a timeout in tests: it waits as long as it takes.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut watcher = self.shared.n_requests.subscribe();
        // The sender lives in `self.shared`, so it cannot be dropped while we wait.
        let _ = watcher.wait_for(|count| *count >= n).await;
    }

    /// How many TCP connections the fake accepted (a pooling client reuses them).
    pub fn connection_count(&self) -> usize {
        self.shared.n_connections.load(Ordering::SeqCst)
    }

    /// How many responses the client abandoned by closing its connection before the fake
    /// finished writing them (or while it hung).
    pub fn disconnects(&self) -> usize {
        *self.shared.disconnects.borrow()
    }

    /// Waits until at least `n` responses were abandoned by the client (see [`Self::disconnects`]).
    /// Wrap it in a timeout in tests: it waits as long as it takes.
    pub async fn wait_for_disconnects(&self, n: usize) {
        let mut watcher = self.shared.disconnects.subscribe();
        // The sender lives in `self.shared`, so it cannot be dropped while we wait.
        let _ = watcher.wait_for(|count| *count >= n).await;
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _peer)) => {
                    shared.n_connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve_connection(Arc::clone(&shared), socket));
                }
                Err(error) => {
                    // E.g. out of file descriptors under a heavy bench: back off, keep serving.
                    tracing::warn!(%error, "fake OpenAI accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// How a connection's request loop ended.
enum Ending {
    /// Client went away between requests, or the fake closed after a response.
    Quiet,
    /// Client closed while a response was in progress.
    ClientClosed,
    /// The script asked for a TCP reset.
    Reset,
}

/// What to do with the connection after a response.
enum After {
    KeepAlive,
    Close,
    Reset,
}

async fn serve_connection(shared: Arc<Shared>, mut socket: TcpStream) {
    // Small frames must leave at once, not wait for Nagle.
    let _ = socket.set_nodelay(true);
    match serve_requests(&shared, &mut socket).await {
        Ending::Quiet => {}
        Ending::ClientClosed => shared.disconnects.send_modify(|count| *count += 1),
        Ending::Reset => {
            // Zero linger makes the close below an RST instead of a FIN.
            let _ = socket.set_zero_linger();
        }
    }
}

async fn serve_requests(shared: &Shared, socket: &mut TcpStream) -> Ending {
    let (mut reader, mut writer) = socket.split();
    let mut buffer = Vec::with_capacity(8 * 1024);
    loop {
        let Some(request) = crate::http1::read_request(&mut reader, &mut buffer, REQUEST_MAX).await
        else {
            return Ending::Quiet;
        };
        let (response, context) = route(shared, request);
        let respond = write_response(&mut writer, response, context);
        tokio::pin!(respond);
        // While responding, watch the read side: EOF there is the client abandoning the
        // response (dropped stream, timeout), which a hanging or sleeping writer would miss.
        let outcome = loop {
            tokio::select! {
                result = &mut respond => break result,
                read = reader.read_buf(&mut buffer) => match read {
                    Ok(0) | Err(_) => return Ending::ClientClosed,
                    Ok(_) => {} // the next request, early; it stays in `buffer`
                },
            }
        };
        match outcome {
            Ok(After::KeepAlive) => {}
            Ok(After::Close) => return Ending::Quiet,
            Ok(After::Reset) => return Ending::Reset,
            Err(_write_failed) => return Ending::ClientClosed,
        }
    }
}

/// Per-request values that appear in the chunks.
struct ChunkContext {
    id: String,
    model: String,
    created: u64,
}

fn route(shared: &Shared, request: FakeRequest) -> (FakeResponse, ChunkContext) {
    let mut context = ChunkContext {
        id: String::new(),
        model: "fake-model".to_owned(),
        created: unix_now(),
    };
    if request.method != "POST" || request.path != COMPLETIONS_PATH {
        let response = if request.method == "GET" && request.path == "/v1/models" {
            FakeResponse::Status {
                status: 200,
                headers: Vec::new(),
                body: json!({"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "kotodama"}]})
                    .to_string(),
            }
        } else {
            FakeResponse::error(
                404,
                &format!("no route for {} {}", request.method, request.path),
            )
        };
        return (response, context);
    }
    if let Some(model) = request.body.get("model").and_then(Value::as_str) {
        context.model = model.to_owned();
    }
    let index = if shared.script.cycling {
        *shared.n_requests.borrow()
    } else {
        let mut requests = shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests.push(request);
        requests.len() - 1
    };
    shared.n_requests.send_modify(|count| *count += 1);
    context.id = format!("chatcmpl-fake{index}");
    let response = shared
        .script
        .response_for(index)
        .cloned()
        .unwrap_or_else(|| FakeResponse::error(500, "empty script"));
    (response, context)
}

async fn write_response(
    writer: &mut WriteHalf<'_>,
    response: FakeResponse,
    context: ChunkContext,
) -> std::io::Result<After> {
    match response {
        FakeResponse::Hang => std::future::pending().await,
        FakeResponse::Status {
            status,
            headers,
            body,
        } => {
            write_plain(writer, status, &headers, &body).await?;
            Ok(After::KeepAlive)
        }
        FakeResponse::Completion { content } => {
            let body = json!({
                "id": context.id, "object": "chat.completion", "created": context.created,
                "model": context.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            });
            write_plain(writer, 200, &[], &body.to_string()).await?;
            Ok(After::KeepAlive)
        }
        FakeResponse::SseBytes { body, mut cuts } => {
            writer.write_all(SSE_HEAD).await?;
            cuts.retain(|&cut| cut > 0 && cut < body.len());
            cuts.sort_unstable();
            cuts.dedup();
            let mut start = 0;
            for end in cuts.into_iter().chain([body.len()]) {
                write_chunk(writer, &body[start..end]).await?;
                start = end;
            }
            writer.write_all(LAST_CHUNK).await?;
            Ok(After::KeepAlive)
        }
        FakeResponse::Stream(stream) => write_stream(writer, &stream, &context).await,
    }
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
/// The terminating chunk of a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

async fn write_plain(
    writer: &mut WriteHalf<'_>,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("content-type: application/json\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    writer.write_all(head.as_bytes()).await
}

/// One HTTP chunk in one write. Empty data is skipped: a zero-size chunk would end the body.
async fn write_chunk(writer: &mut WriteHalf<'_>, data: &[u8]) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\r\n");
    writer.write_all(&chunk).await
}

async fn write_stream(
    writer: &mut WriteHalf<'_>,
    stream: &FakeStream,
    context: &ChunkContext,
) -> std::io::Result<After> {
    let line_end = stream.line_ending;
    let frame = |payload: &str| format!("data: {payload}{line_end}{line_end}");
    let chunk = |delta: Value, finish_reason: Value| {
        frame(
            &json!({
                "id": context.id, "object": "chat.completion.chunk", "created": context.created,
                "model": context.model, "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
            })
            .to_string(),
        )
    };
    let write_size = stream.write_size;
    writer.write_all(SSE_HEAD).await?;
    if stream.role_chunk {
        send_frame(
            writer,
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            write_size,
        )
        .await?;
    }
    for thought in &stream.reasoning {
        if !stream.reasoning_gap.is_zero() {
            tokio::time::sleep(stream.reasoning_gap).await;
        }
        send_frame(
            writer,
            chunk(json!({"reasoning_content": thought}), Value::Null),
            write_size,
        )
        .await?;
    }
    for (index, token) in stream.tokens.iter().enumerate() {
        let wait = if index == 0 {
            stream.first_token_delay
        } else {
            stream.token_gap
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if stream.keepalive_comments {
            send_frame(
                writer,
                format!(": keep-alive{line_end}{line_end}"),
                write_size,
            )
            .await?;
        }
        send_frame(
            writer,
            chunk(json!({"content": token}), Value::Null),
            write_size,
        )
        .await?;
    }
    if stream.tokens.is_empty() && !stream.first_token_delay.is_zero() {
        tokio::time::sleep(stream.first_token_delay).await;
    }
    let finish = || chunk(json!({}), json!("stop"));
    let usage = || {
        frame(
            &json!({
                "id": context.id, "object": "chat.completion.chunk", "created": context.created,
                "model": context.model, "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": stream.tokens.len(), "total_tokens": 9 + stream.tokens.len()},
            })
            .to_string(),
        )
    };
    match &stream.end {
        FakeEnd::Done => {
            send_frame(writer, finish(), write_size).await?;
            if stream.usage_chunk {
                send_frame(writer, usage(), write_size).await?;
            }
            send_frame(writer, frame("[DONE]"), write_size).await?;
        }
        FakeEnd::Length => {
            send_frame(writer, chunk(json!({}), json!("length")), write_size).await?;
            send_frame(writer, frame("[DONE]"), write_size).await?;
        }
        FakeEnd::DoneWithoutFinish => send_frame(writer, frame("[DONE]"), write_size).await?,
        FakeEnd::FinishWithoutDone => {
            send_frame(writer, finish(), write_size).await?;
            if stream.usage_chunk {
                send_frame(writer, usage(), write_size).await?;
            }
        }
        FakeEnd::Truncated => {}
        FakeEnd::Close => return Ok(After::Close),
        FakeEnd::Reset => return Ok(After::Reset),
        FakeEnd::Hang => std::future::pending::<()>().await,
        FakeEnd::Garbage(garbage) => {
            send_frame(writer, frame(garbage), write_size).await?;
            send_frame(writer, frame("[DONE]"), write_size).await?;
        }
    }
    writer.write_all(LAST_CHUNK).await?;
    Ok(After::KeepAlive)
}

/// One SSE frame, in pieces of at most `write_size` bytes, each its own write and HTTP chunk.
async fn send_frame(
    writer: &mut WriteHalf<'_>,
    frame: String,
    write_size: Option<usize>,
) -> std::io::Result<()> {
    let bytes = frame.into_bytes();
    for piece in bytes.chunks(write_size.unwrap_or(bytes.len()).max(1)) {
        write_chunk(writer, piece).await?;
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_tokens_keeps_every_character_and_cuts_like_a_tokenizer() {
        assert_eq!(
            split_tokens("Hello big world."),
            ["Hello", " big", " world."],
            "words carry their leading space"
        );
        assert_eq!(
            split_tokens("你好世界！"),
            ["你好", "世界", "！"],
            "CJK two characters at a time"
        );
        let mixed = "OK 今晚玩什么？ sure";
        assert_eq!(split_tokens(mixed).concat(), mixed, "nothing lost or added");
    }

    #[test]
    fn script_repeats_its_last_response() {
        let script = FakeScript::sequence(vec![FakeResponse::error(500, "a"), FakeResponse::Hang]);
        assert!(
            matches!(
                script.response_for(0),
                Some(FakeResponse::Status { status: 500, .. })
            ),
            "first"
        );
        assert!(
            matches!(script.response_for(5), Some(FakeResponse::Hang)),
            "the last one repeats"
        );
    }
}
