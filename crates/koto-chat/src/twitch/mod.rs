//! Twitch chat over IRC: anonymous read-only login (`justinfan<digits>`) unless an OAuth token is
//! configured, tags and commands capabilities, PING/PONG both ways, RECONNECT, and the mapping of
//! PRIVMSG / USERNOTICE / CLEARMSG / CLEARCHAT to [`ChatEvent`]s.
//!
//! It never sends chat (read-only even with a token) and does not use EventSub.

pub mod connection;
pub mod irc;

use std::time::Duration;

use koto_core::chat::{
    AdapterHealth, ChatAmount, ChatEmote, ChatEvent, ChatKind, ChatRoles, ChatUser,
};
use rand::Rng;

use crate::{ChatSource, SourceContext, SourceError, SourceFuture, now_ms};
use connection::{IrcConnection, Read};
use irc::Line;

/// The real host (WebSocket over TLS); `irc://irc.chat.twitch.tv:6667` is the plain-TCP one.
pub const DEFAULT_IRC_URL: &str = "wss://irc-ws.chat.twitch.tv:443";

#[derive(Clone)]
pub struct TwitchConfig {
    /// Without the `#`, any case (IRC channels are lowercase).
    pub channel: String,
    pub url: String,
    /// With or without the `oauth:` prefix. `None`: anonymous, read-only.
    pub oauth_token: Option<String>,
    /// The account's login for the token; default: the channel (the streamer's own account).
    pub nick: Option<String>,
    /// We PING this often; the PONG counts as a heartbeat, so a quiet channel is not stale.
    pub ping_every: Duration,
    pub stale_after: Duration,
}

impl std::fmt::Debug for TwitchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token never reaches a log.
        f.debug_struct("TwitchConfig")
            .field("channel", &self.channel)
            .field("url", &self.url)
            .field("oauth_token", &self.oauth_token.as_ref().map(|_| "***"))
            .field("nick", &self.nick)
            .finish_non_exhaustive()
    }
}

impl TwitchConfig {
    pub fn new(channel: &str) -> TwitchConfig {
        TwitchConfig {
            channel: channel.trim().trim_start_matches('#').to_ascii_lowercase(),
            url: DEFAULT_IRC_URL.to_owned(),
            oauth_token: None,
            nick: None,
            ping_every: Duration::from_secs(60),
            stale_after: Duration::from_secs(150),
        }
    }
}

pub struct TwitchSource {
    config: TwitchConfig,
}

impl TwitchSource {
    pub fn new(config: TwitchConfig) -> TwitchSource {
        TwitchSource { config }
    }
}

impl ChatSource for TwitchSource {
    fn platform(&self) -> &'static str {
        "twitch"
    }

    fn channel(&self) -> String {
        format!("#{}", self.config.channel)
    }

    fn stale_after(&self) -> Duration {
        self.config.stale_after
    }

    fn run_once<'a>(&'a mut self, ctx: &'a SourceContext) -> SourceFuture<'a> {
        Box::pin(run(&self.config, ctx))
    }
}

