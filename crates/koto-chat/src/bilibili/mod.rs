//! Bilibili live danmaku: the Open Platform route (the streamer's identity code: `/v2/app/start`,
//! a 20 s `/v2/app/heartbeat`, `/v2/app/end`, all HMAC-signed) and the web route as best effort
//! (`/nav` for the WBI keys, a WBI-signed `getDanmuInfo`, the user's cookies); both then read the
//! same binary WebSocket protocol (`packet.rs`) and map its commands (`event.rs`).
//!
//! It never sends danmaku. `BILIBILI_API_URL` replaces the base of every HTTP call (the Open
//! Platform's host, or both web hosts), and the WebSocket scheme follows it (`http` → `ws`), so
//! one loopback fake serves a whole route.

pub mod event;
pub mod packet;
pub mod sign;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use koto_core::chat::AdapterHealth;
use rand::Rng;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{ChatSource, SourceContext, SourceError, SourceFuture, now_ms};
use event::Mapped;
use packet::{OP_AUTH, OP_AUTH_REPLY, OP_HEARTBEAT, OP_HEARTBEAT_REPLY, OP_MESSAGE, PROTOVER_INT};

pub const OPEN_PLATFORM_URL: &str = "https://live-open.biliapi.com";
pub const WEB_API_URL: &str = "https://api.bilibili.com";
pub const WEB_LIVE_API_URL: &str = "https://api.live.bilibili.com";
/// Bilibili refuses non-browser user agents on the web API.
const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36";

#[derive(Debug, Clone)]
pub enum BilibiliRoute {
    /// The streamer's own room through the Open Platform (the robust route).
    Open {
        identity_code: String,
        app_id: i64,
        access_key_id: String,
        access_key_secret: String,
    },
    /// Any room through the web API (risk-controlled; needs a logged-in cookie for names).
    Web {
        room_id: String,
        cookie: Option<String>,
    },
}

#[derive(Clone)]
pub struct BilibiliConfig {
    pub route: BilibiliRoute,
    /// Replaces the base URL of every HTTP call (tests, proxies).
    pub api_url: Option<String>,
    /// WebSocket heartbeat (op 2); the server drops a socket silent for ~70 s.
    pub heartbeat_every: Duration,
    /// Open Platform `/v2/app/heartbeat`; the game ends after 60 s without one.
    pub app_heartbeat_every: Duration,
    pub stale_after: Duration,
    pub http_timeout: Duration,
}

impl std::fmt::Debug for BilibiliConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The route holds secrets (identity code, key secret, cookie).
        f.debug_struct("BilibiliConfig")
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

impl BilibiliConfig {
    pub fn new(route: BilibiliRoute) -> BilibiliConfig {
        BilibiliConfig {
            route,
            api_url: None,
            heartbeat_every: Duration::from_secs(30),
            app_heartbeat_every: Duration::from_secs(20),
            stale_after: Duration::from_secs(75),
            http_timeout: Duration::from_secs(10),
        }
    }
}

pub struct BilibiliSource {
    config: BilibiliConfig,
    client: reqwest::Client,
    /// An Open Platform game that was started and not yet ended (ended before the next start,
    /// since a connection dropped by the watchdog could not say goodbye).
    open_game: Option<String>,
}

impl BilibiliSource {
    pub fn new(config: BilibiliConfig) -> BilibiliSource {
        let client = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .build()
            .unwrap_or_default();
        BilibiliSource {
            config,
            client,
            open_game: None,
        }
    }

    fn base<'a>(&'a self, default: &'a str) -> &'a str {
        self.config
            .api_url
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
    }
}

impl ChatSource for BilibiliSource {
    fn platform(&self) -> &'static str {
        "bilibili"
    }

    fn channel(&self) -> String {
        match &self.config.route {
            BilibiliRoute::Open { .. } => "open-platform".into(),
            BilibiliRoute::Web { room_id, .. } => room_id.clone(),
        }
    }

    fn stale_after(&self) -> Duration {
        self.config.stale_after
    }

    fn run_once<'a>(&'a mut self, ctx: &'a SourceContext) -> SourceFuture<'a> {
        Box::pin(async move {
            match self.config.route.clone() {
                BilibiliRoute::Open {
                    identity_code,
                    app_id,
                    access_key_id,
                    access_key_secret,
                } => {
                    let keys = OpenKeys {
                        id: access_key_id,
                        secret: access_key_secret,
                    };
                    self.run_open(ctx, &identity_code, app_id, &keys).await
                }
                BilibiliRoute::Web { room_id, cookie } => {
                    self.run_web(ctx, &room_id, cookie.as_deref()).await
                }
            }
        })
    }
}

