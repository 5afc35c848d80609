//! A fake of Microsoft Edge's read-aloud WebSocket endpoint on 127.0.0.1:0, speaking the real
//! protocol: it checks the handshake query (`TrustedClientToken`, `Sec-MS-GEC`,
//! `Sec-MS-GEC-Version`, `ConnectionId`) and headers, reads `speech.config` and `ssml`, and answers
//! `turn.start`, `audio.metadata`, binary `Path:audio` frames carrying the MP3 bytes it was given,
//! and `turn.end`. Scriptable per connection: refuse the handshake (403 with a `Date` header),
//! delay, close mid-stream, or stop sending and wait for the client to leave.
//!
//! It does not validate the `Sec-MS-GEC` value against a scheme (the client's unit tests do that
//! against a token the real service accepted); it checks its shape and records it. Plain `ws://`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The path Edge serves read-aloud on.
pub const EDGE_PATH: &str = "/consumer/speech/synthesize/readaloud/edge/v1";
/// The extension origin the real service expects.
pub const EDGE_ORIGIN: &str = "chrome-extension://jdiccldimpdaibmpdkjnbmckianbfold";

/// What each connection gets: connection `i` (0-based, in accept order) gets `behaviours[i]`,
/// every later one the last entry.
#[derive(Debug, Clone)]
pub struct EdgeScript {
    behaviours: Vec<EdgeBehaviour>,
}

impl EdgeScript {
    pub fn always(behaviour: EdgeBehaviour) -> EdgeScript {
        EdgeScript {
            behaviours: vec![behaviour],
        }
    }

    /// Panics on an empty list.
    pub fn sequence(behaviours: Vec<EdgeBehaviour>) -> EdgeScript {
        assert!(
            !behaviours.is_empty(),
            "an EdgeScript needs at least one behaviour"
        );
        EdgeScript { behaviours }
    }

    fn behaviour_for(&self, index: usize) -> Option<&EdgeBehaviour> {
        self.behaviours
            .get(index)
            .or_else(|| self.behaviours.last())
    }
}

/// One connection's behaviour.
#[derive(Debug, Clone)]
pub enum EdgeBehaviour {
    /// Accept and speak.
    Speak(EdgeSpeech),
    /// Refuse the handshake with `status`. With `clock_ahead_secs`, the response carries a `Date`
    /// header that far ahead of the fake's clock at the time of the handshake (the real service
    /// sends `Date`, and clients learn its clock from it); `None` sends no `Date`.
    RejectHandshake {
        status: u16,
        clock_ahead_secs: Option<i64>,
    },
}

impl EdgeBehaviour {
    /// Speak these MP3 bytes in the default way.
    pub fn speak(mp3: impl Into<Bytes>) -> EdgeBehaviour {
        EdgeBehaviour::Speak(EdgeSpeech::new(mp3))
    }

    /// 403 with the current time as `Date`, as Edge answers a bad token.
    pub fn forbidden() -> EdgeBehaviour {
        EdgeBehaviour::RejectHandshake {
            status: 403,
            clock_ahead_secs: Some(0),
        }
    }
}

/// How an accepted connection answers.
#[derive(Debug, Clone)]
pub struct EdgeSpeech {
    mp3: Bytes,
    audio_bytes_per_frame: usize,
    delay_before_audio: Duration,
    close_after_audio_bytes: Option<usize>,
    hold_after_audio_bytes: Option<usize>,
}

impl EdgeSpeech {
    /// Audio goes out in 1000-byte binary frames: not a multiple of any MP3 frame size, so MP3
    /// frames are split across WebSocket messages as they are by the real service.
    pub fn new(mp3: impl Into<Bytes>) -> EdgeSpeech {
        EdgeSpeech {
            mp3: mp3.into(),
            audio_bytes_per_frame: 1000,
            delay_before_audio: Duration::ZERO,
            close_after_audio_bytes: None,
            hold_after_audio_bytes: None,
        }
    }

