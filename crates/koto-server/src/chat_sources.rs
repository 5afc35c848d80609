//! The live chat adapters from config: which of Twitch, YouTube and Bilibili to run (the
//! `twitch_*`, `youtube_*`, `bilibili_*` keys, validated with the key named in the error), and a
//! handle that starts them on a given event sender and shows their statuses on `/health`.
//!
//! It does not consume the events: the queue's intake owns the receiver it passes to
//! [`ChatSources::start`].

use std::sync::{Arc, Mutex};

use koto_chat::bilibili::{BilibiliConfig, BilibiliRoute, BilibiliSource};
use koto_chat::twitch::{TwitchConfig, TwitchSource};
use koto_chat::youtube::{YouTubeConfig, YouTubeSource};
use koto_chat::{AdapterStatus, ChatAdapters, ChatSource, SupervisorOptions};
use koto_core::chat::ChatEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, RawConfig};

/// The adapters the config asks for (each `None` when its keys are unset).
#[derive(Debug, Clone, Default)]
pub struct ChatSourcesConfig {
    pub twitch: Option<TwitchConfig>,
    pub youtube: Option<YouTubeConfig>,
    pub bilibili: Option<BilibiliConfig>,
}

fn invalid(raw: &RawConfig, key: &'static str, reason: &str) -> ConfigError {
    raw.invalid(key, reason)
}

fn text(raw: &RawConfig, key: &str) -> Option<String> {
    raw.value(key)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

fn base_url(raw: &RawConfig, key: &'static str) -> Result<Option<String>, ConfigError> {
    match text(raw, key) {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => Ok(Some(url)),
        Some(_) => Err(invalid(raw, key, "expected an http:// or https:// URL")),
        None => Ok(None),
    }
}

impl ChatSourcesConfig {
    pub fn from_raw(raw: &RawConfig) -> Result<ChatSourcesConfig, ConfigError> {
        Ok(ChatSourcesConfig {
            twitch: twitch(raw)?,
            youtube: youtube(raw)?,
            bilibili: bilibili(raw)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.twitch.is_none() && self.youtube.is_none() && self.bilibili.is_none()
    }

    /// One source per configured platform.
    pub fn sources(&self) -> Vec<Box<dyn ChatSource>> {
        let mut sources: Vec<Box<dyn ChatSource>> = Vec::new();
        if let Some(config) = &self.twitch {
            sources.push(Box::new(TwitchSource::new(config.clone())));
        }
        if let Some(config) = &self.youtube {
            sources.push(Box::new(YouTubeSource::new(config.clone())));
        }
        if let Some(config) = &self.bilibili {
            sources.push(Box::new(BilibiliSource::new(config.clone())));
        }
        sources
    }
}

fn twitch(raw: &RawConfig) -> Result<Option<TwitchConfig>, ConfigError> {
    let Some(channel) = text(raw, "twitch_channel") else {
        return Ok(None);
    };
    let mut config = TwitchConfig::new(&channel);
    if config.channel.is_empty()
        || !config
            .channel
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(invalid(
            raw,
            "twitch_channel",
            "expected a Twitch login (letters, digits, _)",
        ));
    }
    if let Some(url) = text(raw, "twitch_irc_url") {
        if !(url.starts_with("irc://") || url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(invalid(
                raw,
                "twitch_irc_url",
                "expected irc://host:port, ws://… or wss://…",
            ));
        }
        config.url = url;
    }
    config.oauth_token = text(raw, "twitch_oauth_token");
    config.nick = text(raw, "twitch_nick");
    Ok(Some(config))
}

fn youtube(raw: &RawConfig) -> Result<Option<YouTubeConfig>, ConfigError> {
    let (key, video) = (text(raw, "youtube_api_key"), text(raw, "youtube_video_id"));
    if key.is_none() && video.is_none() {
        return Ok(None);
    }
    // Half a pair still makes an adapter: it shows `failed` naming the missing key, so the
    // settings page can save one key at a time.
    let mut config = YouTubeConfig::new(&key.unwrap_or_default(), &video.unwrap_or_default());
    config.api_url = base_url(raw, "youtube_api_url")?;
    Ok(Some(config))
}

fn bilibili(raw: &RawConfig) -> Result<Option<BilibiliConfig>, ConfigError> {
    let route = if let Some(identity_code) = text(raw, "bilibili_identity_code") {
        // Missing parts show as the adapter's `failed` reason (see youtube above); 0 = no id.
        let app_id = match text(raw, "bilibili_app_id") {
            Some(id) => id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                invalid(raw, "bilibili_app_id", "expected the project id, a number")
            })?,
            None => 0,
        };
        BilibiliRoute::Open {
            identity_code,
            app_id,
            access_key_id: text(raw, "bilibili_app_key").unwrap_or_default(),
            access_key_secret: text(raw, "bilibili_app_secret").unwrap_or_default(),
        }
    } else if let Some(room_id) = text(raw, "bilibili_room_id") {
        if !room_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(raw, "bilibili_room_id", "expected the room number"));
        }
        BilibiliRoute::Web {
            room_id,
            cookie: text(raw, "bilibili_cookie"),
        }
    } else {
        return Ok(None);
    };
    let mut config = BilibiliConfig::new(route);
    config.api_url = base_url(raw, "bilibili_api_url")?;
    Ok(Some(config))
}

