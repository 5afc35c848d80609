//! Bilibili adapter against the loopback fake (HTTP + danmaku WebSocket with the real framing).

use std::time::Duration;

use koto_chat::bilibili::packet::{
    self, OP_HEARTBEAT, OP_HEARTBEAT_REPLY, OP_MESSAGE, PROTOVER_BROTLI, PROTOVER_INT,
    PROTOVER_JSON, PROTOVER_ZLIB,
};
use koto_chat::bilibili::{BilibiliConfig, BilibiliRoute, BilibiliSource};
use koto_chat::{ChatAdapters, SupervisorOptions};
use koto_core::chat::{AdapterHealth, ChatEvent, ChatKind};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fake_bili::{self, FakeBili, KEY_ID, KEY_SECRET};
use crate::util::{next_event, until_health};

struct Rig {
    adapters: ChatAdapters,
    events: mpsc::Receiver<ChatEvent>,
    fake: FakeBili,
}

async fn rig(route: impl FnOnce() -> BilibiliRoute, prepare: impl FnOnce(&FakeBili)) -> Rig {
    let fake = fake_bili::start().await;
    prepare(&fake);
    let mut config = BilibiliConfig::new(route());
    config.api_url = Some(fake.url.clone());
    config.heartbeat_every = Duration::from_millis(100);
    config.app_heartbeat_every = Duration::from_millis(150);
    let (tx, events) = mpsc::channel(64);
    let options = SupervisorOptions {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        ..SupervisorOptions::default()
    };
    let adapters = ChatAdapters::start_sources(
        vec![Box::new(BilibiliSource::new(config))],
        tx,
        CancellationToken::new(),
        options,
    );
    Rig {
        adapters,
        events,
        fake,
    }
}

fn open_route() -> BilibiliRoute {
    BilibiliRoute::Open {
        identity_code: "ID-CODE".into(),
        app_id: 1650000000,
        access_key_id: KEY_ID.into(),
        access_key_secret: KEY_SECRET.into(),
    }
}

fn web_route(cookie: Option<&str>) -> BilibiliRoute {
    BilibiliRoute::Web {
        room_id: "4639581".into(),
        cookie: cookie.map(str::to_owned),
    }
}

fn message(command: Value) -> Vec<u8> {
    packet::encode(OP_MESSAGE, PROTOVER_JSON, command.to_string().as_bytes())
}

fn open_dm(id: &str, text: &str) -> Value {
    json!({"cmd":"LIVE_OPEN_PLATFORM_DM","data":{"msg":text,"msg_id":id,"open_id":"o-1","uname":"观众","timestamp":1700000000,"guard_level":0}})
}

#[tokio::test]
async fn the_open_platform_route_starts_signed_reads_compressed_frames_and_keeps_alive() {
    let mut rig = rig(open_route, |_| {}).await;
    let start = rig.fake.next_call("/v2/app/start").await;
    assert!(
        start.signed,
        "the start call carries a valid HMAC-SHA256 signature"
    );
    assert_eq!(start.body, json!({"code": "ID-CODE", "app_id": 1650000000}));
    let mut socket = rig.fake.next_socket().await;
    assert_eq!(
        socket.auth,
        json!({"key": "open-auth"}),
        "the auth packet is start's auth_body verbatim"
    );
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    // One frame: a heartbeat reply, a zlib bundle, a brotli bundle.
    let frame = [
        packet::encode(OP_HEARTBEAT_REPLY, PROTOVER_INT, &1u32.to_be_bytes()),
        packet::encode_compressed(PROTOVER_ZLIB, &[message(open_dm("m-1", "你好")), message(open_dm("m-2", "再见"))]),
        packet::encode_compressed(PROTOVER_BROTLI, &[message(json!({"cmd":"LIVE_OPEN_PLATFORM_SUPER_CHAT","data":{"message":"加油","message_id":7,"rmb":30,"open_id":"o-2","uname":"B"}}))]),
    ]
    .concat();
    socket.send(frame).await;
    let texts: Vec<(String, String)> = [
        next_event(&mut rig.events).await,
        next_event(&mut rig.events).await,
        next_event(&mut rig.events).await,
    ]
    .into_iter()
    .map(|e| (e.message_id, e.text))
    .collect();
    assert_eq!(
        texts,
        vec![
            ("m-1".into(), "你好".into()),
            ("m-2".into(), "再见".into()),
            ("sc:7".into(), "加油".into())
        ]
    );
    socket.expect_op(OP_HEARTBEAT).await;
    let heartbeat = rig.fake.next_call("/v2/app/heartbeat").await;
    assert!(heartbeat.signed);
    assert_eq!(heartbeat.body, json!({"game_id": "game-1"}));
    // Stopping ends the game.
    rig.adapters.shutdown().await;
    let end = rig.fake.next_call("/v2/app/end").await;
    assert_eq!(end.body, json!({"app_id": 1650000000, "game_id": "game-1"}));
}

