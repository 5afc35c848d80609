//! A fake OpenAI-compatible `POST /v1/audio/transcriptions` server on 127.0.0.1:0: reads the real
//! `multipart/form-data` upload (fields and the WAV file), records it, and answers from a script:
//! a JSON transcript, one computed from the WAV it received, an error status (with headers such
//! as `Retry-After`), garbage, or nothing at all (a hang).
//!
//! Hand-rolled HTTP/1.1, one request per connection (`Connection: close`). Not a general server:
//! no TLS, no chunked request bodies.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The route the client must call; its base URL is `http://…/v1`.
pub const TRANSCRIPTIONS_PATH: &str = "/v1/audio/transcriptions";
/// Largest request the fake reads.
const REQUEST_MAX: usize = 64 * 1024 * 1024;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum TranscriptionResponse {
    /// `200` with this JSON body.
    Json(serde_json::Value),
    /// `200` with a transcript computed from the upload: text `"heard <ms> ms at <rate> Hz"`
    /// (from the WAV's header and data size), `language` = the `language` field or `"en"`, one
    /// segment with `avg_logprob` −0.25 — in `verbose_json` shape if asked for, else `{"text"}`.
    Describe,
    /// Any status with a body and extra headers.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// `200` with a body that is not JSON.
    Garbage,
    /// Read the request, then never answer (until the client goes away).
    Hang,
}

impl TranscriptionResponse {
    /// An error in OpenAI's JSON shape.
    pub fn error(status: u16, message: &str) -> Self {
        let body = json!({"error": {"message": message, "type": "invalid_request_error"}});
        Self::Status {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// `429` with `Retry-After: <secs>`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::Status {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            body: json!({"error": {"message": "Rate limit reached"}}).to_string(),
        }
    }
}

/// One `multipart/form-data` part as received.
#[derive(Debug, Clone)]
pub struct FormPart {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct TranscriptionRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The form's parts; empty if the body was not multipart.
    pub parts: Vec<FormPart>,
}

impl TranscriptionRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn part(&self, name: &str) -> Option<&FormPart> {
        self.parts.iter().find(|part| part.name == name)
    }

    /// A text field's value.
    pub fn field(&self, name: &str) -> Option<String> {
        self.part(name)
            .map(|part| String::from_utf8_lossy(&part.data).into_owned())
    }
}

/// The WAV facts [`TranscriptionResponse::Describe`] reads: rate, channels, bits, data bytes.
pub fn wav_facts(wav: &[u8]) -> Option<(u32, u16, u16, usize)> {
    if wav.len() < 12 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= wav.len() {
        let id = &wav[at..at + 4];
        let size = u32::from_le_bytes(wav[at + 4..at + 8].try_into().ok()?) as usize;
        let body = wav.get(at + 8..(at + 8 + size).min(wav.len()))?;
        if id == b"fmt " && body.len() >= 16 {
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            format = Some((rate, channels, bits));
        }
        if id == b"data" {
            let (rate, channels, bits) = format?;
            return Some((rate, channels, bits, body.len()));
        }
        at += 8 + size + (size & 1);
    }
    None
}

struct Shared {
    responses: Vec<TranscriptionResponse>,
    /// Std mutex, only held to push or clone (never across an await).
    requests: Mutex<Vec<TranscriptionRequest>>,
}