async fn run(config: &TwitchConfig, ctx: &SourceContext) -> Result<(), SourceError> {
    if config.channel.is_empty() {
        return Err(SourceError::Config("TWITCH_CHANNEL is empty".into()));
    }
    let mut connection = tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => return Ok(()),
        connected = IrcConnection::connect(&config.url) => connected?,
    };
    connection
        .send("CAP REQ :twitch.tv/tags twitch.tv/commands")
        .await?;
    match &config.oauth_token {
        Some(token) => {
            let token = token.trim().trim_start_matches("oauth:");
            let nick = config.nick.as_deref().unwrap_or(&config.channel);
            connection.send(&format!("PASS oauth:{token}")).await?;
            connection
                .send(&format!("NICK {}", nick.to_ascii_lowercase()))
                .await?;
        }
        None => {
            let digits: u32 = rand::rng().random_range(10_000..100_000_000);
            connection.send(&format!("NICK justinfan{digits}")).await?;
        }
    }
    connection
        .send(&format!("JOIN #{}", config.channel))
        .await?;
    let channel = format!("#{}", config.channel);
    // An interval of zero would panic; a config never gives one, but the type allows it.
    let ping_every = config.ping_every.max(Duration::from_millis(10));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        let read = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Ok(()),
            _ = ping.tick() => {
                connection.send("PING :kotodama").await?;
                continue;
            }
            read = connection.read() => read?,
        };
        let text = match read {
            Read::Closed => {
                return Err(SourceError::Transport(
                    "the server closed the connection".into(),
                ));
            }
            Read::Oversized => {
                tracing::warn!(channel, "twitch: skipped an oversized IRC line");
                ctx.heard();
                continue;
            }
            Read::Line(text) => text,
        };
        ctx.heard();
        let Some(line) = irc::parse(&text) else {
            continue;
        };
        match line.command.as_str() {
            "PING" => {
                let token = line.param(0).unwrap_or("tmi.twitch.tv");
                connection.send(&format!("PONG :{token}")).await?;
            }
            "RECONNECT" => {
                tracing::info!(channel, "twitch asked us to reconnect");
                return Ok(());
            }
            "NOTICE" => {
                let text = line.param(1).unwrap_or_default();
                if is_login_failure(&line) {
                    return Err(SourceError::Auth(format!("Twitch: {text}")));
                }
                tracing::info!(channel, notice = text, "twitch notice");
            }
            // Joined (our own JOIN echoed back, or the channel's state): we are reading.
            "ROOMSTATE" | "JOIN" | "366" => ctx.set_health(AdapterHealth::Live),
            _ => {
                if let Some(event) = to_event(&line, &channel, now_ms())
                    && !ctx.emit(event).await
                {
                    return Ok(());
                }
            }
        }
    }
}

/// The NOTICEs Twitch sends before closing on a bad `PASS` (they come without a channel).
fn is_login_failure(line: &Line) -> bool {
    let text = line.param(1).unwrap_or_default().to_ascii_lowercase();
    text.contains("login authentication failed")
        || text.contains("improperly formatted auth")
        || text.contains("invalid nick")
}

/// Map one line to an event; `None` for what is not chat (and for malformed chat lines).
pub fn to_event(line: &Line, channel: &str, received_ms: i64) -> Option<ChatEvent> {
    let platform_time_ms = line
        .tag("tmi-sent-ts")
        .and_then(|ts| ts.parse::<i64>().ok());
    let base = |message_id: String, user: ChatUser, kind: ChatKind, text: String| ChatEvent {
        platform: "twitch".into(),
        channel: channel.to_owned(),
        message_id,
        user,
        kind,
        text,
        emotes: vec![],
        amount: None,
        target_id: None,
        platform_time_ms,
        received_ms,
    };
    match line.command.as_str() {
        "PRIVMSG" => {
            let raw = line.param(1)?;
            // `/me` arrives as CTCP ACTION.
            let text = raw
                .strip_prefix("\u{1}ACTION ")
                .map(|t| t.trim_end_matches('\u{1}'))
                .unwrap_or(raw)
                .to_owned();
            let message_id = line.tag_nonempty("id")?.to_owned();
            let bits = line
                .tag("bits")
                .and_then(|b| b.parse::<i64>().ok())
                .filter(|b| *b > 0);
            let kind = if line.tag_nonempty("custom-reward-id").is_some() {
                ChatKind::Redemption
            } else if bits.is_some() {
                ChatKind::Superchat
            } else {
                ChatKind::Message
            };
            let emotes = line
                .tag("emotes")
                .map(|t| emotes(t, &text))
                .unwrap_or_default();
            let mut event = base(message_id, user(line), kind, text);
            event.emotes = emotes;
            event.amount = bits.map(|bits| ChatAmount {
                minor_units: bits,
                currency: "bits".into(),
            });
            Some(event)
        }
        "USERNOTICE" => {
            let kind = match line.tag("msg-id")? {
                "sub" | "resub" => ChatKind::Sub,
                "subgift" | "submysterygift" | "anonsubgift" | "anonsubmysterygift" => {
                    ChatKind::Gift
                }
                "raid" => ChatKind::Raid,
                _ => return None,
            };
            let text = line
                .param(1)
                .or_else(|| line.tag_nonempty("system-msg"))
                .unwrap_or_default()
                .to_owned();
            let message_id = line.tag_nonempty("id")?.to_owned();
            Some(base(message_id, user(line), kind, text))
        }
        "CLEARMSG" => {
            let target = line.tag_nonempty("target-msg-id")?.to_owned();
            let user = ChatUser {
                name: line.tag("login").unwrap_or_default().to_owned(),
                ..ChatUser::default()
            };
            let mut event = base(
                format!("clearmsg:{target}"),
                user,
                ChatKind::Delete,
                String::new(),
            );
            event.target_id = Some(target);
            Some(event)
        }
        "CLEARCHAT" => {
            // Without a target the whole chat was cleared: nobody in particular to retract.
            let target = line.tag_nonempty("target-user-id")?.to_owned();
            let user = ChatUser {
                id: target.clone(),
                name: line.param(1).unwrap_or_default().to_owned(),
                ..ChatUser::default()
            };
            let stamp = platform_time_ms.unwrap_or(received_ms);
            let mut event = base(
                format!("clearchat:{target}:{stamp}"),
                user,
                ChatKind::Ban,
                String::new(),
            );
            event.target_id = Some(target);
            Some(event)
        }
        _ => None,
    }
}

