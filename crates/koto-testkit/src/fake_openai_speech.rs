//! A fake OpenAI-compatible `POST /v1/audio/speech` server on 127.0.0.1:0: answers with raw PCM
//! or MP3 in small HTTP/1.1 chunks (odd sizes by default, so samples straddle chunks), scripted
//! error statuses, or a stream that stops and waits; records every request body and counts the
//! responses the client abandoned by closing the connection.
//!
//! HTTP is hand-rolled so every write is under the script's control; one request per connection
//! (`Connection: close`). Not a general HTTP server: no TLS, no chunked request bodies.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::WriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The route the client must call; its base URL is `http://…/v1`.
pub const SPEECH_PATH: &str = "/v1/audio/speech";
/// Largest request head + body the fake accepts.
const REQUEST_MAX: usize = 1024 * 1024;

/// Request `i` (0-based, in arrival order) gets `responses[i]`; later ones the last entry.
#[derive(Debug, Clone)]
pub struct SpeechScript {
    responses: Vec<SpeechResponse>,
}

impl SpeechScript {
    pub fn always(response: SpeechResponse) -> SpeechScript {
        SpeechScript {
            responses: vec![response],
        }
    }

    /// Panics on an empty list.
    pub fn sequence(responses: Vec<SpeechResponse>) -> SpeechScript {
        assert!(
            !responses.is_empty(),
            "a SpeechScript needs at least one response"
        );
        SpeechScript { responses }
    }

