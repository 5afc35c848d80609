//! YouTube live chat with the streamer's API key: the live chat id from `videos.list`
//! (`part=liveStreamingDetails`, REST), then the server-streaming gRPC `StreamList`, resumed with
//! the last page token after any reconnect; super chats, stickers, memberships, deletions and bans
//! mapped. Items already seen are not emitted twice (a resume may repeat a page).
//!
//! It never polls `liveChatMessages.list` (that exhausts the daily quota in hours) and never
//! posts. `YOUTUBE_API_URL` replaces both hosts (REST and gRPC), so one loopback fake serves both.

pub mod grpc;
pub mod proto;

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use http_body_util::BodyExt;
use koto_core::chat::{AdapterHealth, ChatAmount, ChatEvent, ChatKind, ChatRoles, ChatUser};
use prost::Message as _;
use serde_json::Value;

use crate::{ChatSource, SourceContext, SourceError, SourceFuture, now_ms};
use proto::message_type as kind;

pub const REST_URL: &str = "https://www.googleapis.com";
pub const GRPC_URL: &str = "https://youtube.googleapis.com";
/// Ids kept for dedupe across resumes.
const SEEN_CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct YouTubeConfig {
    pub api_key: String,
    pub video_id: String,
    /// Replaces both the REST and the gRPC base URL.
    pub api_url: Option<String>,
    /// The stream sends nothing while chat is quiet; YouTube keeps it open with HTTP/2 pings
    /// only, so a long quiet spell is normal. Past this, reconnect (and resume).
    pub stale_after: Duration,
}

impl std::fmt::Debug for YouTubeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YouTubeConfig")
            .field("video_id", &self.video_id)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

impl YouTubeConfig {
    pub fn new(api_key: &str, video_id: &str) -> YouTubeConfig {
        YouTubeConfig {
            api_key: api_key.trim().to_owned(),
            video_id: video_id.trim().to_owned(),
            api_url: None,
            stale_after: Duration::from_secs(300),
        }
    }
}

pub struct YouTubeSource {
    config: YouTubeConfig,
    client: reqwest::Client,
    live_chat_id: Option<String>,
    page_token: Option<String>,
    seen: VecDeque<String>,
    seen_set: HashSet<String>,
}

impl YouTubeSource {
    pub fn new(config: YouTubeConfig) -> YouTubeSource {
        // gRPC needs HTTP/2; googleapis.com speaks it for REST too, so one client serves both.
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .connect_timeout(Duration::from_secs(10))
            // HTTP/2 pings find a dead connection long before the stale bound.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(20))
            .http2_keep_alive_while_idle(true)
            .build()
            .unwrap_or_default();
        YouTubeSource {
            config,
            client,
            live_chat_id: None,
            page_token: None,
            seen: VecDeque::new(),
            seen_set: HashSet::new(),
        }
    }

    /// The page token the next connection resumes from (for tests and the panel).
    pub fn page_token(&self) -> Option<&str> {
        self.page_token.as_deref()
    }

    fn base<'a>(&'a self, default: &'a str) -> &'a str {
        self.config
            .api_url
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
    }

    fn first_sight(&mut self, id: &str) -> bool {
        if self.seen_set.contains(id) {
            return false;
        }
        self.seen_set.insert(id.to_owned());
        self.seen.push_back(id.to_owned());
        if self.seen.len() > SEEN_CAPACITY
            && let Some(old) = self.seen.pop_front()
        {
            self.seen_set.remove(&old);
        }
        true
    }