fn user(line: &Line) -> ChatUser {
    let badges: Vec<String> = line
        .tag("badges")
        .unwrap_or_default()
        .split(',')
        .filter(|badge| !badge.is_empty())
        .map(str::to_owned)
        .collect();
    let has_badge = |name: &str| {
        badges
            .iter()
            .any(|badge| badge.split('/').next() == Some(name))
    };
    let flag = |tag: &str| line.tag(tag) == Some("1");
    let roles = ChatRoles {
        broadcaster: has_badge("broadcaster"),
        moderator: flag("mod") || has_badge("moderator"),
        subscriber: flag("subscriber") || has_badge("subscriber") || has_badge("founder"),
        vip: flag("vip") || has_badge("vip"),
        first_message: flag("first-msg"),
    };
    let name = line
        .tag_nonempty("display-name")
        .or_else(|| line.tag_nonempty("login"))
        .or_else(|| line.nick())
        .unwrap_or_default()
        .to_owned();
    ChatUser {
        id: line.tag("user-id").unwrap_or_default().to_owned(),
        name,
        badges,
        roles,
    }
}

/// `25:0-4,12-16/1902:6-10` → emotes in chars, end exclusive. Twitch's ranges are inclusive and
/// count code points; ranges outside the text are dropped.
fn emotes(tag: &str, text: &str) -> Vec<ChatEmote> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    for emote in tag.split('/') {
        let Some((_id, ranges)) = emote.split_once(':') else {
            continue;
        };
        for range in ranges.split(',') {
            let Some((start, end)) = range.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end)) = (start.parse::<usize>(), end.parse::<usize>()) else {
                continue;
            };
            if start > end || end >= chars.len() {
                continue;
            }
            out.push(ChatEmote {
                name: chars[start..=end].iter().collect(),
                start,
                end: end + 1,
            });
        }
    }
    out.sort_by_key(|emote| emote.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(text: &str) -> Option<ChatEvent> {
        to_event(&irc::parse(text)?, "#chan", 1)
    }

    #[test]
    fn a_privmsg_maps_badges_roles_emotes_and_time() {
        let e = event("@badges=subscriber/12,vip/1;emotes=25:0-4,8-12;first-msg=1;display-name=Ann;user-id=42;id=m1;tmi-sent-ts=1700000000000 :ann!ann@ann PRIVMSG #chan :Kappa 你 Kappa").unwrap_or_else(|| panic!("a privmsg is an event"));
        assert_eq!(e.kind, ChatKind::Message);
        assert_eq!(e.user.id, "42");
        assert_eq!(e.user.name, "Ann");
        assert_eq!(e.user.badges, vec!["subscriber/12", "vip/1"]);
        assert!(e.user.roles.subscriber && e.user.roles.vip && e.user.roles.first_message);
        assert!(!e.user.roles.moderator);
        assert_eq!(e.emotes.len(), 2);
        assert_eq!((e.emotes[1].start, e.emotes[1].end), (8, 13));
        assert_eq!(e.emotes[1].name, "Kappa");
        assert_eq!(e.text_without_emotes(), "你");
        assert_eq!(e.platform_time_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn bits_are_a_paid_message_and_rewards_a_redemption() {
        let cheer = event("@bits=100;id=c1 :a!a@a PRIVMSG #chan :cheer100 hi")
            .unwrap_or_else(|| panic!("cheer"));
        assert_eq!(cheer.kind, ChatKind::Superchat);
        assert_eq!(
            cheer.amount,
            Some(ChatAmount {
                minor_units: 100,
                currency: "bits".into()
            })
        );
        let reward = event("@custom-reward-id=r-1;id=r1 :a!a@a PRIVMSG #chan :play a song")
            .unwrap_or_else(|| panic!("reward"));
        assert_eq!(reward.kind, ChatKind::Redemption);
    }

    #[test]
    fn emote_ranges_outside_the_text_are_dropped() {
        assert!(emotes("1:0-99,5-2,x-y/2", "short").is_empty());
    }

    #[test]
    fn moderation_lines_carry_their_targets() {
        let delete = event(
            "@login=bob;target-msg-id=m9;tmi-sent-ts=5 :tmi.twitch.tv CLEARMSG #chan :bad words",
        )
        .unwrap_or_else(|| panic!("clearmsg"));
        assert_eq!(
            (delete.kind, delete.target_id.as_deref()),
            (ChatKind::Delete, Some("m9"))
        );
        let ban = event(
            "@ban-duration=600;target-user-id=77;tmi-sent-ts=6 :tmi.twitch.tv CLEARCHAT #chan :bob",
        )
        .unwrap_or_else(|| panic!("clearchat"));
        assert_eq!(
            (ban.kind, ban.target_id.as_deref()),
            (ChatKind::Ban, Some("77"))
        );
        assert_eq!(
            event(":tmi.twitch.tv CLEARCHAT #chan"),
            None,
            "a whole-chat clear names nobody"
        );
    }

    #[test]
    fn usernotices_map_to_sub_gift_raid() {
        let kinds: Vec<Option<ChatKind>> = ["resub", "subgift", "raid", "bitsbadgetier"]
            .iter()
            .map(|id| {
                event(&format!(
                    "@msg-id={id};id=u-{id};system-msg=x\\sy :tmi.twitch.tv USERNOTICE #chan"
                ))
                .map(|e| e.kind)
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                Some(ChatKind::Sub),
                Some(ChatKind::Gift),
                Some(ChatKind::Raid),
                None
            ]
        );
        let raid =
            event("@msg-id=raid;id=u1;system-msg=5\\sraiders :tmi.twitch.tv USERNOTICE #chan");
        assert_eq!(raid.map(|e| e.text), Some("5 raiders".to_owned()));
    }

    proptest! {
        #[test]
        fn mapping_any_line_never_panics(tags in "[a-z=;,:/0-9\\-]{0,80}", command in "(PRIVMSG|USERNOTICE|CLEARMSG|CLEARCHAT|X)", text in ".{0,40}") {
            let _ = event(&format!("@{tags} :a!a@a {command} #chan :{text}"));
        }
    }
}