    pub fn with_audio_bytes_per_frame(mut self, bytes: usize) -> EdgeSpeech {
        self.audio_bytes_per_frame = bytes.max(1);
        self
    }

    /// Wait (tokio time) after `turn.start` before the first audio frame.
    pub fn with_delay_before_audio(mut self, delay: Duration) -> EdgeSpeech {
        self.delay_before_audio = delay;
        self
    }

    /// After at least `bytes` of audio, send a Close frame (1011) instead of `turn.end`.
    pub fn closing_after(mut self, bytes: usize) -> EdgeSpeech {
        self.close_after_audio_bytes = Some(bytes);
        self
    }

    /// After at least `bytes` of audio, send nothing more and wait until the client goes away.
    pub fn holding_after(mut self, bytes: usize) -> EdgeSpeech {
        self.hold_after_audio_bytes = Some(bytes);
        self
    }
}

/// One handshake as the fake saw it (accepted or not).
#[derive(Debug, Clone)]
pub struct EdgeHandshake {
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    pub status: u16,
}

/// One synthesis request the fake received over an accepted connection.
#[derive(Debug, Clone)]
pub struct EdgeRequest {
    pub handshake: EdgeHandshake,
    /// The whole `speech.config` message (headers and JSON).
    pub speech_config: String,
    pub output_format: String,
    /// `X-RequestId` of the `ssml` message.
    pub request_id: String,
    /// The SSML document (the body of the `ssml` message).
    pub ssml: String,
}

/// A running fake; stops (closing every connection) when dropped.
pub struct FakeEdge {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

struct Shared {
    script: EdgeScript,
    log: Mutex<Log>,
    /// Written by connection tasks, watched by `wait_for_disconnects`.
    disconnects: watch::Sender<usize>,
}

#[derive(Default)]
struct Log {
    connections: usize,
    handshakes: Vec<EdgeHandshake>,
    requests: Vec<EdgeRequest>,
    violations: Vec<String>,
}

impl Shared {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn violation(&self, what: String) {
        tracing::warn!(what, "fake edge: protocol violation");
        self.log().violations.push(what);
    }

    fn client_disconnected(&self) {
        self.disconnects.send_modify(|n| *n += 1);
    }
}

impl FakeEdge {
    pub async fn start(script: EdgeScript) -> FakeEdge {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding 127.0.0.1:0 cannot fail on a test machine");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            script,
            log: Mutex::new(Log::default()),
            disconnects: watch::Sender::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FakeEdge {
            addr,
            shared,
            accept_task,
        }
    }

