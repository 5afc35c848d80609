//! A loopback fake of Bilibili: the Open Platform's signed `/v2/app/*` calls, the web API's
//! `/nav` and `getDanmuInfo`, and the danmaku WebSocket (`/sub`) with the real binary framing.
//! One port serves all, so `BILIBILI_API_URL` points a whole route at it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use koto_chat::bilibili::packet::{self, OP_AUTH, OP_AUTH_REPLY, PROTOVER_INT};
use koto_chat::bilibili::sign;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const KEY_ID: &str = "fake-key";
pub const KEY_SECRET: &str = "fake-secret";

/// What the fake answers; tests change it between connections.
pub struct Script {
    pub start_code: i64,
    pub auth_code: i64,
    pub danmu_info_code: i64,
}

/// One HTTP call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub body: Value,
    pub query: String,
    /// Whether the x-bili-* headers were signed correctly with the fake's secret.
    pub signed: bool,
    pub cookie: Option<String>,
}

pub struct FakeSocket {
    /// The body of the client's auth packet (op 7).
    pub auth: Value,
    /// Every later packet's op (2 = heartbeat).
    pub from_client: mpsc::Receiver<u32>,
    /// Raw binary frames to send.
    pub to_client: mpsc::Sender<Vec<u8>>,
}

impl FakeSocket {
    pub async fn send(&self, frame: Vec<u8>) {
        let _ = self.to_client.send(frame).await;
    }