#[tokio::test]
async fn lying_truncated_and_badly_compressed_frames_are_skipped() {
    let mut rig = rig(open_route, |_| {}).await;
    let socket = rig.fake.next_socket().await;
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    let mut lying = message(open_dm("lie", "x"));
    lying[2] = 0x7f; // claims ~8 MB
    let mut short_header = message(open_dm("short", "x"));
    short_header[5] = 3;
    socket.send(lying).await;
    socket.send(short_header).await;
    socket.send(vec![0, 0, 1]).await;
    socket
        .send(packet::encode(
            OP_MESSAGE,
            PROTOVER_ZLIB,
            b"not zlib at all",
        ))
        .await;
    socket
        .send(packet::encode(
            OP_MESSAGE,
            PROTOVER_BROTLI,
            b"not brotli either",
        ))
        .await;
    socket
        .send(packet::encode(OP_MESSAGE, PROTOVER_JSON, b"{not json"))
        .await;
    socket
        .send(message(json!({"cmd":"SOMETHING_NEW","data":{"x":1}})))
        .await;
    socket.send(message(open_dm("good", "still here"))).await;
    let event = next_event(&mut rig.events).await;
    assert_eq!(event.message_id, "good", "nothing came from the bad frames");
    assert_eq!(rig.adapters.statuses()[0].health, AdapterHealth::Live);
}