    /// The `ws://` endpoint to configure the client with (no query; the client adds it).
    pub fn endpoint(&self) -> String {
        format!("ws://{}{EDGE_PATH}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every handshake, accepted or refused, in order.
    pub fn handshakes(&self) -> Vec<EdgeHandshake> {
        self.shared.log().handshakes.clone()
    }

    /// Every complete request (`speech.config` + `ssml`) received, in order.
    pub fn requests(&self) -> Vec<EdgeRequest> {
        self.shared.log().requests.clone()
    }

    /// Everything the client did that the real service would not accept. Tests assert it is empty.
    pub fn violations(&self) -> Vec<String> {
        self.shared.log().violations.clone()
    }

    /// Connections the client closed or dropped before `turn.end` (mid-audio or while the fake
    /// held the stream): what a client that stops on drop produces.
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

impl Drop for FakeEdge {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let index = {
                    let mut log = shared.log();
                    log.connections += 1;
                    log.connections - 1
                };
                connections.spawn(serve_connection(stream, index, Arc::clone(&shared)));
            }
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, index: usize, shared: Arc<Shared>) {
    let Some(behaviour) = shared.script.behaviour_for(index).cloned() else {
        return;
    };
    let check_shared = Arc::clone(&shared);
    let reject = match &behaviour {
        EdgeBehaviour::RejectHandshake {
            status,
            clock_ahead_secs,
        } => Some((*status, *clock_ahead_secs)),
        EdgeBehaviour::Speak(_) => None,
    };
    // The signature is tungstenite's `Callback`; its error type is an `http::Response`.
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request,
                         response: Response|
          -> Result<Response, ErrorResponse> {
        let mut handshake = record_handshake(request);
        let problems = handshake_problems(&handshake);
        let refusal = if !problems.is_empty() {
            for problem in problems {
                check_shared.violation(problem);
            }
            Some((400, None))
        } else {
            reject
        };
        match refusal {
            None => {
                check_shared.log().handshakes.push(handshake);
                Ok(response)
            }
            Some((status, clock_ahead_secs)) => {
                handshake.status = status;
                check_shared.log().handshakes.push(handshake);
                let mut error = ErrorResponse::new(Some("Invalid Request".to_owned()));
                *error.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                let server_time = clock_ahead_secs.map(|ahead| {
                    let offset = Duration::from_secs(ahead.unsigned_abs());
                    if ahead >= 0 {
                        SystemTime::now() + offset
                    } else {
                        SystemTime::now() - offset
                    }
                });
                if let Some(date) =
                    server_time.and_then(|t| HeaderValue::from_str(&http_date(t)).ok())
                {
                    error.headers_mut().insert("date", date);
                }
                Err(error)
            }
        }
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return; // refused (as scripted) or a broken handshake
    };
    let EdgeBehaviour::Speak(speech) = behaviour else {
        return;
    };
    let handshake = shared.log().handshakes.last().cloned();
    let Some(handshake) = handshake else { return };

    let Some(request) = read_request(&mut socket, handshake, &shared).await else {
        return;
    };
    let request_id = request.request_id.clone();
    shared.log().requests.push(request);

    match speak(&mut socket, &request_id, &speech).await {
        // The real service closes after turn.end too.
        Ok(SpeakOutcome::Finished) => {
            let _ = socket.close(None).await;
        }
        Ok(SpeakOutcome::Holding) => {
            wait_for_client_to_leave(&mut socket).await;
            shared.client_disconnected();
        }
        Ok(SpeakOutcome::ClosedByUs) => {}
        Err(ClientGone) => shared.client_disconnected(),
    }
}

fn record_handshake(request: &Request) -> EdgeHandshake {
    let query = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.to_owned(), percent_decode(value))
        })
        .collect();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    EdgeHandshake {
        path: request.uri().path().to_owned(),
        query,
        headers,
        status: 101,
    }
}

/// What the real service checks at the handshake (or what clients that work send).
fn handshake_problems(handshake: &EdgeHandshake) -> Vec<String> {
    let mut problems = Vec::new();
    if handshake.path != EDGE_PATH {
        problems.push(format!(
            "handshake path {:?} is not {EDGE_PATH}",
            handshake.path
        ));
    }
    let param = |name: &str| handshake.query.get(name).map(String::as_str).unwrap_or("");
    if param("TrustedClientToken").is_empty() {
        problems.push("missing TrustedClientToken".into());
    }
    let gec = param("Sec-MS-GEC");
    if gec.len() != 64
        || !gec
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        problems.push(format!(
            "Sec-MS-GEC {gec:?} is not 64 upper-case hex digits"
        ));
    }
    if !param("Sec-MS-GEC-Version").starts_with("1-") {
        problems.push(format!(
            "Sec-MS-GEC-Version {:?} does not start with 1-",
            param("Sec-MS-GEC-Version")
        ));
    }
    if !is_lower_hex_id(param("ConnectionId")) {
        problems.push(format!(
            "ConnectionId {:?} is not a 32-digit hex id",
            param("ConnectionId")
        ));
    }
    if handshake.headers.get("origin").map(String::as_str) != Some(EDGE_ORIGIN) {
        problems.push(format!(
            "Origin {:?} is not the read-aloud extension",
            handshake.headers.get("origin")
        ));
    }
    if handshake
        .headers
        .get("user-agent")
        .is_none_or(|ua| !ua.contains("Edg/"))
    {
        problems.push("User-Agent does not claim to be Edge".into());
    }
    problems
}