    async fn live_chat_id(&self) -> Result<String, SourceError> {
        let url = format!(
            "{}/youtube/v3/videos?part=liveStreamingDetails&id={}",
            self.base(REST_URL),
            self.config.video_id
        );
        let response = self
            .client
            .get(&url)
            .header("x-goog-api-key", &self.config.api_key)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|error| SourceError::Transport(format!("videos.list: {error}")))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let reason = body["error"]["errors"][0]["reason"]
                .as_str()
                .unwrap_or_default();
            let message = body["error"]["message"].as_str().unwrap_or_default();
            let text = format!("YouTube videos.list: HTTP {status} {reason} {message}");
            return Err(match status.as_u16() {
                400 if reason.contains("keyInvalid") || message.contains("API key") => {
                    SourceError::Auth(text)
                }
                401 | 403 if !reason.contains("quota") => SourceError::Auth(text),
                _ => SourceError::Protocol(text),
            });
        }
        let Some(video) = body["items"].get(0) else {
            return Err(SourceError::Config(format!(
                "YOUTUBE_VIDEO_ID {:?}: no such video",
                self.config.video_id
            )));
        };
        video["liveStreamingDetails"]["activeLiveChatId"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                SourceError::Transport(format!(
                    "video {} has no active live chat (not live yet, or ended)",
                    self.config.video_id
                ))
            })
    }

    async fn run(&mut self, ctx: &SourceContext) -> Result<(), SourceError> {
        if self.config.api_key.is_empty() || self.config.video_id.is_empty() {
            return Err(SourceError::Config(
                "YouTube needs YOUTUBE_API_KEY and YOUTUBE_VIDEO_ID".into(),
            ));
        }
        let live_chat_id = match &self.live_chat_id {
            Some(id) => id.clone(),
            None => {
                let id = tokio::select! {
                    biased;
                    _ = ctx.cancel.cancelled() => return Ok(()),
                    id = self.live_chat_id() => id?,
                };
                self.live_chat_id = Some(id.clone());
                id
            }
        };
        let request = proto::LiveChatMessageListRequest {
            live_chat_id: Some(live_chat_id),
            page_token: self.page_token.clone(),
            part: vec!["id".into(), "snippet".into(), "authorDetails".into()],
            profile_image_size: None,
            max_results: None,
            hl: None,
        };
        let url = format!("{}{}", self.base(GRPC_URL), proto::STREAM_LIST_PATH);
        let response = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Ok(()),
            response = self
                .client
                .post(&url)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("x-goog-api-key", &self.config.api_key)
                .body(grpc::frame(&request.encode_to_vec()))
                .send() => response.map_err(|error| SourceError::Transport(format!("StreamList: {error}")))?,
        };
        let http_status = response.status();
        let response: http::Response<reqwest::Body> = response.into();
        // A trailers-only reply (an error before any message) puts the status in the headers.
        if let Some((code, message)) = grpc::status(response.headers())
            && code != 0
        {
            return Err(self.status_error(code, &message));
        }
        if !http_status.is_success() {
            return Err(SourceError::Transport(format!(
                "StreamList: HTTP {http_status}"
            )));
        }
        ctx.set_health(AdapterHealth::Live);
        ctx.heard();
        let mut body = response.into_body();
        let mut deframer = grpc::Deframer::default();
        loop {
            let frame = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Ok(()),
                frame = body.frame() => frame,
            };
            let frame = match frame {
                None => {
                    return Err(SourceError::Transport(
                        "the gRPC stream ended without a status".into(),
                    ));
                }
                Some(Err(error)) => {
                    return Err(SourceError::Transport(format!("StreamList: {error}")));
                }
                Some(Ok(frame)) => frame,
            };
            ctx.heard();
            let frame = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    let Some((code, message)) = frame.trailers_ref().and_then(grpc::status) else {
                        return Err(SourceError::Protocol(
                            "gRPC trailers without grpc-status".into(),
                        ));
                    };
                    if deframer.pending() > 0 {
                        tracing::warn!(
                            bytes = deframer.pending(),
                            "youtube: the stream ended inside a message"
                        );
                    }
                    return match code {
                        // The server closed the call normally: reconnect and resume.
                        0 => Ok(()),
                        _ => Err(self.status_error(code, &message)),
                    };
                }
            };
            deframer.push(&frame);
            loop {
                let message = deframer
                    .next_message()
                    .map_err(|error| SourceError::Protocol(error.to_string()))?;
                let Some(message) = message else { break };
                let page = match proto::LiveChatMessageListResponse::decode(message.as_slice()) {
                    Ok(page) => page,
                    Err(error) => {
                        tracing::warn!(%error, "youtube: skipped a message that is not a LiveChatMessageListResponse");
                        continue;
                    }
                };
                if let Some(token) = page.next_page_token.clone().filter(|t| !t.is_empty()) {
                    self.page_token = Some(token);
                }
                let ended = page.offline_at.as_deref().is_some_and(|at| !at.is_empty());
                for item in &page.items {
                    if item.snippet.as_ref().and_then(|s| s.r#type) == Some(kind::CHAT_ENDED_EVENT)
                    {
                        self.live_chat_id = None;
                        return Err(SourceError::Transport("the live chat ended".into()));
                    }
                    let Some(event) = to_event(item, &self.config.video_id, now_ms()) else {
                        continue;
                    };
                    if !self.first_sight(&event.message_id) {
                        continue;
                    }
                    if !ctx.emit(event).await {
                        return Ok(());
                    }
                }
                if ended {
                    self.live_chat_id = None;
                    return Err(SourceError::Transport("the stream went offline".into()));
                }
            }
        }
    }

    fn status_error(&mut self, code: u32, message: &str) -> SourceError {
        let text = format!("YouTube StreamList: gRPC status {code} {message}");
        match code {
            // UNAUTHENTICATED, PERMISSION_DENIED: the key is wrong or lacks the API.
            16 | 7 => SourceError::Auth(text),
            // NOT_FOUND, FAILED_PRECONDITION: the chat is gone; look the video up again.
            5 | 9 => {
                self.live_chat_id = None;
                SourceError::Protocol(text)
            }
            _ => SourceError::Transport(text),
        }
    }
}

