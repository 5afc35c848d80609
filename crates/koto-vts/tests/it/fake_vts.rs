//! A loopback fake of VTube Studio's plugin API: the real JSON envelope over a WebSocket on
//! 127.0.0.1, with a token popup the test scripts (allow with a token, or deny) and a log of
//! every request it received.
//!
//! It is not a model of VTube Studio beyond what the client uses: authentication, tokens,
//! `InjectParameterDataRequest`, and the envelope checks (`apiName`, `apiVersion`, `requestID`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

/// What the user "clicks" when the popup appears.
#[derive(Debug, Clone)]
pub enum Popup {
    Allow(String),
    Deny,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// 1 for the first accepted connection, 2 for the next, …
    pub connection: usize,
    pub message_type: String,
    pub data: Value,
    /// `apiName`, `apiVersion` and a `requestID` were all as documented.
    pub envelope_ok: bool,
}

#[derive(Debug)]
pub struct FakeState {
    pub popup: Popup,
    pub valid_tokens: HashSet<String>,
    /// Before every reply, send frames no client should choke on.
    pub garbage: bool,
    pub received: Vec<Received>,
    pub n_connections: usize,
    pub n_closed: usize,
}

impl FakeState {
    pub fn of_type(&self, message_type: &str) -> Vec<Received> {
        self.received
            .iter()
            .filter(|received| received.message_type == message_type)
            .cloned()
            .collect()
    }

    /// `(connection, value)` of every `MouthOpen` injected, in order.
    pub fn mouth_values(&self) -> Vec<(usize, f32)> {
        self.of_type("InjectParameterDataRequest")
            .iter()
            .map(|received| {
                let values = received.data["parameterValues"]
                    .as_array()
                    .expect("parameterValues");
                assert_eq!(values.len(), 1, "only the mouth: {values:?}");
                assert_eq!(values[0]["id"], "MouthOpen");
                assert_eq!(received.data["faceFound"], false);
                assert_eq!(received.data["mode"], "set");
                #[allow(clippy::cast_possible_truncation)]
                let value = values[0]["value"].as_f64().expect("a number") as f32;
                (received.connection, value)
            })
            .collect()
    }
}

pub struct FakeVts {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    accept: Option<JoinHandle<()>>,
}

impl FakeVts {
    pub async fn start(popup: Popup) -> FakeVts {
        let state = Arc::new(Mutex::new(FakeState {
            popup,
            valid_tokens: HashSet::new(),
            garbage: false,
            received: Vec::new(),
            n_connections: 0,
            n_closed: 0,
        }));
        let listener = listen("127.0.0.1:0".parse().expect("an address"));
        let addr = listener.local_addr().expect("bound");
        let accept = Some(tokio::spawn(accept_loop(listener, state.clone())));
        FakeVts {
            addr,
            state,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// VTube Studio quits: the listener and every connection go away.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            // Awaiting the aborted task means its listener and connections are dropped.
            let _ = accept.await;
        }
    }

    /// VTube Studio starts again on the same port, remembering its tokens.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = listen(self.addr);
        self.accept = Some(tokio::spawn(accept_loop(listener, self.state.clone())));
    }

    /// Wait (bounded, polling) until `check` finds what it wants in the fake's state.
    pub async fn until<T>(&self, what: &str, check: impl Fn(&FakeState) -> Option<T>) -> T {
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some(found) = check(&self.state()) {
                    return found;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        match waited {
            Ok(found) => found,
            Err(_) => panic!(
                "the fake never saw {what}; it has {:#?}",
                self.state().received
            ),
        }
    }
}

fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("a socket");
    // Rebinding the port of a fake that just stopped must not wait for TIME_WAIT.
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind on loopback");
    socket.listen(16).expect("listen")
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<FakeState>>) {
    // Dropped with this task on `stop`, which aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let connection = {
            let mut state = lock(&state);
            state.n_connections += 1;
            state.n_connections
        };
        let state = state.clone();
        connections.spawn(async move {
            if let Ok(socket) = tokio_tungstenite::accept_async(stream).await {
                serve(socket, connection, &state).await;
            }
            lock(&state).n_closed += 1;
        });
    }
}