fn is_lower_hex_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads `speech.config` then `ssml`; records violations and returns `None` on any.
async fn read_request(
    socket: &mut WebSocketStream<TcpStream>,
    handshake: EdgeHandshake,
    shared: &Shared,
) -> Option<EdgeRequest> {
    let config = next_text(socket).await?;
    let (config_headers, config_body) = split_message(&config);
    let mut problems = Vec::new();
    if config_headers.get("Path").map(String::as_str) != Some("speech.config") {
        problems.push(format!(
            "first message is not Path:speech.config: {config:?}"
        ));
    }
    if !config_headers.contains_key("X-Timestamp") {
        problems.push("speech.config without X-Timestamp".into());
    }
    if config_headers.get("Content-Type").map(String::as_str)
        != Some("application/json; charset=utf-8")
    {
        problems.push("speech.config without Content-Type:application/json; charset=utf-8".into());
    }
    let output_format = serde_json::from_str::<serde_json::Value>(config_body.trim())
        .ok()
        .and_then(|json| {
            json["context"]["synthesis"]["audio"]["outputFormat"]
                .as_str()
                .map(str::to_owned)
        });
    if output_format.is_none() {
        problems.push(format!(
            "speech.config body has no context.synthesis.audio.outputFormat: {config_body:?}"
        ));
    }

    let ssml_message = next_text(socket).await?;
    let (ssml_headers, ssml) = split_message(&ssml_message);
    if ssml_headers.get("Path").map(String::as_str) != Some("ssml") {
        problems.push(format!("second message is not Path:ssml: {ssml_message:?}"));
    }
    if ssml_headers.get("Content-Type").map(String::as_str) != Some("application/ssml+xml") {
        problems.push("ssml without Content-Type:application/ssml+xml".into());
    }
    if !ssml_headers.contains_key("X-Timestamp") {
        problems.push("ssml without X-Timestamp".into());
    }
    let request_id = ssml_headers.get("X-RequestId").cloned().unwrap_or_default();
    if !is_lower_hex_id(&request_id) {
        problems.push(format!(
            "X-RequestId {request_id:?} is not a 32-digit hex id"
        ));
    }
    if !ssml.starts_with("<speak") || !ssml.ends_with("</speak>") {
        problems.push(format!("ssml body is not a <speak> document: {ssml:?}"));
    }
    if ssml_message.len() > 65_536 {
        problems.push(format!(
            "ssml message of {} bytes exceeds 64 KiB",
            ssml_message.len()
        ));
    }
    if !problems.is_empty() {
        for problem in problems {
            shared.violation(problem);
        }
        let _ = socket
            .close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "bad request".into(),
            }))
            .await;
        return None;
    }
    Some(EdgeRequest {
        handshake,
        speech_config: config,
        output_format: output_format.unwrap_or_default(),
        request_id,
        ssml: ssml.to_owned(),
    })
}

async fn next_text(socket: &mut WebSocketStream<TcpStream>) -> Option<String> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return Some(text.as_str().to_owned()),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Binary(_) | Message::Close(_)) | Err(_) => return None,
        }
    }
}

/// `Name:value\r\n…\r\n\r\nbody` → (headers, body).
fn split_message(message: &str) -> (BTreeMap<String, String>, &str) {
    let (head, body) = message.split_once("\r\n\r\n").unwrap_or((message, ""));
    let headers = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    (headers, body)
}

enum SpeakOutcome {
    Finished,
    Holding,
    ClosedByUs,
}

/// The client went away while the fake was sending.
struct ClientGone;