impl ChatSource for YouTubeSource {
    fn platform(&self) -> &'static str {
        "youtube"
    }

    fn channel(&self) -> String {
        self.config.video_id.clone()
    }

    fn stale_after(&self) -> Duration {
        self.config.stale_after
    }

    fn run_once<'a>(&'a mut self, ctx: &'a SourceContext) -> SourceFuture<'a> {
        Box::pin(self.run(ctx))
    }
}

/// Map one item; `None` for what is not chat (tombstones, polls, mode changes, broken items).
pub fn to_event(
    item: &proto::LiveChatMessage,
    video_id: &str,
    received_ms: i64,
) -> Option<ChatEvent> {
    let snippet = item.snippet.as_ref()?;
    let message_id = item.id.clone().filter(|id| !id.is_empty())?;
    let author = item.author_details.clone().unwrap_or_default();
    let owner = author.is_chat_owner.unwrap_or(false);
    let moderator = author.is_chat_moderator.unwrap_or(false);
    let member = author.is_chat_sponsor.unwrap_or(false);
    let mut badges = Vec::new();
    for (has, badge) in [
        (owner, "owner"),
        (moderator, "moderator"),
        (member, "member"),
        (author.is_verified.unwrap_or(false), "verified"),
    ] {
        if has {
            badges.push(badge.to_owned());
        }
    }
    let user = ChatUser {
        id: author
            .channel_id
            .clone()
            .or_else(|| snippet.author_channel_id.clone())
            .unwrap_or_default(),
        name: author.display_name.clone().unwrap_or_default(),
        badges,
        roles: ChatRoles {
            broadcaster: owner,
            moderator,
            subscriber: member,
            ..ChatRoles::default()
        },
    };
    let display = snippet.display_message.clone().unwrap_or_default();
    let (kind, text, amount, target_id) = match snippet.r#type? {
        kind::TEXT_MESSAGE_EVENT => {
            let text = snippet
                .text_message_details
                .as_ref()
                .and_then(|d| d.message_text.clone())
                .unwrap_or(display);
            (ChatKind::Message, text, None, None)
        }
        kind::SUPER_CHAT_EVENT => {
            let details = snippet.super_chat_details.clone().unwrap_or_default();
            let text = details.user_comment.clone().unwrap_or_default();
            (
                ChatKind::Superchat,
                text,
                amount(details.amount_micros, details.currency.as_deref()),
                None,
            )
        }
        kind::SUPER_STICKER_EVENT => {
            let details = snippet.super_sticker_details.clone().unwrap_or_default();
            let text = details
                .super_sticker_metadata
                .as_ref()
                .and_then(|m| m.alt_text.clone())
                .unwrap_or(display);
            (
                ChatKind::Superchat,
                text,
                amount(details.amount_micros, details.currency.as_deref()),
                None,
            )
        }
        kind::NEW_SPONSOR_EVENT => (ChatKind::Sub, display, None, None),
        kind::MEMBER_MILESTONE_CHAT_EVENT => {
            let comment = snippet
                .member_milestone_chat_details
                .as_ref()
                .and_then(|d| d.user_comment.clone())
                .filter(|c| !c.is_empty());
            (ChatKind::Sub, comment.unwrap_or(display), None, None)
        }
        kind::MEMBERSHIP_GIFTING_EVENT => (ChatKind::Gift, display, None, None),
        kind::MESSAGE_DELETED_EVENT => {
            let target = snippet
                .message_deleted_details
                .as_ref()?
                .deleted_message_id
                .clone()?;
            (ChatKind::Delete, String::new(), None, Some(target))
        }
        kind::MESSAGE_RETRACTED_EVENT => {
            let target = snippet
                .message_retracted_details
                .as_ref()?
                .retracted_message_id
                .clone()?;
            (ChatKind::Delete, String::new(), None, Some(target))
        }
        kind::USER_BANNED_EVENT => {
            let banned = snippet
                .user_banned_details
                .as_ref()?
                .banned_user_details
                .as_ref()?;
            (
                ChatKind::Ban,
                String::new(),
                None,
                Some(banned.channel_id.clone()?),
            )
        }
        _ => return None,
    };
    Some(ChatEvent {
        platform: "youtube".into(),
        channel: video_id.to_owned(),
        message_id,
        user,
        kind,
        text,
        emotes: vec![],
        amount,
        target_id,
        platform_time_ms: snippet.published_at.as_deref().and_then(rfc3339_ms),
        received_ms,
    })
}