#[tokio::test]
async fn a_wrong_identity_code_shows_auth_needed() {
    let rig = rig(open_route, |fake| fake.set(|s| s.start_code = 7007)).await;
    let status = until_health(&rig.adapters, 0, |h| {
        matches!(h, AdapterHealth::AuthNeeded(_))
    })
    .await;
    let AdapterHealth::AuthNeeded(reason) = status.health else {
        unreachable!("matched")
    };
    assert!(
        reason.contains("7007") && reason.contains("/v2/app/start"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_refused_socket_auth_shows_auth_needed() {
    let rig = rig(open_route, |fake| fake.set(|s| s.auth_code = -101)).await;
    let status = until_health(&rig.adapters, 0, |h| {
        matches!(h, AdapterHealth::AuthNeeded(_))
    })
    .await;
    assert_eq!(
        status.health,
        AdapterHealth::AuthNeeded("Bilibili refused the danmaku auth (code -101)".into())
    );
}

#[tokio::test]
async fn a_dropped_socket_reconnects_and_ends_the_old_game_first() {
    let mut rig = rig(open_route, |_| {}).await;
    let socket = rig.fake.next_socket().await;
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    drop(socket);
    let end = rig.fake.next_call("/v2/app/end").await;
    assert_eq!(
        end.body["game_id"], "game-1",
        "the left-over game is ended before a new start"
    );
    rig.fake.next_call("/v2/app/start").await;
    let socket = rig.fake.next_socket().await;
    socket.send(message(open_dm("after", "back"))).await;
    assert_eq!(next_event(&mut rig.events).await.message_id, "after");
}

fn danmu(id: &str, uid: i64, name: &str, text: &str) -> Value {
    let extra = json!({"id_str": id}).to_string();
    json!({"cmd":"DANMU_MSG","info":[[0,1,25,16777215,1700000000000i64,0,0,"",0,0,0,"",0,"{}","{}",{"extra": extra}],text,[uid,name,0,0,0,10000,1,""],[],[],[],0,0]})
}

#[tokio::test]
async fn the_web_route_as_a_guest_is_degraded_and_reads_danmaku() {
    let mut rig = rig(|| web_route(None), |_| {}).await;
    let info = rig
        .fake
        .next_call("/xlive/web-room/v1/index/getDanmuInfo")
        .await;
    assert!(
        info.signed,
        "getDanmuInfo carries a valid WBI signature: {}",
        info.query
    );
    assert!(
        info.query
            .starts_with("id=4639581&type=0&web_location=444.8&wts="),
        "{}",
        info.query
    );
    let socket = rig.fake.next_socket().await;
    assert_eq!(socket.auth["roomid"], 4639581);
    assert_eq!(socket.auth["uid"], 0);
    assert_eq!(socket.auth["key"], "web-token");
    assert_eq!(socket.auth["protover"], 3);
    let status = until_health(&rig.adapters, 0, |h| {
        matches!(h, AdapterHealth::Degraded(_))
    })
    .await;
    let AdapterHealth::Degraded(reason) = status.health else {
        unreachable!("matched")
    };
    assert!(
        reason.contains("BILIBILI_COOKIE"),
        "the reason says what to do: {reason}"
    );
    socket
        .send(packet::encode_compressed(
            PROTOVER_BROTLI,
            &[
                message(danmu("d-1", 0, "观***", "你好")),
                message(json!({"cmd":"ROOM_BLOCK_MSG","data":{"uid":42,"uname":"troll"}})),
            ],
        ))
        .await;
    let dm = next_event(&mut rig.events).await;
    assert_eq!(
        (
            dm.message_id.as_str(),
            dm.user.id.as_str(),
            dm.channel.as_str()
        ),
        ("d-1", "0", "4639581")
    );
    let ban = next_event(&mut rig.events).await;
    assert_eq!(
        (ban.kind, ban.target_id.as_deref()),
        (ChatKind::Ban, Some("42"))
    );
}

#[tokio::test]
async fn the_web_route_with_cookies_logs_in_and_degrades_when_names_get_masked() {
    let mut rig = rig(
        || web_route(Some("buvid3=B3-XYZ; SESSDATA=s; bili_jct=j")),
        |_| {},
    )
    .await;
    let nav = rig.fake.next_call("/x/web-interface/nav").await;
    assert!(
        nav.cookie
            .as_deref()
            .is_some_and(|c| c.contains("buvid3=B3-XYZ")),
        "the cookie is sent"
    );
    let socket = rig.fake.next_socket().await;
    assert_eq!(
        (socket.auth["uid"].clone(), socket.auth["buvid"].clone()),
        (json!(99), json!("B3-XYZ"))
    );
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    socket.send(message(danmu("d-2", 7, "真名", "hi"))).await;
    assert_eq!(next_event(&mut rig.events).await.user.name, "真名");
    socket.send(message(json!({"cmd":"LOG_IN_NOTICE","data":{"notice_msg":"为保护用户隐私，未登录无法查看他人昵称"}}))).await;
    until_health(&rig.adapters, 0, |h| {
        matches!(h, AdapterHealth::Degraded(_))
    })
    .await;
}

#[tokio::test]
async fn risk_control_352_shows_auth_needed() {
    let rig = rig(
        || web_route(None),
        |fake| fake.set(|s| s.danmu_info_code = -352),
    )
    .await;
    let status = until_health(&rig.adapters, 0, |h| {
        matches!(h, AdapterHealth::AuthNeeded(_))
    })
    .await;
    let AdapterHealth::AuthNeeded(reason) = status.health else {
        unreachable!("matched")
    };
    assert!(
        reason.contains("-352") && reason.contains("buvid3"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_room_id_that_is_not_a_number_fails_for_good() {
    let fake = fake_bili::start().await;
    let mut config = BilibiliConfig::new(BilibiliRoute::Web {
        room_id: "my room".into(),
        cookie: None,
    });
    config.api_url = Some(fake.url.clone());
    let (tx, _events) = mpsc::channel(4);
    let adapters = ChatAdapters::start_sources(
        vec![Box::new(BilibiliSource::new(config))],
        tx,
        CancellationToken::new(),
        SupervisorOptions::default(),
    );
    let status = until_health(&adapters, 0, |h| matches!(h, AdapterHealth::Failed(_))).await;
    assert_eq!(
        status.health,
        AdapterHealth::Failed("BILIBILI_ROOM_ID must be a number, got \"my room\"".into())
    );
}

#[tokio::test]
async fn a_short_room_id_is_resolved_to_the_real_one() {
    let mut rig = rig(
        || BilibiliRoute::Web {
            room_id: "21".into(),
            cookie: None,
        },
        |_| {},
    )
    .await;
    let info = rig
        .fake
        .next_call("/xlive/web-room/v1/index/getDanmuInfo")
        .await;
    assert!(info.query.starts_with("id=4639581&"), "{}", info.query);
    let socket = rig.fake.next_socket().await;
    assert_eq!(socket.auth["roomid"], 4639581);
}