async fn speak(
    socket: &mut WebSocketStream<TcpStream>,
    request_id: &str,
    speech: &EdgeSpeech,
) -> Result<SpeakOutcome, ClientGone> {
    let json_head = |path: &str| {
        format!(
            "X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\nPath:{path}\r\n\r\n"
        )
    };
    send(
        socket,
        Message::text(format!(
            "{}{{\"context\":{{\"serviceTag\":\"fake-edge\"}}}}",
            json_head("turn.start")
        )),
    )
    .await?;
    send(
        socket,
        Message::text(format!(
            "{}{{\"Metadata\":[{{\"Type\":\"SessionEnd\",\"Data\":{{}}}}]}}",
            json_head("audio.metadata")
        )),
    )
    .await?;
    if !speech.delay_before_audio.is_zero() {
        tokio::time::sleep(speech.delay_before_audio).await;
    }
    let mut sent = 0;
    for piece in speech.mp3.chunks(speech.audio_bytes_per_frame) {
        if speech
            .hold_after_audio_bytes
            .is_some_and(|limit| sent >= limit)
        {
            return Ok(SpeakOutcome::Holding);
        }
        if speech
            .close_after_audio_bytes
            .is_some_and(|limit| sent >= limit)
        {
            let close = CloseFrame {
                code: CloseCode::Error,
                reason: Utf8Bytes::from_static("scripted close"),
            };
            let _ = socket.close(Some(close)).await;
            return Ok(SpeakOutcome::ClosedByUs);
        }
        send(
            socket,
            Message::Binary(audio_frame(request_id, Some("audio/mpeg"), piece)),
        )
        .await?;
        sent += piece.len();
    }
    if speech.hold_after_audio_bytes.is_some() {
        return Ok(SpeakOutcome::Holding);
    }
    // Edge ends the audio with a header-only frame, then turn.end.
    send(socket, Message::Binary(audio_frame(request_id, None, &[]))).await?;
    send(
        socket,
        Message::text(format!(
            "X-RequestId:{request_id}\r\nPath:turn.end\r\n\r\n{{}}"
        )),
    )
    .await?;
    Ok(SpeakOutcome::Finished)
}

async fn send(socket: &mut WebSocketStream<TcpStream>, message: Message) -> Result<(), ClientGone> {
    socket.send(message).await.map_err(|_| ClientGone)
}

fn audio_frame(request_id: &str, content_type: Option<&str>, audio: &[u8]) -> Bytes {
    let mut head = format!("X-RequestId:{request_id}\r\n");
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type:{content_type}\r\n"));
    }
    head.push_str("Path:audio\r\n");
    let head_len = u16::try_from(head.len()).expect("the audio header is a few dozen bytes");
    let mut frame = Vec::with_capacity(2 + head.len() + audio.len());
    frame.extend_from_slice(&head_len.to_be_bytes());
    frame.extend_from_slice(head.as_bytes());
    frame.extend_from_slice(audio);
    Bytes::from(frame)
}

/// Reads (and ignores) until the client closes or drops the connection.
async fn wait_for_client_to_leave(socket: &mut WebSocketStream<TcpStream>) {
    while let Some(Ok(message)) = socket.next().await {
        if matches!(message, Message::Close(_)) {
            return;
        }
    }
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// IMF-fixdate (`Mon, 04 Nov 2024 15:20:12 GMT`), the form of the HTTP `Date` header.
fn http_date(time: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let second_of_day = secs % 86_400;
    // Days → civil date (H. Hinnant's algorithm), written out independently of the client's.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_match_python_formatdate() {
        // From Python's email.utils.formatdate(t, usegmt=True), an independent formatter.
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(1_730_733_612)),
            "Mon, 04 Nov 2024 15:20:12 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }

    #[test]
    fn audio_frames_carry_a_big_endian_header_length() {
        let frame = audio_frame("abc", Some("audio/mpeg"), b"MP3");
        let head_len = usize::from(u16::from_be_bytes([frame[0], frame[1]]));
        assert_eq!(
            &frame[2..2 + head_len],
            b"X-RequestId:abc\r\nContent-Type:audio/mpeg\r\nPath:audio\r\n",
            "headers"
        );
        assert_eq!(&frame[2 + head_len..], b"MP3", "audio follows the headers");
    }
}