/// The app's chat adapters: configured at start, running once [`ChatSources::start`] gave
/// them a sender. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ChatSources {
    config: Arc<ChatSourcesConfig>,
    running: Arc<Mutex<Option<ChatAdapters>>>,
}

impl ChatSources {
    pub fn new(config: ChatSourcesConfig) -> ChatSources {
        ChatSources {
            config: Arc::new(config),
            running: Arc::default(),
        }
    }

    /// Start every configured adapter, sending to `out`, stopped by `cancel`. Returns how many
    /// started (0 when none is configured or they already run).
    pub fn start(&self, out: mpsc::Sender<ChatEvent>, cancel: CancellationToken) -> usize {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.is_some() || self.config.is_empty() {
            return 0;
        }
        let sources = self.config.sources();
        let started = sources.len();
        *running = Some(ChatAdapters::start_sources(
            sources,
            out,
            cancel,
            SupervisorOptions::default(),
        ));
        started
    }

    /// Each running adapter's health, for `/health` and the panel.
    pub fn statuses(&self) -> Vec<AdapterStatus> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(ChatAdapters::statuses)
            .unwrap_or_default()
    }

    /// Stop the adapters and wait for them (each says goodbye within its grace).
    pub async fn shutdown(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(adapters) = running {
            adapters.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::is_secret;

    fn build(env: &[(&str, &str)]) -> Result<crate::config::Config, ConfigError> {
        let mut raw = RawConfig::default();
        raw.merge_env(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        });
        raw.build()
    }

    fn error_text(env: &[(&str, &str)]) -> String {
        match build(env) {
            Ok(_) => panic!("{env:?} should be refused"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn nothing_configured_runs_nothing() {
        let config = build(&[]).map(|c| c.chat_sources.is_empty());
        assert_eq!(config.ok(), Some(true));
    }

    #[test]
    fn each_platform_is_built_from_its_keys() {
        let config = build(&[
            ("TWITCH_CHANNEL", "#SomeStreamer"),
            ("TWITCH_OAUTH_TOKEN", "oauth:abc"),
            ("YOUTUBE_API_KEY", "k"),
            ("YOUTUBE_VIDEO_ID", "v1"),
            ("YOUTUBE_API_URL", "http://127.0.0.1:9"),
            ("BILIBILI_IDENTITY_CODE", "CODE"),
            ("BILIBILI_APP_ID", "165"),
            ("BILIBILI_APP_KEY", "id"),
            ("BILIBILI_APP_SECRET", "secret"),
        ])
        .map(|c| c.chat_sources);
        let Ok(sources) = config else {
            panic!("a full chat config is valid: {config:?}")
        };
        let twitch = sources
            .twitch
            .clone()
            .unwrap_or_else(|| TwitchConfig::new(""));
        assert_eq!(twitch.channel, "somestreamer");
        assert_eq!(
            twitch.url, "wss://irc-ws.chat.twitch.tv:443",
            "the real host by default"
        );
        assert_eq!(
            sources
                .youtube
                .as_ref()
                .and_then(|y| y.api_url.clone())
                .as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert!(matches!(
            sources.bilibili.as_ref().map(|b| &b.route),
            Some(BilibiliRoute::Open { app_id: 165, .. })
        ));
        let platforms: Vec<&str> = sources.sources().iter().map(|s| s.platform()).collect();
        assert_eq!(platforms, vec!["twitch", "youtube", "bilibili"]);
        let debug = format!("{sources:?}");
        assert!(
            !debug.contains("abc") && !debug.contains("secret") && !debug.contains("CODE"),
            "no secret in Debug: {debug}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(
            error_text(&[("TWITCH_CHANNEL", "a"), ("TWITCH_IRC_URL", "http://x")])
                .contains("TWITCH_IRC_URL")
        );
        assert!(error_text(&[("TWITCH_CHANNEL", "no spaces")]).contains("TWITCH_CHANNEL"));
        let text = error_text(&[("BILIBILI_IDENTITY_CODE", "c"), ("BILIBILI_APP_ID", "x1")]);
        assert!(
            text.contains("BILIBILI_APP_ID") && text.contains("number"),
            "{text}"
        );
        assert!(error_text(&[("BILIBILI_ROOM_ID", "abc")]).contains("BILIBILI_ROOM_ID"));
        assert!(
            error_text(&[("BILIBILI_ROOM_ID", "1"), ("BILIBILI_API_URL", "ftp://x")])
                .contains("BILIBILI_API_URL")
        );
    }

    #[test]
    fn half_a_pair_still_makes_an_adapter_that_names_what_is_missing() {
        let sources = build(&[("YOUTUBE_API_KEY", "k"), ("BILIBILI_IDENTITY_CODE", "c")])
            .map(|c| c.chat_sources);
        let platforms: Vec<&str> = sources
            .iter()
            .flat_map(|s| s.sources())
            .map(|s| s.platform())
            .collect();
        assert_eq!(
            platforms,
            vec!["youtube", "bilibili"],
            "both show up (as failed) on /health"
        );
    }

    #[test]
    fn chat_credentials_are_secrets() {
        for key in [
            "twitch_oauth_token",
            "youtube_api_key",
            "bilibili_identity_code",
            "bilibili_app_key",
            "bilibili_app_secret",
            "bilibili_cookie",
        ] {
            assert!(
                is_secret(key),
                "{key} is masked by the settings API and in errors"
            );
        }
        assert!(!is_secret("twitch_channel"));
    }
}
