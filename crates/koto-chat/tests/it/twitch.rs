//! Twitch adapter against the loopback fake IRC server (TCP and WebSocket).

use std::time::Duration;

use koto_chat::twitch::{TwitchConfig, TwitchSource};
use koto_chat::{ChatAdapters, SupervisorOptions};
use koto_core::chat::{AdapterHealth, ChatEvent, ChatKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fake_irc::{self, FakeConnection, Transport};
use crate::util::{next_event, until_health};

struct Rig {
    adapters: ChatAdapters,
    events: mpsc::Receiver<ChatEvent>,
    connections: mpsc::Receiver<FakeConnection>,
    _cancel: CancellationToken,
}

async fn rig(transport: Transport, token: Option<&str>) -> Rig {
    let (url, connections) = fake_irc::start(transport).await;
    let mut config = TwitchConfig::new("#Chan");
    config.url = url;
    config.oauth_token = token.map(str::to_owned);
    config.ping_every = Duration::from_secs(20);
    config.stale_after = Duration::from_secs(45);
    let (tx, events) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let options = SupervisorOptions {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..SupervisorOptions::default()
    };
    let adapters = ChatAdapters::start_sources(
        vec![Box::new(TwitchSource::new(config))],
        tx,
        cancel.clone(),
        options,
    );
    Rig {
        adapters,
        events,
        connections,
        _cancel: cancel,
    }
}

const PRIVMSG: &str = "@badges=moderator/1;color=;display-name=Mod\\sOne;emotes=25:6-10;first-msg=0;id=msg-1;mod=1;tmi-sent-ts=1700000000123;user-id=1001 :modone!modone@modone.tmi.twitch.tv PRIVMSG #chan :hello Kappa\r\n";

async fn reads_chat_and_moderation(transport: Transport) {
    let mut rig = rig(transport, None).await;
    let mut connection = fake_irc::next_connection(&mut rig.connections).await;
    let nick = connection.handshake().await;
    assert!(
        nick.starts_with("NICK justinfan")
            && nick["NICK justinfan".len()..]
                .chars()
                .all(|c| c.is_ascii_digit()),
        "anonymous login: {nick}"
    );
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    connection.send(PRIVMSG).await;
    let message = next_event(&mut rig.events).await;
    assert_eq!(
        (message.message_id.as_str(), message.kind),
        ("msg-1", ChatKind::Message)
    );
    assert_eq!(message.channel, "#chan");
    assert_eq!(message.user.name, "Mod One");
    assert!(message.user.roles.moderator);
    assert_eq!(message.text_without_emotes(), "hello");
    // Two lines in one write (one WS frame), then moderation.
    connection.send("@login=modone;target-msg-id=msg-1;tmi-sent-ts=1 :tmi.twitch.tv CLEARMSG #chan :hello Kappa\r\n@target-user-id=1001;tmi-sent-ts=2 :tmi.twitch.tv CLEARCHAT #chan :modone\r\n").await;
    let delete = next_event(&mut rig.events).await;
    assert_eq!(
        (delete.kind, delete.target_id.as_deref()),
        (ChatKind::Delete, Some("msg-1"))
    );
    let ban = next_event(&mut rig.events).await;
    assert_eq!(
        (ban.kind, ban.target_id.as_deref()),
        (ChatKind::Ban, Some("1001"))
    );
}

#[tokio::test]
async fn reads_chat_and_moderation_over_tcp() {
    reads_chat_and_moderation(Transport::Tcp).await;
}

#[tokio::test]
async fn reads_chat_and_moderation_over_websocket() {
    reads_chat_and_moderation(Transport::WebSocket).await;
}

#[tokio::test]
async fn malformed_lines_and_unknown_commands_are_skipped_and_ping_is_answered() {
    let mut rig = rig(Transport::Tcp, None).await;
    let mut connection = fake_irc::next_connection(&mut rig.connections).await;
    connection.handshake().await;
    let oversized = format!("@x={} :a PRIVMSG #chan :big\r\n", "y".repeat(40_000));
    connection.send("\r\n@@@\r\n:only.prefix\r\n@a=b;c\r\nWHATEVER x y :z\r\n@id=;user-id=1 :a!a@a PRIVMSG #chan :no id\r\n").await;
    connection.send(&oversized).await;
    connection.send("\u{ff}\u{fe} PRIVMSG\r\n").await;
    connection.send("PING :tmi.twitch.tv\r\n").await;
    assert_eq!(connection.expect("PONG").await, "PONG :tmi.twitch.tv");
    connection.send(PRIVMSG).await;
    let event = next_event(&mut rig.events).await;
    assert_eq!(
        event.message_id, "msg-1",
        "the first event is the first well-formed message"
    );
    assert_eq!(
        rig.adapters.statuses()[0].health,
        AdapterHealth::Live,
        "bad lines do not change health"
    );
}

#[tokio::test]
async fn reconnect_makes_a_new_connection() {
    let mut rig = rig(Transport::WebSocket, None).await;
    let mut first = fake_irc::next_connection(&mut rig.connections).await;
    first.handshake().await;
    first.send(":tmi.twitch.tv RECONNECT\r\n").await;
    let mut second = fake_irc::next_connection(&mut rig.connections).await;
    second.handshake().await;
    second.send(PRIVMSG).await;
    assert_eq!(
        next_event(&mut rig.events).await.message_id,
        "msg-1",
        "read from the new connection"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_goes_stale_and_the_adapter_reconnects() {
    let mut rig = rig(Transport::Tcp, None).await;
    let mut first = fake_irc::next_connection(&mut rig.connections).await;
    first.handshake().await;
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    // The fake never answers our PINGs nor sends anything: stale after 45 s.
    first.expect("PING :kotodama").await;
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Stale).await;
    let mut second = fake_irc::next_connection(&mut rig.connections).await;
    second.handshake().await;
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    drop(first);
}

#[tokio::test]
async fn a_refused_token_shows_auth_needed() {
    let mut rig = rig(Transport::Tcp, Some("oauth:badtoken")).await;
    let mut connection = fake_irc::next_connection(&mut rig.connections).await;
    assert_eq!(connection.expect("PASS").await, "PASS oauth:badtoken");
    assert_eq!(
        connection.expect("NICK").await,
        "NICK chan",
        "the token's account defaults to the channel"
    );
    connection
        .send(":tmi.twitch.tv NOTICE * :Login authentication failed\r\n")
        .await;
    let status = until_health(&rig.adapters, 0, |h| {
        matches!(h, AdapterHealth::AuthNeeded(_))
    })
    .await;
    assert_eq!(
        status.health,
        AdapterHealth::AuthNeeded("Twitch: Login authentication failed".into())
    );
}

#[tokio::test]
async fn a_server_that_closes_shows_failed_and_is_retried() {
    let mut rig = rig(Transport::Tcp, None).await;
    let first = fake_irc::next_connection(&mut rig.connections).await;
    drop(first);
    let status = until_health(&rig.adapters, 0, |h| matches!(h, AdapterHealth::Failed(_))).await;
    let AdapterHealth::Failed(reason) = status.health else {
        unreachable!("matched Failed")
    };
    assert!(reason.contains("closed"), "{reason}");
    let mut second = fake_irc::next_connection(&mut rig.connections).await;
    second.handshake().await;
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
}

#[tokio::test]
async fn an_oversized_websocket_message_fails_the_connection_and_it_reconnects() {
    let mut rig = rig(Transport::WebSocket, None).await;
    let mut first = fake_irc::next_connection(&mut rig.connections).await;
    first.handshake().await;
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    let huge = format!(
        ":a!a@a PRIVMSG #chan :{}\r\n",
        "x".repeat(koto_chat::MAX_WS_MESSAGE_BYTES + 1)
    );
    first.send(&huge).await;
    let status = until_health(&rig.adapters, 0, |h| matches!(h, AdapterHealth::Failed(_))).await;
    let AdapterHealth::Failed(reason) = status.health else {
        unreachable!("matched Failed")
    };
    assert!(
        reason.to_lowercase().contains("size")
            || reason.contains("too long")
            || reason.contains("big"),
        "{reason}"
    );
    let mut second = fake_irc::next_connection(&mut rig.connections).await;
    second.handshake().await;
    second.send(PRIVMSG).await;
    assert_eq!(next_event(&mut rig.events).await.message_id, "msg-1");
}

#[tokio::test(start_paused = true)]
async fn a_line_split_around_our_ping_arrives_whole() {
    let mut rig = rig(Transport::Tcp, None).await;
    let mut connection = fake_irc::next_connection(&mut rig.connections).await;
    connection.handshake().await;
    until_health(&rig.adapters, 0, |h| *h == AdapterHealth::Live).await;
    let (head, tail) = PRIVMSG.split_at(60);
    connection.send(head).await;
    // The PING timer fires while the read holds half a line.
    connection.expect("PING :kotodama").await;
    connection.send(tail).await;
    let event = next_event(&mut rig.events).await;
    assert_eq!(
        (event.message_id.as_str(), event.text.as_str()),
        ("msg-1", "hello Kappa")
    );
}
