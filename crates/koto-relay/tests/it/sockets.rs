//! The socket drivers: over channel-backed fake sockets (paused time) and over real loopback
//! WebSockets (tokio-tungstenite on 127.0.0.1:0, adapted the way the server adapts axum).

use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use koto_relay::{
    ClientFilter, ReadError, Relay, RelayConfig, WsFrame, close_code, decode_binary_chunk,
    run_ingest_socket, run_live_socket,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

use crate::support::{chunk, end, sid};

/// The test's end of a fake WebSocket.
struct FakePeer {
    to_driver: mpsc::Sender<Result<WsFrame, ReadError>>,
    from_driver: mpsc::Receiver<WsFrame>,
}

type DriverStream = std::pin::Pin<Box<dyn Stream<Item = Result<WsFrame, ReadError>> + Send>>;

fn fake_socket(capacity: usize) -> (FakePeer, PollSender<WsFrame>, DriverStream) {
    let (to_driver, mut driver_rx) = mpsc::channel(64);
    let (driver_tx, from_driver) = mpsc::channel(capacity);
    let stream = futures_util::stream::poll_fn(move |cx| driver_rx.poll_recv(cx));
    (
        FakePeer {
            to_driver,
            from_driver,
        },
        PollSender::new(driver_tx),
        Box::pin(stream),
    )
}

impl FakePeer {
    async fn send_text(&self, text: impl Into<String>) {
        self.to_driver
            .send(Ok(WsFrame::Text(text.into())))
            .await
            .expect("driver is reading");
    }

    /// What the adapter reports when its library refuses a message.
    async fn fail_read(&self, error: ReadError) {
        self.to_driver
            .send(Err(error))
            .await
            .expect("driver is reading");
    }

    async fn send_json(&self, value: &impl serde::Serialize) {
        self.send_text(serde_json::to_string(value).expect("serialisable"))
            .await;
    }

    /// The next frame that is not a heartbeat ping.
    async fn next(&mut self) -> WsFrame {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.from_driver.recv())
                .await
                .expect("a frame within 10 s")
                .expect("driver still open");
            if !matches!(frame, WsFrame::Ping(_)) {
                return frame;
            }
        }
    }

    async fn next_json(&mut self) -> Value {
        match self.next().await {
            WsFrame::Text(text) => serde_json::from_str(&text).expect("drivers send JSON text"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

fn spawn_ingest(relay: &Relay) -> (FakePeer, JoinHandle<()>) {
    let (peer, sink, stream) = fake_socket(64);
    (
        peer,
        tokio::spawn(run_ingest_socket(relay.clone(), sink, stream)),
    )
}

fn spawn_live(relay: &Relay, filter: ClientFilter, capacity: usize) -> (FakePeer, JoinHandle<()>) {
    let (peer, sink, stream) = fake_socket(capacity);
    (
        peer,
        tokio::spawn(run_live_socket(relay.clone(), sink, stream, filter)),
    )
}

#[tokio::test(start_paused = true)]
async fn ingest_answers_bad_frames_with_error_frames_and_stays_open() {
    let relay = Relay::new(RelayConfig::default());
    let mut watcher = relay.subscribe(ClientFilter::default());
    let (mut peer, driver) = spawn_ingest(&relay);
    let cases = [
        ("{oops", "invalid_json"),
        (r#"{"type":"AUDIO","sessionId":"s"}"#, "invalid_type"),
        (
            r#"{"type":"CONTROL","action":"PAUSE","sessionId":"s"}"#,
            "invalid_type",
        ),
        (
            r#"{"type":"SPEECH_CHUNK","sessionId":"s","turn":0,"seq":0,"pcm":"@@","viseme":{"mouthOpen":0}}"#,
            "invalid_request",
        ),
        (
            r#"{"type":"SPEECH_CHUNK","sessionId":"s/1","turn":0,"seq":0,"pcm":"","viseme":{"mouthOpen":0}}"#,
            "invalid_session_id",
        ),
        (
            r#"{"type":"CONTROL","action":"STOP","sessionId":"s"}"#,
            "invalid_request",
        ),
    ];
    for (text, code) in cases {
        peer.send_text(text).await;
        let error = peer.next_json().await;
        assert_eq!(
            error["type"], "ERROR",
            "{text}: answered with an error frame"
        );
        assert_eq!(error["code"], code, "{text}: code {code}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}: with a message"
        );
    }
    peer.to_driver
        .send(Ok(WsFrame::Binary(vec![1, 2, 3].into())))
        .await
        .expect("driver reading");
    assert_eq!(
        peer.next_json().await["code"],
        "unsupported_media_type",
        "binary frames are refused"
    );

    let s = sid("wire");
    peer.send_json(&chunk(&s, 1, 1)).await;
    let gap = peer.next_json().await;
    assert_eq!(
        (
            gap["code"].clone(),
            gap["sessionId"].clone(),
            gap["turn"].clone(),
            gap["seq"].clone()
        ),
        (json!("invalid_request"), json!("wire"), json!(1), json!(1)),
        "a seq error names the refused chunk"
    );
    peer.send_json(&chunk(&s, 1, 2)).await;
    let relayed = watcher.recv().await.expect("the connection still works");
    assert_eq!(
        serde_json::from_str::<koto_protocol::ingest::RelayFrame>(relayed.json()).ok(),
        Some(chunk(&s, 1, 2)),
        "a valid chunk after all that is relayed, audio and all"
    );
    let metrics = relay.metrics();
    assert_eq!(
        metrics.frames_malformed, 7,
        "6 refused texts + 1 binary (the seq gap counts as bad seq)"
    );
    assert_eq!(metrics.dropped_bad_seq, 1, "the gap");

    peer.to_driver
        .send(Ok(WsFrame::Close(None)))
        .await
        .expect("driver reading");
    driver
        .await
        .expect("the driver ends cleanly when the peer closes");
    assert_eq!(relay.metrics().producers, 0, "its producer detached");
}

#[tokio::test(start_paused = true)]
async fn stop_reaches_the_right_ingest_connection_and_its_ack_completes_it() {
    let relay = Relay::new(RelayConfig::default());
    let (mut first, _first_driver) = spawn_ingest(&relay);
    let (mut second, _second_driver) = spawn_ingest(&relay);
    let mut watcher = relay.subscribe(ClientFilter::default());
    let (a, b) = (sid("a"), sid("b"));
    first.send_json(&chunk(&a, 4, 0)).await;
    second.send_json(&chunk(&b, 1, 0)).await;
    for _ in 0..2 {
        watcher
            .recv()
            .await
            .expect("both chunks relayed, so both sessions are owned");
    }
    let stopping = tokio::spawn({
        let relay = relay.clone();
        let a = a.clone();
        async move { relay.stop(&a, "user_interrupt").await }
    });
    let stop = first.next_json().await;
    assert_eq!(
        stop,
        json!({"type":"CONTROL","action":"STOP","sessionId":"a","reason":"user_interrupt"}),
        "the first connection (a's producer) gets a's STOP in the §2 shape"
    );
    first
        .send_json(&json!({"type":"CONTROL","action":"STOP_ACK","sessionId":"a","turn":4}))
        .await;
    let outcome = stopping.await.expect("stop task");
    assert!(
        matches!(
            outcome,
            koto_relay::StopResolution::Acked {
                turn: Some(koto_core::TurnNo(4)),
                ..
            }
        ),
        "acknowledged over the wire: {outcome:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), second.from_driver.recv())
            .await
            .is_err(),
        "the second (latest) connection got nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn live_socket_round_trip() {
    let relay = Relay::new(RelayConfig::default());
    let (engine, mut stops) = relay.attach_producer(true);
    let (mut client, driver) = spawn_live(&relay, ClientFilter::default(), 64);
    let s = sid("live-001");
    tokio::time::sleep(Duration::from_millis(1)).await;
    engine.send(chunk(&s, 1, 0)).await.expect("queued");
    engine.send(end(&s, 1)).await.expect("END");
    let got = client.next_json().await;
    assert_eq!(
        (
            got["type"].clone(),
            got["seq"].clone(),
            got["viseme"]["mouthOpen"].is_number()
        ),
        (json!("SPEECH_CHUNK"), json!(0), true),
        "chunks arrive as §2 JSON"
    );
    assert_eq!(client.next_json().await["action"], "END", "then END");

    client
        .send_text(r#"{"type":"CONTROL","action":"STOP","sessionId":"live-001"}"#)
        .await;
    let stop = tokio::time::timeout(Duration::from_secs(1), stops.recv())
        .await
        .expect("in time")
        .expect("engine attached");
    assert_eq!(
        stop.session_id, s,
        "the client's STOP reached the session's producer"
    );
    assert_eq!(
        client.next_json().await["action"],
        "STOP",
        "and the client sees the STOP fanned out"
    );

    client.send_text("hello").await;
    assert_eq!(
        client.next_json().await["code"],
        "invalid_json",
        "garbage is answered"
    );
    client
        .send_text(r#"{"type":"CONTROL","action":"END","sessionId":"x"}"#)
        .await;
    assert_eq!(
        client.next_json().await["code"],
        "invalid_type",
        "clients may only STOP"
    );
    assert_eq!(relay.metrics().client_messages_rejected, 2, "counted");

    drop(client);
    driver
        .await
        .expect("the driver ends when the client goes away");
    assert_eq!(relay.metrics().clients_connected, 0, "and unsubscribes");
}

#[tokio::test(start_paused = true)]
async fn live_socket_sends_binary_audio_when_asked() {
    let relay = Relay::new(RelayConfig::default());
    let (engine, _stops) = relay.attach_producer(true);
    let filter = ClientFilter {
        binary_audio: true,
        ..ClientFilter::default()
    };
    let (mut client, _driver) = spawn_live(&relay, filter, 64);
    let s = sid("bin");
    tokio::time::sleep(Duration::from_millis(1)).await;
    engine.send(chunk(&s, 2, 0)).await.expect("queued");
    engine.send(end(&s, 2)).await.expect("END");
    let WsFrame::Binary(bytes) = client.next().await else {
        panic!("a binary frame for audio")
    };
    let decoded = decode_binary_chunk(&bytes).expect("documented framing");
    assert_eq!(
        (decoded.header.turn.0, decoded.header.seq, decoded.pcm.len()),
        (2, 0, 960),
        "header + 20 ms of s16le"
    );
    assert_eq!(
        client.next_json().await["action"],
        "END",
        "controls stay JSON text"
    );
}

#[tokio::test(start_paused = true)]
async fn a_live_socket_that_stops_reading_is_closed_as_too_slow() {
    let config = RelayConfig {
        client_queue_frames: 4,
        client_drop_limit: 3,
        ..RelayConfig::default()
    };
    let relay = Relay::new(config);
    let (engine, _stops) = relay.attach_producer(true);
    // The socket itself buffers one frame; the peer does not read at first.
    let (mut client, driver) = spawn_live(&relay, ClientFilter::default(), 1);
    let s = sid("slow");
    tokio::time::sleep(Duration::from_millis(1)).await;
    for seq in 0..40 {
        engine.send(chunk(&s, 1, seq)).await.expect("queued");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut frames = Vec::new();
    loop {
        match client.next().await {
            WsFrame::Close(reason) => {
                assert_eq!(
                    reason.map(|(code, _)| code),
                    Some(close_code::POLICY_VIOLATION),
                    "closed as too slow"
                );
                break;
            }
            frame => frames.push(frame),
        }
    }
    assert!(
        frames.len() < 40,
        "it did not get everything: {}",
        frames.len()
    );
    driver.await.expect("driver ends");
    assert_eq!(relay.metrics().clients_disconnected_slow, 1, "counted");
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_sockets_going_away() {
    let relay = Relay::new(RelayConfig::default());
    let (mut ingest, ingest_driver) = spawn_ingest(&relay);
    let (mut live, live_driver) = spawn_live(&relay, ClientFilter::default(), 64);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(
        relay.shutdown(Duration::from_secs(1)).await,
        "nothing left running"
    );
    for peer in [&mut ingest, &mut live] {
        assert_eq!(
            peer.next().await,
            WsFrame::Close(Some((close_code::GOING_AWAY, "relay shutting down".into()))),
            "each socket is closed with 1001"
        );
    }
    ingest_driver.await.expect("ingest driver ends");
    live_driver.await.expect("live driver ends");
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_closed_after_the_peer_timeout() {
    let relay = Relay::new(RelayConfig::default());
    let (mut live, driver) = spawn_live(&relay, ClientFilter::default(), 64);
    let mut pings = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(60), live.from_driver.recv()).await {
            Ok(Some(WsFrame::Ping(_))) => pings += 1,
            Ok(Some(other)) => break other,
            _ => panic!("the driver must close a silent peer"),
        }
    };
    assert!(pings >= 2, "it pinged before giving up ({pings})");
    assert!(
        matches!(close, WsFrame::Close(Some((close_code::GOING_AWAY, _)))),
        "then closed it: {close:?}"
    );
    driver.await.expect("driver ends");
}

/// A message the library refused to read closes either socket with its RFC 6455 code; a broken
/// transport gets no close frame (nothing can be sent on it).
#[tokio::test(start_paused = true)]
async fn unreadable_messages_close_with_1009_or_1007_and_a_broken_socket_just_ends() {
    let relay = Relay::new(RelayConfig::default());
    let cases = [
        (
            ReadError::TooBig("2000000 > 1048576".into()),
            Some(close_code::MESSAGE_TOO_BIG),
        ),
        (
            ReadError::NotUtf8("0xff".into()),
            Some(close_code::INVALID_PAYLOAD),
        ),
        (ReadError::Broken("reset".into()), None),
    ];
    for (error, expected) in cases {
        for driver_kind in ["ingest", "live"] {
            let (mut peer, driver) = match driver_kind {
                "ingest" => spawn_ingest(&relay),
                _ => spawn_live(&relay, ClientFilter::default(), 64),
            };
            peer.fail_read(error.clone()).await;
            driver.await.expect("the driver ends");
            let mut close = None;
            while let Ok(frame) = peer.from_driver.try_recv() {
                if let WsFrame::Close(frame) = frame {
                    close = Some(frame.map(|(code, _)| code));
                }
            }
            match expected {
                Some(code) => assert_eq!(
                    close,
                    Some(Some(code)),
                    "{driver_kind} after {error}: closed with {code}"
                ),
                None => assert_eq!(close, None, "{driver_kind} after {error}: no close frame"),
            }
        }
    }
    assert_eq!(relay.metrics().producers, 0, "every ingest detached");
}

/// Real WebSockets on loopback, adapted exactly as the server adapts its library's messages.
mod loopback {
    use futures_util::{Sink, Stream};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    fn to_message(frame: WsFrame) -> Message {
        match frame {
            WsFrame::Text(text) => Message::text(text),
            WsFrame::Binary(bytes) => Message::binary(bytes),
            WsFrame::Ping(bytes) => Message::Ping(bytes.into()),
            WsFrame::Pong(bytes) => Message::Pong(bytes.into()),
            WsFrame::Close(close) => Message::Close(close.map(|(code, reason)| CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            })),
        }
    }

    fn from_message(message: Message) -> WsFrame {
        match message {
            Message::Text(text) => WsFrame::Text(text.to_string()),
            Message::Binary(bytes) => WsFrame::Binary(bytes),
            Message::Ping(bytes) => WsFrame::Ping(bytes.to_vec()),
            Message::Pong(bytes) => WsFrame::Pong(bytes.to_vec()),
            Message::Close(close) => {
                WsFrame::Close(close.map(|c| (u16::from(c.code), c.reason.to_string())))
            }
            Message::Frame(_) => WsFrame::Pong(Vec::new()),
        }
    }

    /// The server's classification, for tungstenite's errors.
    fn read_error(error: tokio_tungstenite::tungstenite::Error) -> ReadError {
        use tokio_tungstenite::tungstenite::Error;
        match error {
            Error::Capacity(detail) => ReadError::TooBig(detail.to_string()),
            Error::Utf8(detail) => ReadError::NotUtf8(detail),
            other => ReadError::Broken(other.to_string()),
        }
    }

    type Adapted = (
        std::pin::Pin<Box<dyn Sink<WsFrame, Error = tokio_tungstenite::tungstenite::Error> + Send>>,
        std::pin::Pin<Box<dyn Stream<Item = Result<WsFrame, ReadError>> + Send>>,
    );

    /// Accept one WebSocket on `listener` and adapt it to `WsFrame`s.
    async fn accept(listener: &TcpListener) -> Adapted {
        let (tcp, _) = listener.accept().await.expect("accept on loopback");
        let socket = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("websocket handshake");
        let (sink, stream) = socket.split();
        let sink = sink.with(|frame: WsFrame| std::future::ready(Ok(to_message(frame))));
        let stream = stream.map(|message| message.map(from_message).map_err(read_error));
        (Box::pin(sink), Box::pin(stream))
    }

    #[tokio::test]
    async fn ingest_and_live_over_real_websockets() {
        let relay = Relay::new(RelayConfig::default());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("ws://{}", listener.local_addr().expect("bound address"));
        let server = tokio::spawn({
            let relay = relay.clone();
            async move {
                let (sink, stream) = accept(&listener).await;
                let ingest = tokio::spawn(run_ingest_socket(relay.clone(), sink, stream));
                let (sink, stream) = accept(&listener).await;
                let live = tokio::spawn(run_live_socket(
                    relay,
                    sink,
                    stream,
                    ClientFilter::default(),
                ));
                (ingest, live)
            }
        });
        let (mut producer, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("producer connects");
        let (mut app, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("app connects");
        let (ingest_driver, live_driver) = server.await.expect("server accepted both");

        let s = sid("loop");
        producer
            .send(Message::text(
                serde_json::to_string(&chunk(&s, 1, 0)).expect("json"),
            ))
            .await
            .expect("producer sends a chunk");
        let relayed = next_text(&mut app).await;
        assert_eq!(
            relayed["type"], "SPEECH_CHUNK",
            "the app receives the chunk over a real socket"
        );
        assert_eq!(relayed["sessionId"], "loop", "for its session");

        app.send(Message::text(
            r#"{"type":"CONTROL","action":"STOP","sessionId":"loop"}"#,
        ))
        .await
        .expect("app presses STOP");
        let stop = next_text(&mut producer).await;
        assert_eq!(
            stop["action"], "STOP",
            "the producer that owns the session gets the STOP"
        );
        producer
            .send(Message::text(
                r#"{"type":"CONTROL","action":"STOP_ACK","sessionId":"loop","turn":1}"#,
            ))
            .await
            .expect("producer acks");
        loop {
            let frame = next_text(&mut app).await;
            if frame["action"] == "STOP_ACK" {
                assert_eq!(frame["turn"], 1, "the app learns turn 1 was stopped");
                break;
            }
        }
        producer.close(None).await.expect("producer closes");
        app.close(None).await.expect("app closes");
        ingest_driver.await.expect("ingest driver ends on close");
        live_driver.await.expect("live driver ends on close");
        assert_eq!(relay.metrics().producers, 0, "nothing stays attached");
    }

    async fn next_text<S>(socket: &mut S) -> Value
    where
        S: Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("a frame within 10 s")
                .expect("socket open")
                .expect("socket healthy");
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).expect("JSON text");
            }
        }
    }
}