/// Micros of a currency → its minor units (JPY has none, KWD three, most two).
fn amount(micros: Option<u64>, currency: Option<&str>) -> Option<ChatAmount> {
    let micros = i64::try_from(micros?).ok()?;
    let currency = currency?.to_ascii_uppercase();
    let exponent = match currency.as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    };
    Some(ChatAmount {
        minor_units: micros / 10i64.pow(6 - exponent),
        currency,
    })
}

/// `2023-05-25T20:08:08.479833+00:00` or `…Z` → ms since the epoch.
fn rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    if bytes.len() < 20 || bytes.get(4) != Some(&b'-') || bytes.get(10) != Some(&b'T') {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = text.get(19..)?;
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.chars().take_while(char::is_ascii_digit).count();
        let padded = format!("{:0<3}", fraction.get(..digits.min(3))?);
        millis = padded.parse::<i64>().ok()?;
        rest = fraction.get(digits..)?;
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second - offset_s) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps_parse_with_offsets_and_fractions() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2023-05-25T20:08:08.479833+00:00"),
            Some(1_685_045_288_479)
        );
        assert_eq!(
            rfc3339_ms("2023-05-26T05:08:08.4+09:00"),
            Some(1_685_045_288_400)
        );
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn amounts_use_the_currency_exponent() {
        assert_eq!(
            amount(Some(1_750_000), Some("USD")).map(|a| a.minor_units),
            Some(175)
        );
        assert_eq!(
            amount(Some(500_000_000), Some("JPY")).map(|a| a.minor_units),
            Some(500)
        );
        assert_eq!(
            amount(Some(1_500_000), Some("KWD")).map(|a| a.minor_units),
            Some(1500)
        );
        assert_eq!(amount(None, Some("USD")), None);
    }

    proptest! {
        #[test]
        fn timestamp_parsing_never_panics(text in ".{0,40}") {
            let _ = rfc3339_ms(&text);
        }

        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(page) = proto::LiveChatMessageListResponse::decode(bytes.as_slice()) {
                for item in &page.items {
                    let _ = to_event(item, "v", 0);
                }
            }
        }
    }
}