struct OpenKeys {
    id: String,
    secret: String,
}

/// What the read loop needs to keep an Open Platform game alive.
struct OpenGame<'a> {
    source: &'a BilibiliSource,
    keys: &'a OpenKeys,
    game_id: String,
}

impl BilibiliSource {
    async fn run_open(
        &mut self,
        ctx: &SourceContext,
        identity_code: &str,
        app_id: i64,
        keys: &OpenKeys,
    ) -> Result<(), SourceError> {
        if identity_code.trim().is_empty()
            || app_id <= 0
            || keys.id.is_empty()
            || keys.secret.is_empty()
        {
            return Err(SourceError::Config(
                "Bilibili Open Platform needs BILIBILI_IDENTITY_CODE, BILIBILI_APP_ID, BILIBILI_APP_KEY and BILIBILI_APP_SECRET".into(),
            ));
        }
        if let Some(old) = self.open_game.take() {
            self.end_game(keys, app_id, &old).await;
        }
        let started = self
            .open_call(
                keys,
                "/v2/app/start",
                &json!({"code": identity_code.trim(), "app_id": app_id}),
            )
            .await?;
        let data = &started["data"];
        let game_id = data["game_info"]["game_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let auth_body = data["websocket_info"]["auth_body"]
            .as_str()
            .ok_or_else(|| {
                SourceError::Protocol("/v2/app/start: no websocket_info.auth_body".into())
            })?
            .to_owned();
        let links: Vec<String> = data["websocket_info"]["wss_link"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|link| link.as_str().map(str::to_owned))
            .collect();
        let room = match &data["anchor_info"]["room_id"] {
            Value::Number(n) => n.to_string(),
            _ => "open-platform".into(),
        };
        if !game_id.is_empty() {
            self.open_game = Some(game_id.clone());
        }
        let Some(url) = links.first() else {
            return Err(SourceError::Protocol(
                "/v2/app/start: no websocket_info.wss_link".into(),
            ));
        };
        let game = (!game_id.is_empty()).then(|| OpenGame {
            source: self,
            keys,
            game_id: game_id.clone(),
        });
        let result = read_room(
            ctx,
            &self.config,
            url,
            auth_body.into_bytes(),
            &room,
            false,
            game,
        )
        .await;
        if ctx.cancel.is_cancelled()
            && let Some(game_id) = self.open_game.take()
        {
            self.end_game(keys, app_id, &game_id).await;
        }
        result
    }

    async fn end_game(&self, keys: &OpenKeys, app_id: i64, game_id: &str) {
        let ended = self
            .open_call(
                keys,
                "/v2/app/end",
                &json!({"app_id": app_id, "game_id": game_id}),
            )
            .await;
        if let Err(error) = ended {
            tracing::info!(%error, "bilibili: /v2/app/end failed (the game times out on its own)");
        }
    }

    /// One signed Open Platform call; a non-zero `code` is an error naming it.
    async fn open_call(
        &self,
        keys: &OpenKeys,
        path: &str,
        body: &Value,
    ) -> Result<Value, SourceError> {
        let body = body.to_string();
        let nonce = format!("{}{}", now_ms(), rand::rng().random::<u32>());
        let timestamp = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let url = format!("{}{path}", self.base(OPEN_PLATFORM_URL));
        let mut request = self
            .client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        for (name, value) in
            sign::open_platform_headers(&keys.id, &keys.secret, &body, timestamp, &nonce)
        {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|error| SourceError::Transport(format!("{path}: {error}")))?;
        let status = response.status();
        let reply: Value = response.json().await.map_err(|error| {
            SourceError::Protocol(format!("{path}: HTTP {status}, not JSON: {error}"))
        })?;
        let code = reply["code"].as_i64().unwrap_or(-1);
        if code == 0 {
            return Ok(reply);
        }
        let message = reply["message"].as_str().unwrap_or_default();
        let reason = format!("Bilibili {path}: code {code} {message}");
        // 4xxx: the app key, secret or signature was refused; 7007: a wrong identity code.
        Err(if (4000..5000).contains(&code) || code == 7007 {
            SourceError::Auth(reason)
        } else {
            SourceError::Protocol(reason)
        })
    }

    async fn run_web(
        &mut self,
        ctx: &SourceContext,
        room_id: &str,
        cookie: Option<&str>,
    ) -> Result<(), SourceError> {
        let room: i64 = room_id.trim().parse().map_err(|_| {
            SourceError::Config(format!(
                "BILIBILI_ROOM_ID must be a number, got {room_id:?}"
            ))
        })?;
        let cookie = cookie.map(str::trim).filter(|c| !c.is_empty());
        let room = self.real_room_id(room, cookie).await;
        let nav = self
            .web_get(
                &format!("{}/x/web-interface/nav", self.base(WEB_API_URL)),
                cookie,
            )
            .await?;
        let img = nav["data"]["wbi_img"]["img_url"]
            .as_str()
            .unwrap_or_default();
        let sub = nav["data"]["wbi_img"]["sub_url"]
            .as_str()
            .unwrap_or_default();
        if img.is_empty() || sub.is_empty() {
            return Err(SourceError::Protocol(format!(
                "Bilibili /nav gave no wbi_img (code {})",
                nav["code"]
            )));
        }
        let mixin = sign::mixin_key(sign::url_stem(img), sign::url_stem(sub));
        // Logged out, /nav answers -101 and mid 0: we read as a guest.
        let uid = nav["data"]["mid"].as_i64().unwrap_or(0);
        let wts = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let query = sign::wbi_query(
            &[
                ("id", room.to_string()),
                ("type", "0".into()),
                ("web_location", "444.8".into()),
            ],
            &mixin,
            wts,
        );
        let live_base = self.base(WEB_LIVE_API_URL);
        let info = self
            .web_get(
                &format!("{live_base}/xlive/web-room/v1/index/getDanmuInfo?{query}"),
                cookie,
            )
            .await?;
        match info["code"].as_i64() {
            Some(0) => {}
            Some(-352) => {
                return Err(SourceError::Auth(
                    "Bilibili -352 (risk control) on getDanmuInfo: set BILIBILI_COOKIE to a logged-in browser's cookies (buvid3, buvid4, SESSDATA), or use the Open Platform route".into(),
                ));
            }
            code => {
                return Err(SourceError::Protocol(format!(
                    "Bilibili getDanmuInfo: code {} {}",
                    code.unwrap_or(-1),
                    info["message"].as_str().unwrap_or_default()
                )));
            }
        }
        let token = info["data"]["token"].as_str().unwrap_or_default();
        let host = &info["data"]["host_list"][0];
        let secure = !live_base.starts_with("http://");
        let url = match (host["host"].as_str(), secure) {
            (Some(name), true) => format!(
                "wss://{name}:{}/sub",
                host["wss_port"].as_i64().unwrap_or(443)
            ),
            (Some(name), false) => format!(
                "ws://{name}:{}/sub",
                host["ws_port"].as_i64().unwrap_or(2244)
            ),
            (None, _) => {
                return Err(SourceError::Protocol(
                    "Bilibili getDanmuInfo: empty host_list".into(),
                ));
            }
        };
        let buvid = cookie_value(cookie.unwrap_or_default(), "buvid3").unwrap_or_default();
        let auth = json!({
            "uid": uid, "roomid": room, "protover": 3, "buvid": buvid,
            "platform": "web", "type": 2, "key": token,
        });
        read_room(
            ctx,
            &self.config,
            &url,
            auth.to_string().into_bytes(),
            &room.to_string(),
            uid == 0,
            None,
        )
        .await
    }

    /// The number in a room's URL may be its short id; the danmaku API wants the real one.
    /// Best effort: on any failure the given id is used as is.
    async fn real_room_id(&self, room: i64, cookie: Option<&str>) -> i64 {
        let url = format!(
            "{}/room/v1/Room/room_init?id={room}",
            self.base(WEB_LIVE_API_URL)
        );
        match self.web_get(&url, cookie).await {
            Ok(reply) if reply["code"].as_i64() == Some(0) => reply["data"]["room_id"]
                .as_i64()
                .filter(|id| *id > 0)
                .unwrap_or(room),
            Ok(reply) => {
                tracing::info!(room, code = %reply["code"], "bilibili: room_init refused; using the id as given");
                room
            }
            Err(error) => {
                tracing::info!(room, %error, "bilibili: room_init failed; using the id as given");
                room
            }
        }
    }

    async fn web_get(&self, url: &str, cookie: Option<&str>) -> Result<Value, SourceError> {
        let mut request = self
            .client
            .get(url)
            .header("User-Agent", USER_AGENT)
            .header("Referer", "https://live.bilibili.com/");
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        let path = url.split('?').next().unwrap_or(url);
        let response = request
            .send()
            .await
            .map_err(|error| SourceError::Transport(format!("{path}: {error}")))?;
        let status = response.status();
        response.json().await.map_err(|error| {
            SourceError::Protocol(format!("{path}: HTTP {status}, not JSON: {error}"))
        })
    }
}

fn cookie_value<'a>(cookie: &'a str, name: &str) -> Option<&'a str> {
    cookie
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Connect, authenticate, then read until the socket ends or `cancel`.
async fn read_room(
    ctx: &SourceContext,
    config: &BilibiliConfig,
    url: &str,
    auth_body: Vec<u8>,
    room: &str,
    guest: bool,
    game: Option<OpenGame<'_>>,
) -> Result<(), SourceError> {
    let mut socket = tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => return Ok(()),
        connected = crate::connect_ws(url) => connected?,
    };
    let send = |bytes: Vec<u8>| Message::binary(bytes);
    socket
        .send(send(packet::encode(OP_AUTH, PROTOVER_INT, &auth_body)))
        .await
        .map_err(|error| SourceError::Transport(error.to_string()))?;
    let mut authenticated = false;
    let mut degraded = false;
    // Intervals of zero would panic; a config never gives one, but the type allows it.
    let floor = Duration::from_millis(10);
    let mut heartbeat = tokio::time::interval(config.heartbeat_every.max(floor));
    let app_every = config.app_heartbeat_every.max(floor);
    let mut app_heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + app_every, app_every);
    loop {
        let frame = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                let _ = socket.close(None).await;
                return Ok(());
            }
            _ = heartbeat.tick(), if authenticated => {
                socket
                    .send(send(packet::encode(OP_HEARTBEAT, PROTOVER_INT, b"[object Object]")))
                    .await
                    .map_err(|error| SourceError::Transport(error.to_string()))?;
                continue;
            }
            _ = app_heartbeat.tick(), if game.is_some() => {
                if let Some(game) = &game {
                    game.source
                        .open_call(game.keys, "/v2/app/heartbeat", &json!({"game_id": game.game_id}))
                        .await?;
                }
                continue;
            }
            frame = socket.next() => frame,
        };
        let bytes = match frame {
            None | Some(Ok(Message::Close(_))) => {
                return Err(SourceError::Transport(
                    "the danmaku server closed the connection".into(),
                ));
            }
            Some(Err(error)) => return Err(SourceError::Transport(error.to_string())),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(_)) => continue,
        };
        ctx.heard();
        let decoded = packet::decode(&bytes);
        if let Some(error) = &decoded.error {
            tracing::warn!(room, %error, "bilibili: skipped the rest of a bad frame");
        }
        for packet in decoded.packets {
            match packet.op {
                OP_AUTH_REPLY => {
                    let reply: Value = serde_json::from_slice(&packet.body).unwrap_or(Value::Null);
                    let code = reply["code"].as_i64().unwrap_or(-1);
                    if code != 0 {
                        return Err(SourceError::Auth(format!(
                            "Bilibili refused the danmaku auth (code {code})"
                        )));
                    }
                    authenticated = true;
                    heartbeat.reset_immediately();
                    if guest {
                        degraded = true;
                        ctx.set_health(AdapterHealth::Degraded(MASKED.into()));
                    } else {
                        ctx.set_health(AdapterHealth::Live);
                    }
                }
                OP_HEARTBEAT_REPLY => {}
                OP_MESSAGE => {
                    let Ok(command) = serde_json::from_slice::<Value>(&packet.body) else {
                        tracing::debug!(room, "bilibili: a message that is not JSON");
                        continue;
                    };
                    let events = match event::map(&command, room, now_ms()) {
                        Mapped::Event(event) => vec![*event],
                        Mapped::Events(events) => events,
                        Mapped::MaskedNames => {
                            if !degraded {
                                degraded = true;
                                ctx.set_health(AdapterHealth::Degraded(MASKED.into()));
                            }
                            vec![]
                        }
                        Mapped::Nothing => vec![],
                    };
                    for event in events {
                        if !degraded && event::is_masked(&event) {
                            degraded = true;
                            ctx.set_health(AdapterHealth::Degraded(MASKED.into()));
                        }
                        if !ctx.emit(event).await {
                            return Ok(());
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

const MASKED: &str =
    "names masked: reading as a guest (set BILIBILI_COOKIE, or use the Open Platform route)";
