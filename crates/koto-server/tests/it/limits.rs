//! Resource limits over real sockets: bodies (a declared 10 MB refused before it is sent, a
//! chunked one cut at the limit, a trickled one timed out on every body route), the global
//! input rate beside the session's, `MAX_SESSIONS`, and the WebSocket caps (`MAX_LIVE_CLIENTS`,
//! `MAX_SOCKETS`: closed with 1013 and the reason).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::{TOKEN, TestServer, expect_error, serve};

/// Ten megabytes, the body every route must refuse without holding it.
const TEN_MB: usize = 10_000_000;

fn addr(app: &TestServer) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads an HTTP/1.1 answer until its JSON body is complete enough to hold `until`, the peer
/// closes, or 30 s pass.
async fn read_answer(reader: &mut (impl AsyncReadExt + Unpin), until: &str) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while !String::from_utf8_lossy(&answer).contains(until) {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends `method path` declaring a 10 MB body but only its first 64 KiB, and returns the answer:
/// a route that waited for the whole body would never answer.
async fn declare_ten_mb(app: &TestServer, method: &str, path: &str, content_type: &str) -> String {
    let addr = addr(app);
    let (mut reader, mut writer) = TcpStream::connect(&addr).await.unwrap().into_split();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {TEN_MB}\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before reading any of it.
    let _ = writer.write_all(&vec![b'a'; 64 * 1024]).await;
    let answer = read_answer(&mut reader, "\"}}").await;
    drop(writer);
    answer
}

#[tokio::test]
async fn a_declared_ten_mb_body_is_refused_with_413_on_every_route_before_it_is_sent() {
    let app = serve(&[("ASR_PROVIDER", "mock")]).await;
    for (method, path, content_type) in [
        ("POST", "/chat/stream", "application/json"),
        ("POST", "/control/stop", "application/json"),
        ("PUT", "/settings", "application/json"),
        ("POST", "/chat/messages", "application/json"),
        ("POST", "/tts/speak", "application/json"),
        ("PUT", "/personas/loud", "application/json"),
        ("POST", "/settings/test/llm", "application/json"),
        // Upload routes take ASR_MAX_UPLOAD_BYTES (10 MiB) plus a form: 10 MB would fit, so
        // their refusal is shown below with a smaller limit.
        ("GET", "/health", "application/json"),
        ("GET", "/sessions", "application/json"),
        // The original front end's socket: its upgrade request is refused as well.
        ("GET", "/ws/input", "application/octet-stream"),
        ("POST", "/no/such/route", "application/json"),
    ] {
        let answer = declare_ten_mb(&app, method, path, content_type).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{method} {path}: 413 before the body is sent: {answer}"
        );
        assert!(
            answer.contains(r#""code":"payload_too_large""#) && answer.contains("MAX_BODY_BYTES"),
            "{method} {path}: the documented error, naming the key: {answer}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_upload_over_its_own_limit_is_refused_before_it_is_sent() {
    let app = serve(&[
        ("ASR_PROVIDER", "mock"),
        ("ASR_MAX_UPLOAD_BYTES", "1048576"),
    ])
    .await;
    for path in [
        "/chat/audio?sessionId=up",
        "/chat/audio/stream?sessionId=up",
    ] {
        let answer = declare_ten_mb(&app, "POST", path, "audio/wav").await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(
            answer.contains(r#""code":"payload_too_large""#),
            "{path}: {answer}"
        );
    }
    // Under the upload limit but over MAX_BODY_BYTES: an upload route takes it (the mock ASR
    // hears a description of it), where a JSON route would not.
    let wav = crate::audio::WAV.to_vec();
    assert!(wav.len() > 65_536, "bigger than MAX_BODY_BYTES' default");
    let heard = app
        .post("/chat/audio?sessionId=up")
        .header("content-type", "audio/wav")
        .body(wav)
        .send()
        .await
        .unwrap();
    assert_eq!(heard.status(), 200, "an upload within its limit is taken");
    app.shutdown().await;
}

#[tokio::test]
async fn a_chunked_ten_mb_body_is_cut_at_the_limit() {
    let app = serve(&[]).await;
    let addr = addr(&app);
    let (mut reader, mut writer) = TcpStream::connect(&addr).await.unwrap().into_split();
    let head = format!(
        "POST /chat/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    // No length to refuse up front: the handler's read stops at MAX_BODY_BYTES (64 KiB).
    let sender = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < TEN_MB {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if writer.write_all(&framed).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let answer = read_answer(&mut reader, "\"}}").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    drop(reader);
    let sent = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the sender stops once the server stops reading")
        .unwrap();
    assert!(
        sent < TEN_MB,
        "the server stopped reading long before 10 MB ({sent} bytes were written)"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_trickled_body_gets_408_on_every_body_route() {
    let app = serve(&[("BODY_READ_TIMEOUT", "0.3"), ("ASR_PROVIDER", "mock")]).await;
    let addr = addr(&app);
    let routes = [
        ("POST", "/chat/stream", "application/json"),
        ("POST", "/control/stop", "application/json"),
        ("PUT", "/settings", "application/json"),
        ("POST", "/chat/messages", "application/json"),
        ("POST", "/tts/speak", "application/json"),
        ("PUT", "/personas/slow", "application/json"),
        ("POST", "/settings/test/llm", "application/json"),
        ("POST", "/voice/ptt", "application/json"),
        ("POST", "/voice/mode", "application/json"),
        ("POST", "/chat/audio?sessionId=slow", "audio/wav"),
        ("POST", "/chat/audio/stream?sessionId=slow", "audio/wav"),
    ];
    let trickles = routes.map(|(method, path, content_type)| {
        let addr = addr.clone();
        tokio::spawn(async move {
            let (mut reader, mut writer) = TcpStream::connect(&addr).await.unwrap().into_split();
            // 400 bytes at one byte per 50 ms: 20 s, far past the 0.3 s deadline.
            let length = 400;
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
            );
            writer.write_all(head.as_bytes()).await.unwrap();
            let trickle = tokio::spawn(async move {
                for _ in 0..length {
                    if writer.write_all(b" ").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            let answer = read_answer(&mut reader, "\"}}").await;
            let still_trickling = !trickle.is_finished();
            trickle.abort();
            (method, path, answer, still_trickling)
        })
    });
    for trickle in trickles {
        let (method, path, answer, still_trickling) = trickle.await.unwrap();
        assert!(
            still_trickling,
            "{method} {path}: answered while the body was still trickling"
        );
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains(r#""code":"request_timeout""#),
            "{method} {path}: {answer}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn two_hundred_new_sessions_at_once_meet_the_global_limit() {
    let app = serve(&[
        ("INPUT_GLOBAL_BURST", "5"),
        ("INPUT_GLOBAL_RATE_PER_SEC", "0.001"),
        ("MAX_SESSIONS", "1000"),
    ])
    .await;
    let mut accepted = 0;
    let mut refused = Vec::new();
    for n in 0..200 {
        let answer = app
            .chat(json!({"sessionId": format!("viewer-{n}"), "content": "hi"}))
            .await;
        if answer.status() == 200 {
            accepted += 1;
        } else {
            let retry_after = answer
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_owned());
            refused.push((
                answer.status().as_u16(),
                retry_after,
                answer.json::<Value>().await.unwrap(),
            ));
        }
    }
    assert_eq!(
        accepted, 5,
        "200 sessions with a fresh bucket each: only INPUT_GLOBAL_BURST pass"
    );
    assert_eq!(refused.len(), 195);
    for (status, retry_after, body) in &refused {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("INPUT_GLOBAL_RATE_PER_SEC")),
            "the refusal names the global limit: {body}"
        );
        assert!(retry_after.is_some(), "Retry-After says when: {body}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_session_past_max_sessions_is_refused_until_one_ends() {
    // Replies that take minutes: the turns stay in flight until their responses are dropped.
    let app = serve(&[("MAX_SESSIONS", "2"), ("MOCK_LLM_TOKEN_MS", "5000")]).await;
    let a = app.chat(json!({"sessionId": "a", "content": "hi"})).await;
    let b = app.chat(json!({"sessionId": "b", "content": "hi"})).await;
    assert_eq!(
        (a.status().as_u16(), b.status().as_u16()),
        (200, 200),
        "two sessions fit"
    );
    let c = app.chat(json!({"sessionId": "c", "content": "hi"})).await;
    assert_eq!(c.status(), 429, "a third session is over MAX_SESSIONS");
    let body: Value = c.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("MAX_SESSIONS = 2")),
        "{body}"
    );
    let a_again = app.chat(json!({"sessionId": "a", "content": "and?"})).await;
    assert_eq!(
        a_again.status(),
        200,
        "a session already answering may queue its next input"
    );
    // A dropped response cancels its turn; once the turns have ended, a new session fits.
    drop((a, a_again));
    let mut admitted = None;
    for _ in 0..300 {
        let answer = app.chat(json!({"sessionId": "c", "content": "hi"})).await;
        if answer.status() == 200 {
            admitted = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        admitted.is_some(),
        "a session fits again within 30 s of one ending"
    );
    drop((b, admitted));
    app.shutdown().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestServer, path_and_query: &str) -> Socket {
    let url = format!("{}{path_and_query}", app.base.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade")
        .0
}

/// The close frame's code and reason, skipping other frames; `None` if the socket ends without
/// one. Waits up to 10 s.
async fn close_frame(socket: &mut Socket) -> Option<(u16, String)> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the server answers within 10 s");
        match next {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}

async fn clients_connected(app: &TestServer) -> u64 {
    let health = app
        .client
        .get(format!("{}/health?token={TOKEN}", app.base))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    health["relay"]["clientsConnected"].as_u64().unwrap_or(0)
}

/// Waits (up to 30 s) until the relay counts `n` live clients.
async fn until_clients(app: &TestServer, n: u64) -> bool {
    for _ in 0..300 {
        if clients_connected(app).await == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_live_client_past_max_live_clients_is_closed_with_1013() {
    let app = serve(&[("MAX_LIVE_CLIENTS", "2")]).await;
    let live = format!("/ws/live?token={TOKEN}");
    // The relay also counts in-process subscribers (local playback): only sockets count here.
    let base = clients_connected(&app).await;
    let first = connect(&app, &live).await;
    let _second = connect(&app, &live).await;
    assert!(until_clients(&app, base + 2).await, "two clients are in");
    let mut third = connect(&app, &live).await;
    let (code, reason) = close_frame(&mut third).await.expect("a close frame");
    assert_eq!(code, 1013, "Try Again Later");
    assert!(
        reason.contains("MAX_LIVE_CLIENTS = 2"),
        "the reason names the key: {reason}"
    );
    assert_eq!(
        clients_connected(&app).await,
        base + 2,
        "the refused one never joined"
    );

    drop(first);
    assert!(
        until_clients(&app, base + 1).await,
        "a closed client leaves"
    );
    // Its place is free once its task has ended: a new client gets in (and stays).
    let mut admitted = None;
    for _ in 0..100 {
        let mut socket = connect(&app, &live).await;
        match tokio::time::timeout(Duration::from_millis(300), socket.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => {
                admitted = Some(socket);
                break;
            }
        }
    }
    assert!(admitted.is_some(), "a place is free again");
    assert!(
        until_clients(&app, base + 2).await,
        "the new client is counted"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_original_front_ends_sockets_count_toward_max_sockets() {
    let app = serve(&[("MAX_SOCKETS", "1")]).await;
    let mut input = connect(&app, &format!("/ws/input?token={TOKEN}")).await;
    let assigned = tokio::time::timeout(Duration::from_secs(10), input.next())
        .await
        .expect("a first frame")
        .expect("open")
        .expect("a frame");
    assert!(
        assigned.to_text().unwrap().contains("task_id_assigned"),
        "the one allowed socket works: {assigned:?}"
    );
    let mut output = connect(
        &app,
        &format!("/ws/output/3f0e4b1c-93a4-4f59-9d1e-2c1f9f0f5b6e?token={TOKEN}"),
    )
    .await;
    let (code, reason) = close_frame(&mut output).await.expect("a close frame");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("MAX_SOCKETS = 1"), "{reason}");
    let mut chat = connect(&app, &format!("/ws/chat?token={TOKEN}")).await;
    assert_eq!(
        close_frame(&mut chat).await.map(|(code, _)| code),
        Some(1013),
        "/ws/chat shares the limit"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_oversized_json_body_without_a_length_header_is_still_413() {
    // reqwest sends a streamed body chunked: the guard sees no length, the read stops at 64 KiB.
    let app = serve(&[]).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b' '; 32 * 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let answer = app
        .post("/control/stop")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    expect_error(answer, 413, "payload_too_large").await;
    app.shutdown().await;
}

#[tokio::test]
async fn trickled_headers_are_cut_off_at_the_read_timeout() {
    let app = serve(&[("BODY_READ_TIMEOUT", "0.3")]).await;
    let addr = addr(&app);
    let (mut reader, mut writer) = TcpStream::connect(&addr).await.unwrap().into_split();
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}\r\n",
        "a".repeat(200)
    );
    // One byte per 50 ms: the headers would take over 12 s, far past the 0.3 s deadline.
    let trickle = tokio::spawn(async move {
        for byte in head.into_bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server closed the connection within 10 s"
    );
    assert!(
        !trickle.is_finished(),
        "closed while the headers were still trickling"
    );
    trickle.abort();
    let health = app.health().await;
    assert_eq!(health["status"], "ok", "and serves everyone else as before");
    app.shutdown().await;
}