/// A running fake. Dropping it stops the server and every open connection.
pub struct FakeOpenAiTranscription {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl FakeOpenAiTranscription {
    /// Request `i` (0-based) gets `responses[i]`, later ones the last entry. Panics on an empty
    /// list or when loopback cannot be bound.
    pub async fn start(responses: Vec<TranscriptionResponse>) -> Self {
        assert!(
            !responses.is_empty(),
            "the fake needs at least one response"
        );
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding 127.0.0.1:0 for the fake transcription server");
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let shared = Arc::new(Shared {
            responses,
            requests: Mutex::new(Vec::new()),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Self {
            addr,
            shared,
            accept_task,
        }
    }

    /// `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<TranscriptionRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FakeOpenAiTranscription {
    fn drop(&mut self) {
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
                    tracing::warn!(%error, "fake transcription accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, mut socket: TcpStream) {
    let _ = socket.set_nodelay(true);
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let index = {
        let mut requests = shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests.push(request.clone());
        requests.len() - 1
    };
    let response = if request.path != TRANSCRIPTIONS_PATH || request.method != "POST" {
        TranscriptionResponse::error(404, "no such route")
    } else {
        shared
            .responses
            .get(index)
            .or_else(|| shared.responses.last())
            .cloned()
            .unwrap_or(TranscriptionResponse::Hang)
    };
    let (status, headers, body) = match response {
        TranscriptionResponse::Json(value) => (200, Vec::new(), value.to_string()),
        TranscriptionResponse::Describe => (200, Vec::new(), describe(&request).to_string()),
        TranscriptionResponse::Status {
            status,
            headers,
            body,
        } => (status, headers, body),
        TranscriptionResponse::Garbage => (200, Vec::new(), "<html>502 proxy says hi".into()),
        TranscriptionResponse::Hang => {
            // Wait for the client to close; anything it sends is ignored.
            let mut sink = [0u8; 1024];
            while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn describe(request: &TranscriptionRequest) -> serde_json::Value {
    let facts = request.part("file").and_then(|file| wav_facts(&file.data));
    let text = match facts {
        Some((rate, channels, bits, data)) if rate > 0 && channels > 0 && bits >= 8 => {
            let frames = data / (usize::from(channels) * usize::from(bits / 8));
            format!(
                "heard {} ms at {rate} Hz",
                frames as u64 * 1000 / u64::from(rate)
            )
        }
        _ => "heard no wav".to_owned(),
    };
    let language = request.field("language").unwrap_or_else(|| "en".into());
    if request.field("response_format").as_deref() == Some("verbose_json") {
        json!({"task": "transcribe", "language": language, "duration": 1.0, "text": text,
               "segments": [{"id": 0, "start": 0.0, "end": 1.0, "text": text, "avg_logprob": -0.25}]})
    } else {
        json!({ "text": text })
    }
}

/// Head, then a `content-length` body, parsed as multipart when it says so.
async fn read_request(socket: &mut TcpStream) -> Option<TranscriptionRequest> {
    let mut buffer = Vec::with_capacity(64 * 1024);
    let head_len = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        match socket.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_len]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let content_length: usize = header("content-length")?.parse().ok()?;
    if content_length > REQUEST_MAX {
        return None;
    }
    while buffer.len() < head_len + content_length {
        match socket.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    let body = &buffer[head_len..head_len + content_length];
    let parts = header("content-type")
        .and_then(|ct| {
            ct.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix("boundary=")
                    .map(|b| b.trim_matches('"').to_owned())
            })
        })
        .map(|boundary| parse_multipart(body, &boundary))
        .unwrap_or_default();
    Some(TranscriptionRequest {
        method,
        path,
        headers,
        parts,
    })
}

fn parse_multipart(body: &[u8], boundary: &str) -> Vec<FormPart> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = body;
    // Skip the preamble up to the first delimiter.
    let Some(start) = find(rest, &delimiter) else {
        return parts;
    };
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        let Some(after_crlf) = rest.strip_prefix(b"\r\n") else {
            break;
        };
        let Some(head_end) = find(after_crlf, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&after_crlf[..head_end]).into_owned();
        let content = &after_crlf[head_end + 4..];
        let mut end_marker = b"\r\n".to_vec();
        end_marker.extend_from_slice(&delimiter);
        let Some(end) = find(content, &end_marker) else {
            break;
        };
        let mut name = String::new();
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').map(str::trim) {
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = v.trim_matches('"').to_owned();
                    } else if let Some(v) = attr.strip_prefix("filename=") {
                        filename = Some(v.trim_matches('"').to_owned());
                    }
                }
            } else if lower.starts_with("content-type:") {
                content_type = line.split_once(':').map(|(_, v)| v.trim().to_owned());
            }
        }
        parts.push(FormPart {
            name,
            filename,
            content_type,
            data: content[..end].to_vec(),
        });
        rest = &content[end + end_marker.len()..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