    fn response_for(&self, index: usize) -> Option<&SpeechResponse> {
        self.responses.get(index).or_else(|| self.responses.last())
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum SpeechResponse {
    /// `200 OK` with a chunked audio body.
    Audio(SpeechAudio),
    /// A plain response, e.g. an error; `body` is sent as `application/json`.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

impl SpeechResponse {
    /// OpenAI's `pcm`: s16le mono (24 kHz by convention; the fake does not care).
    pub fn pcm(samples: &[i16]) -> SpeechResponse {
        let body: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        SpeechResponse::Audio(SpeechAudio::new(body, "audio/pcm"))
    }

    pub fn mp3(bytes: impl Into<Bytes>) -> SpeechResponse {
        SpeechResponse::Audio(SpeechAudio::new(bytes, "audio/mpeg"))
    }

    /// An error in OpenAI's JSON shape.
    pub fn error(status: u16, message: &str) -> SpeechResponse {
        let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
        SpeechResponse::Status {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// `429` with `Retry-After: <secs>`.
    pub fn rate_limited(retry_after_secs: u64) -> SpeechResponse {
        let body = json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}});
        SpeechResponse::Status {
            status: 429,
            headers: vec![("Retry-After".to_owned(), retry_after_secs.to_string())],
            body: body.to_string(),
        }
    }
}

/// A `200` audio body and how it is written.
#[derive(Debug, Clone)]
pub struct SpeechAudio {
    body: Bytes,
    content_type: String,
    chunk_bytes: usize,
    first_byte_delay: Duration,
    hold_after_bytes: Option<usize>,
}

impl SpeechAudio {
    /// Written in 333-byte HTTP chunks: odd, so PCM samples straddle chunk boundaries.
    pub fn new(body: impl Into<Bytes>, content_type: &str) -> SpeechAudio {
        SpeechAudio {
            body: body.into(),
            content_type: content_type.to_owned(),
            chunk_bytes: 333,
            first_byte_delay: Duration::ZERO,
            hold_after_bytes: None,
        }
    }

    pub fn with_chunk_bytes(mut self, bytes: usize) -> SpeechAudio {
        self.chunk_bytes = bytes.max(1);
        self
    }

    /// Wait (tokio time) before the response head.
    pub fn with_first_byte_delay(mut self, delay: Duration) -> SpeechAudio {
        self.first_byte_delay = delay;
        self
    }

    /// After at least `bytes` of body, write nothing more and wait for the client to go away.
    pub fn holding_after(mut self, bytes: usize) -> SpeechAudio {
        self.hold_after_bytes = Some(bytes);
        self
    }
}

impl From<SpeechAudio> for SpeechResponse {
    fn from(audio: SpeechAudio) -> Self {
        SpeechResponse::Audio(audio)
    }
}

/// A request as the fake received it.
pub type SpeechRequest = crate::http1::HttpRequest;

struct Shared {
    script: SpeechScript,
    /// Std mutex, only held to push or clone (never across an await).
    requests: Mutex<Vec<SpeechRequest>>,
    /// Responses the client abandoned by closing the connection before the fake finished them.
    /// Written by connection tasks, watched by `wait_for_disconnects`.
    disconnects: watch::Sender<usize>,
}

/// A running fake. Dropping it stops the server and every open connection.
pub struct FakeOpenAiSpeech {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl FakeOpenAiSpeech {
    /// Binds 127.0.0.1:0 and serves `script`. Panics if loopback cannot be bound.
    pub async fn start(script: SpeechScript) -> FakeOpenAiSpeech {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding 127.0.0.1:0 for the fake speech server");
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let shared = Arc::new(Shared {
            script,
            requests: Mutex::new(Vec::new()),
            disconnects: watch::Sender::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FakeOpenAiSpeech {
            addr,
            shared,
            accept_task,
        }
    }

    /// `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received (any path), in arrival order.
    pub fn requests(&self) -> Vec<SpeechRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Responses the client abandoned by closing its connection before the fake finished them.
    pub fn disconnects(&self) -> usize {
        *self.shared.disconnects.borrow()
    }

    /// Resolves once at least `n` [`Self::disconnects`] happened. Wrap it in a timeout in tests.
    pub async fn wait_for_disconnects(&self, n: usize) {
        let mut watcher = self.shared.disconnects.subscribe();
        // The sender lives in `self.shared`, so it cannot be dropped while we wait.
        let _ = watcher.wait_for(|count| *count >= n).await;
    }
}

impl Drop for FakeOpenAiSpeech {
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
                    connections.spawn(serve_connection(Arc::clone(&shared), socket));
                }
                Err(error) => {
                    tracing::warn!(%error, "fake speech accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, mut socket: TcpStream) {
    let _ = socket.set_nodelay(true);
    let (mut reader, mut writer) = socket.split();
    let mut buffer = Vec::with_capacity(4096);
    let Some(request) = crate::http1::read_request(&mut reader, &mut buffer, REQUEST_MAX).await
    else {
        return;
    };
    let response = route(&shared, request);
    let respond = write_response(&mut writer, response);
    tokio::pin!(respond);
    // While responding, watch the read side: EOF there is the client abandoning the response
    // (a dropped stream), which a holding writer would never notice.
    let client_left = loop {
        tokio::select! {
            written = &mut respond => break written.is_err(),
            read = reader.read_buf(&mut buffer) => match read {
                Ok(0) | Err(_) => break true,
                Ok(_) => {}
            },
        }
    };
    if client_left {
        shared.disconnects.send_modify(|count| *count += 1);
    }
}

fn route(shared: &Shared, request: SpeechRequest) -> SpeechResponse {
    let is_speech = request.method == "POST" && request.path == SPEECH_PATH;
    let problem = if !is_speech {
        Some(SpeechResponse::error(
            404,
            &format!("no route for {} {}", request.method, request.path),
        ))
    } else if !request.body.is_object() {
        Some(SpeechResponse::error(400, "the body is not a JSON object"))
    } else {
        None
    };
    let index = {
        let mut requests = shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests.push(request);
        requests.len() - 1
    };
    problem
        .or_else(|| shared.script.response_for(index).cloned())
        .unwrap_or_else(|| SpeechResponse::error(500, "empty script"))
}

async fn write_response(
    writer: &mut WriteHalf<'_>,
    response: SpeechResponse,
) -> std::io::Result<()> {
    match response {
        SpeechResponse::Status {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                reason_phrase(status),
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            writer.write_all(head.as_bytes()).await?;
            writer.write_all(body.as_bytes()).await?;
            writer.flush().await
        }
        SpeechResponse::Audio(audio) => {
            if !audio.first_byte_delay.is_zero() {
                tokio::time::sleep(audio.first_byte_delay).await;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                audio.content_type
            );
            writer.write_all(head.as_bytes()).await?;
            let mut sent = 0;
            for piece in audio.body.chunks(audio.chunk_bytes) {
                if audio.hold_after_bytes.is_some_and(|limit| sent >= limit) {
                    return std::future::pending().await;
                }
                let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                chunk.extend_from_slice(piece);
                chunk.extend_from_slice(b"\r\n");
                writer.write_all(&chunk).await?;
                writer.flush().await?;
                sent += piece.len();
            }
            if audio.hold_after_bytes.is_some() {
                return std::future::pending().await;
            }
            writer.write_all(b"0\r\n\r\n").await?;
            writer.flush().await
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