    pub async fn expect_op(&mut self, op: u32) {
        let seen = tokio::time::timeout(Duration::from_secs(600), async {
            while let Some(got) = self.from_client.recv().await {
                if got == op {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(seen, Ok(true), "the client never sent op {op}");
    }
}

#[derive(Clone)]
struct Fake {
    script: Arc<Mutex<Script>>,
    calls: mpsc::Sender<Call>,
    sockets: mpsc::Sender<FakeSocket>,
    base: String,
}

pub struct FakeBili {
    pub url: String,
    pub script: Arc<Mutex<Script>>,
    pub calls: mpsc::Receiver<Call>,
    pub sockets: mpsc::Receiver<FakeSocket>,
}

impl FakeBili {
    pub async fn next_call(&mut self, path: &str) -> Call {
        let found = tokio::time::timeout(Duration::from_secs(600), async {
            while let Some(call) = self.calls.recv().await {
                if call.path == path {
                    return Some(call);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(call)) => call,
            _ => panic!("the adapter never called {path}"),
        }
    }

    pub async fn next_socket(&mut self) -> FakeSocket {
        match tokio::time::timeout(Duration::from_secs(600), self.sockets.recv()).await {
            Ok(Some(socket)) => socket,
            _ => panic!("the adapter never opened the danmaku socket"),
        }
    }

    pub fn set(&self, change: impl FnOnce(&mut Script)) {
        if let Ok(mut script) = self.script.lock() {
            change(&mut script);
        }
    }
}

pub async fn start() -> FakeBili {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(error) => panic!("bind: {error}"),
    };
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let script = Arc::new(Mutex::new(Script {
        start_code: 0,
        auth_code: 0,
        danmu_info_code: 0,
    }));
    let (calls_tx, calls) = mpsc::channel(64);
    let (sockets_tx, sockets) = mpsc::channel(8);
    let fake = Fake {
        script: script.clone(),
        calls: calls_tx,
        sockets: sockets_tx,
        base: address.clone(),
    };
    let app = Router::new()
        .route("/v2/app/start", post(open_call))
        .route("/v2/app/heartbeat", post(open_call))
        .route("/v2/app/end", post(open_call))
        .route("/x/web-interface/nav", get(nav))
        .route("/xlive/web-room/v1/index/getDanmuInfo", get(danmu_info))
        .route("/room/v1/Room/room_init", get(room_init))
        .route("/sub", get(socket))
        .with_state(fake);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeBili {
        url: format!("http://{address}"),
        script,
        calls,
        sockets,
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Check the signature the way the Open Platform does: md5 of the body, then HMAC-SHA256 over
/// the sorted x-bili-* headers.
fn signed(headers: &HeaderMap, body: &str) -> bool {
    let mut names: Vec<String> = headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("x-bili-"))
        .collect();
    names.sort();
    let to_sign = names
        .iter()
        .map(|name| format!("{name}:{}", header(headers, name)))
        .collect::<Vec<_>>()
        .join("\n");
    let md5_ok = header(headers, "x-bili-content-md5") == sign_md5(body);
    md5_ok
        && names.len() == 6
        && header(headers, "x-bili-accesskeyid") == KEY_ID
        && header(headers, "authorization") == sign::hmac_sha256_hex(KEY_SECRET, &to_sign)
}

fn sign_md5(body: &str) -> String {
    // Reuse the adapter's header builder only for the md5 it carries.
    sign::open_platform_headers("", "", body, 0, "")
        .into_iter()
        .find(|(name, _)| *name == "x-bili-content-md5")
        .map(|(_, value)| value)
        .unwrap_or_default()
}

async fn open_call(
    State(fake): State<Fake>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let path = uri.path().to_owned();
    let call = Call {
        path: path.clone(),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        query: String::new(),
        signed: signed(&headers, &body),
        cookie: None,
    };
    let ok = call.signed;
    let _ = fake.calls.send(call).await;
    if !ok {
        return axum::Json(json!({"code": 4002, "message": "signature invalid"}));
    }
    let start_code = fake.script.lock().map(|s| s.start_code).unwrap_or(0);
    if path == "/v2/app/start" {
        if start_code != 0 {
            return axum::Json(json!({"code": start_code, "message": "refused", "data": {}}));
        }
        return axum::Json(json!({"code": 0, "message": "0", "data": {
            "game_info": {"game_id": "game-1"},
            "websocket_info": {"auth_body": "{\"key\":\"open-auth\"}", "wss_link": [format!("ws://{}/sub", fake.base)]},
            "anchor_info": {"room_id": 4639581, "uname": "anchor", "open_id": "anchor-open"}
        }}));
    }
    axum::Json(json!({"code": 0, "message": "0", "data": {}}))
}

async fn nav(State(fake): State<Fake>, headers: HeaderMap) -> impl IntoResponse {
    let cookie = headers
        .get("cookie")
        .and_then(|c| c.to_str().ok())
        .map(str::to_owned);
    let logged_in = cookie.as_deref().is_some_and(|c| c.contains("SESSDATA"));
    let _ = fake
        .calls
        .send(Call {
            path: "/x/web-interface/nav".into(),
            body: Value::Null,
            query: String::new(),
            signed: false,
            cookie,
        })
        .await;
    let wbi = json!({"img_url": "https://i0.hdslb.com/bfs/wbi/7cd084941338484aae1ad9425b84077c.png", "sub_url": "https://i0.hdslb.com/bfs/wbi/4932caff0ff746eab6f01bf08b70ac45.png"});
    if logged_in {
        axum::Json(json!({"code": 0, "data": {"isLogin": true, "mid": 99, "wbi_img": wbi}}))
    } else {
        axum::Json(
            json!({"code": -101, "message": "账号未登录", "data": {"isLogin": false, "wbi_img": wbi}}),
        )
    }
}

async fn danmu_info(
    State(fake): State<Fake>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> impl IntoResponse {
    let query = query.unwrap_or_default();
    let cookie = headers
        .get("cookie")
        .and_then(|c| c.to_str().ok())
        .map(str::to_owned);
    // Verify the WBI signature with the mixin key of the keys /nav gave.
    let (unsigned, w_rid) = query.rsplit_once("&w_rid=").unwrap_or((&query, ""));
    let wts = unsigned
        .split('&')
        .find_map(|pair| pair.strip_prefix("wts="))
        .and_then(|wts| wts.parse::<u64>().ok())
        .unwrap_or(0);
    let params: Vec<(&str, String)> = unsigned
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key != "wts")
        .map(|(key, value)| (key, value.to_owned()))
        .collect();
    let mixin = sign::mixin_key(
        "7cd084941338484aae1ad9425b84077c",
        "4932caff0ff746eab6f01bf08b70ac45",
    );
    let expected = sign::wbi_query(&params, &mixin, wts);
    let signed = !w_rid.is_empty() && expected == query;
    let _ = fake
        .calls
        .send(Call {
            path: "/xlive/web-room/v1/index/getDanmuInfo".into(),
            body: Value::Null,
            query: query.clone(),
            signed,
            cookie,
        })
        .await;
    let code = fake.script.lock().map(|s| s.danmu_info_code).unwrap_or(0);
    if !signed || code != 0 {
        return axum::Json(
            json!({"code": if signed { code } else { -352 }, "message": "-352", "data": null}),
        );
    }
    let (host, port) = fake.base.rsplit_once(':').unwrap_or(("127.0.0.1", "0"));
    axum::Json(
        json!({"code": 0, "data": {"token": "web-token", "host_list": [
            {"host": host, "port": 2243, "wss_port": 443, "ws_port": port.parse::<u16>().unwrap_or(0)}
        ]}}),
    )
}

/// Room 21 is the short id of room 4639581; other ids are their own.
async fn room_init(RawQuery(query): RawQuery) -> impl IntoResponse {
    let id = query
        .unwrap_or_default()
        .strip_prefix("id=")
        .and_then(|id| id.parse::<i64>().ok())
        .unwrap_or(0);
    let real = if id == 21 { 4639581 } else { id };
    axum::Json(
        json!({"code": 0, "data": {"room_id": real, "short_id": if id == 21 { 21 } else { 0 }}}),
    )
}

async fn socket(State(fake): State<Fake>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(move |socket| serve_socket(fake, socket))
}

async fn serve_socket(fake: Fake, mut socket: WebSocket) {
    // The first packet must be the auth (op 7).
    let Some(Ok(Message::Binary(first))) = socket.recv().await else {
        return;
    };
    let decoded = packet::decode(&first);
    let Some(auth) = decoded.packets.first().filter(|p| p.op == OP_AUTH) else {
        return;
    };
    let auth_json: Value = serde_json::from_slice(&auth.body).unwrap_or(Value::Null);
    let code = fake.script.lock().map(|s| s.auth_code).unwrap_or(0);
    let reply = packet::encode(
        OP_AUTH_REPLY,
        PROTOVER_INT,
        json!({"code": code}).to_string().as_bytes(),
    );
    if socket.send(Message::Binary(reply.into())).await.is_err() {
        return;
    }
    let (from_tx, from_client) = mpsc::channel(64);
    let (to_client, mut to_rx) = mpsc::channel::<Vec<u8>>(64);
    if fake
        .sockets
        .send(FakeSocket {
            auth: auth_json,
            from_client,
            to_client,
        })
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    for packet in packet::decode(&bytes).packets {
                        let _ = from_tx.send(packet.op).await;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            out = to_rx.recv() => match out {
                Some(bytes) => { if socket.send(Message::Binary(bytes.into())).await.is_err() { return; } }
                None => return,
            },
        }
    }
}