fn lock(state: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(
    mut socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    connection: usize,
    state: &Mutex<FakeState>,
) {
    // The token this connection authenticated with (access can be revoked while it runs).
    let mut session_token: Option<String> = None;
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(request) = serde_json::from_str::<Value>(text.as_str()) else {
            let error = reply(
                None,
                "APIError",
                json!({"errorID": 2, "message": "JSON invalid"}),
            );
            let _ = socket.send(error).await;
            continue;
        };
        let request_id = request["requestID"].as_str().map(str::to_owned);
        let message_type = request["messageType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let data = request["data"].clone();
        let envelope_ok = request["apiName"] == "VTubeStudioPublicAPI"
            && request["apiVersion"] == "1.0"
            && request_id
                .as_deref()
                .is_some_and(|id| (1..=64).contains(&id.len()) && id.is_ascii());
        let (garbage, answer) = {
            let mut state = lock(state);
            state.received.push(Received {
                connection,
                message_type: message_type.clone(),
                data: data.clone(),
                envelope_ok,
            });
            let answer = answer(&mut state, &message_type, &data, &mut session_token);
            (state.garbage, answer)
        };
        if garbage {
            for frame in garbage_frames() {
                if socket.send(frame).await.is_err() {
                    return;
                }
            }
        }
        let (reply_type, reply_data) = answer;
        if socket
            .send(reply(request_id.as_deref(), reply_type, reply_data))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn answer(
    state: &mut FakeState,
    message_type: &str,
    data: &Value,
    session_token: &mut Option<String>,
) -> (&'static str, Value) {
    match message_type {
        "AuthenticationTokenRequest" => match state.popup.clone() {
            Popup::Allow(token) => {
                state.valid_tokens.insert(token.clone());
                (
                    "AuthenticationTokenResponse",
                    json!({"authenticationToken": token}),
                )
            }
            Popup::Deny => (
                "APIError",
                json!({"errorID": 50, "message": "User has denied API access for your plugin."}),
            ),
        },
        "AuthenticationRequest" => {
            let token = data["authenticationToken"].as_str().unwrap_or_default();
            let authenticated = state.valid_tokens.contains(token);
            *session_token = authenticated.then(|| token.to_owned());
            let reason = if authenticated {
                "Token valid. The plugin is authenticated for the duration of this session."
            } else {
                "Token invalid."
            };
            (
                "AuthenticationResponse",
                json!({"authenticated": authenticated, "reason": reason}),
            )
        }
        "InjectParameterDataRequest" => match session_token {
            None => (
                "APIError",
                json!({"errorID": 8, "message": "This request requires authentication."}),
            ),
            Some(token) if !state.valid_tokens.contains(token.as_str()) => (
                "APIError",
                json!({"errorID": 50, "message": "User has revoked API access for your plugin."}),
            ),
            Some(_) => ("InjectParameterDataResponse", json!({})),
        },
        _ => (
            "APIError",
            json!({"errorID": 7, "message": "Request type unknown."}),
        ),
    }
}

fn reply(request_id: Option<&str>, message_type: &str, data: Value) -> Message {
    let mut envelope = json!({
        "apiName": "VTubeStudioPublicAPI",
        "apiVersion": "1.0",
        "timestamp": 1_625_405_710_728_i64,
        "messageType": message_type,
        "data": data,
    });
    if let Some(id) = request_id {
        envelope["requestID"] = json!(id);
    }
    Message::text(envelope.to_string())
}

/// Frames a client must survive: not JSON, not UTF-8, an unknown type, an error without its
/// fields, a reply to somebody else's request that would authenticate it if believed, a ping.
fn garbage_frames() -> Vec<Message> {
    vec![
        Message::text("}{ definitely not json"),
        Message::binary(vec![0xff, 0xfe, 0x00]),
        Message::text(
            r#"{"messageType":"SomeFutureEvent","requestID":"vts-event","data":{"x":1}}"#,
        ),
        Message::text(r#"{"messageType":"APIError","data":{"unexpected":true}}"#),
        Message::text(
            r#"{"messageType":"AuthenticationResponse","requestID":"someone-else","data":{"authenticated":true,"reason":"not yours"}}"#,
        ),
        Message::Ping(vec![1, 2, 3].into()),
    ]
}
