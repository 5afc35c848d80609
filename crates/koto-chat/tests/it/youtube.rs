//! YouTube adapter against the loopback fake (REST videos.list + gRPC StreamList over h2c).

use std::time::Duration;

use koto_chat::youtube::proto::{
    self, LiveChatMessage, LiveChatMessageAuthorDetails, LiveChatMessageListResponse,
    LiveChatMessageSnippet, message_type,
};
use koto_chat::youtube::{YouTubeConfig, YouTubeSource};
use koto_chat::{ChatAdapters, SupervisorOptions};
use koto_core::chat::{AdapterHealth, ChatAmount, ChatEvent, ChatKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fake_youtube::{self, API_KEY, FakeYouTube, Send, Videos};
use crate::util::{next_event, until_health};

struct Rig {
    adapters: ChatAdapters,
    events: mpsc::Receiver<ChatEvent>,
    fake: FakeYouTube,
}

async fn rig(videos: Videos, stale_after: Duration) -> Rig {
    let fake = fake_youtube::start(videos).await;
    let mut config = YouTubeConfig::new(API_KEY, "video-1");
    config.api_url = Some(fake.url.clone());
    config.stale_after = stale_after;
    let (tx, events) = mpsc::channel(64);
    let options = SupervisorOptions {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        ..SupervisorOptions::default()
    };
    let adapters = ChatAdapters::start_sources(
        vec![Box::new(YouTubeSource::new(config))],
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

fn item(id: &str, kind: i32, fill: impl FnOnce(&mut LiveChatMessageSnippet)) -> LiveChatMessage {
    let mut snippet = LiveChatMessageSnippet {
        r#type: Some(kind),
        published_at: Some("2026-12-01T12:00:00.250Z".into()),
        display_message: Some(format!("display {id}")),
        ..Default::default()
    };
    fill(&mut snippet);
    LiveChatMessage {
        id: Some(id.into()),
        snippet: Some(snippet),
        author_details: Some(LiveChatMessageAuthorDetails {
            channel_id: Some("UC-viewer".into()),
            display_name: Some("Viewer".into()),
            is_chat_sponsor: Some(true),
            ..Default::default()
        }),
    }
}

fn text(id: &str, text: &str) -> LiveChatMessage {
    item(id, message_type::TEXT_MESSAGE_EVENT, |s| {
        s.text_message_details = Some(proto::TextMessageDetails {
            message_text: Some(text.into()),
        });
    })
}

fn page(token: &str, items: Vec<LiveChatMessage>) -> Send {
    Send::Page(LiveChatMessageListResponse {
        next_page_token: Some(token.into()),
        items,
        offline_at: None,
    })
}

#[tokio::test]
async fn streams_every_kind_and_resumes_with_the_page_token() {
    let mut rig = rig(Videos::Live("chat-1"), Duration::from_secs(300)).await;
    let stream = rig.fake.next_stream().await;
    assert_eq!(stream.api_key, API_KEY);
    assert_eq!(
        stream.request.live_chat_id.as_deref(),
        Some("chat-1"),
        "the chat id came from videos.list"
    );
    assert_eq!(stream.request.page_token, None);
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    let items = vec![
        text("t1", "hello"),
        item("sc1", message_type::SUPER_CHAT_EVENT, |s| {
            s.super_chat_details = Some(proto::SuperChatDetails {
                amount_micros: Some(5_000_000),
                currency: Some("USD".into()),
                user_comment: Some("great stream?".into()),
                ..Default::default()
            });
        }),
        item("st1", message_type::SUPER_STICKER_EVENT, |s| {
            s.super_sticker_details = Some(proto::SuperStickerDetails {
                amount_micros: Some(200_000_000),
                currency: Some("JPY".into()),
                super_sticker_metadata: Some(proto::SuperStickerMetadata {
                    alt_text: Some("a waving cat".into()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }),
        item("m1", message_type::NEW_SPONSOR_EVENT, |_| {}),
        item("g1", message_type::MEMBERSHIP_GIFTING_EVENT, |_| {}),
        item("tomb", message_type::TOMBSTONE, |_| {}),
        item("d1", message_type::MESSAGE_DELETED_EVENT, |s| {
            s.message_deleted_details = Some(proto::MessageDeletedDetails {
                deleted_message_id: Some("t1".into()),
            });
        }),
        item("b1", message_type::USER_BANNED_EVENT, |s| {
            s.user_banned_details = Some(proto::UserBannedDetails {
                banned_user_details: Some(proto::ChannelProfileDetails {
                    channel_id: Some("UC-troll".into()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }),
    ];
    stream.send(page("token-1", items)).await;
    let mut got = Vec::new();
    for _ in 0..7 {
        let e = next_event(&mut rig.events).await;
        got.push((
            e.message_id.clone(),
            e.kind,
            e.text.clone(),
            e.amount.clone(),
            e.target_id.clone(),
        ));
    }
    let usd = |minor_units| {
        Some(ChatAmount {
            minor_units,
            currency: "USD".into(),
        })
    };
    let jpy = |minor_units| {
        Some(ChatAmount {
            minor_units,
            currency: "JPY".into(),
        })
    };
    assert_eq!(
        got,
        vec![
            ("t1".into(), ChatKind::Message, "hello".into(), None, None),
            (
                "sc1".into(),
                ChatKind::Superchat,
                "great stream?".into(),
                usd(500),
                None
            ),
            (
                "st1".into(),
                ChatKind::Superchat,
                "a waving cat".into(),
                jpy(200),
                None
            ),
            ("m1".into(), ChatKind::Sub, "display m1".into(), None, None),
            ("g1".into(), ChatKind::Gift, "display g1".into(), None, None),
            (
                "d1".into(),
                ChatKind::Delete,
                String::new(),
                None,
                Some("t1".into())
            ),
            (
                "b1".into(),
                ChatKind::Ban,
                String::new(),
                None,
                Some("UC-troll".into())
            ),
        ],
        "the tombstone is not an event"
    );
    // The server ends the call normally; the next call resumes from the token, and an item the
    // resumed page repeats is not emitted twice.
    stream.send(Send::End(0, "")).await;
    let resumed = rig.fake.next_stream().await;
    assert_eq!(resumed.request.page_token.as_deref(), Some("token-1"));
    resumed
        .send(page(
            "token-2",
            vec![text("b1", "dup"), text("t2", "again")],
        ))
        .await;
    let next = next_event(&mut rig.events).await;
    assert_eq!(next.message_id, "t2", "the repeated item was dropped");
    assert_eq!(next.platform_time_ms, Some(1_796_126_400_250));
    assert!(next.user.roles.subscriber && next.user.badges.contains(&"member".to_owned()));
}

#[tokio::test]
async fn a_stream_error_or_garbage_reconnects_and_resumes() {
    let mut rig = rig(Videos::Live("chat-1"), Duration::from_secs(300)).await;
    let first = rig.fake.next_stream().await;
    first.send(page("token-a", vec![text("a1", "one")])).await;
    next_event(&mut rig.events).await;
    // Bytes that are a gRPC frame but not protobuf, then an UNAVAILABLE status.
    first
        .send(Send::Raw(koto_chat::youtube::grpc::frame(&[
            0xff, 0xff, 0xff,
        ])))
        .await;
    first.send(Send::End(14, "backend unavailable")).await;
    let status = until_health(&rig.adapters, 0, |h| matches!(h, AdapterHealth::Failed(_))).await;
    let AdapterHealth::Failed(reason) = status.health else {
        unreachable!("matched")
    };
    assert!(
        reason.contains("14") && reason.contains("backend unavailable"),
        "{reason}"
    );
    let second = rig.fake.next_stream().await;
    assert_eq!(second.request.page_token.as_deref(), Some("token-a"));
    // A reset stream (a dying server) also reconnects.
    drop(second);
    let third = rig.fake.next_stream().await;
    third.send(page("token-b", vec![text("a2", "two")])).await;
    assert_eq!(next_event(&mut rig.events).await.message_id, "a2");
}

#[tokio::test]
async fn a_refused_key_shows_auth_needed() {
    let rig = rig(Videos::BadKey, Duration::from_secs(300)).await;
    let status = until_health(&rig.adapters, 0, |h| {
        matches!(h, AdapterHealth::AuthNeeded(_))
    })
    .await;
    let AdapterHealth::AuthNeeded(reason) = status.health else {
        unreachable!("matched")
    };
    assert!(reason.contains("API key not valid"), "{reason}");
}

#[tokio::test]
async fn unauthenticated_on_the_stream_shows_auth_needed() {
    let fake_rig = rig(Videos::Live("chat-1"), Duration::from_secs(300)).await;
    fake_rig
        .fake
        .set(|s| s.refuse_stream = Some((16, "request had invalid credentials")));
    let status = until_health(&fake_rig.adapters, 0, |h| {
        matches!(h, AdapterHealth::AuthNeeded(_))
    })
    .await;
    let AdapterHealth::AuthNeeded(reason) = status.health else {
        unreachable!("matched")
    };
    assert!(reason.contains("status 16"), "{reason}");
}

#[tokio::test]
async fn a_video_that_is_not_live_is_retried() {
    let mut rig = rig(Videos::NotLive, Duration::from_secs(300)).await;
    let status = until_health(&rig.adapters, 0, |h| matches!(h, AdapterHealth::Failed(_))).await;
    let AdapterHealth::Failed(reason) = status.health else {
        unreachable!("matched")
    };
    assert!(reason.contains("no active live chat"), "{reason}");
    rig.fake.set(|s| s.videos = Videos::Live("chat-2"));
    let stream = rig.fake.next_stream().await;
    assert_eq!(
        stream.request.live_chat_id.as_deref(),
        Some("chat-2"),
        "looked the video up again"
    );
    assert!(rig.fake.video_calls.try_recv().is_ok());
}

#[tokio::test]
async fn a_silent_stream_goes_stale_and_reconnects() {
    let mut rig = rig(Videos::Live("chat-1"), Duration::from_millis(300)).await;
    let first = rig.fake.next_stream().await;
    first.send(page("token-s", vec![])).await;
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Stale).await;
    let second = rig.fake.next_stream().await;
    assert_eq!(second.request.page_token.as_deref(), Some("token-s"));
    drop(first);
}
