//! The `Sec-MS-GEC` anti-abuse token Edge's read-aloud endpoint demands, and the server clock it
//! depends on: the only place in `edge` that knows how the token is made.
//!
//! Microsoft changes this scheme from time to time (a change makes the handshake fail with 403;
//! FIELD-NOTES records one in October 2026). When that happens, implement [`EdgeTokenScheme`]
//! anew and pass it to `EdgeTts::with_token_scheme`; nothing else needs to change.
//!
//! Implemented here: [`FileTimeSha256`], the scheme the `edge-tts` Python package and its ports
//! use since November 2024 — SHA-256 over the Windows file time (100 ns ticks since 1601-01-01),
//! rounded down to 5 minutes, followed by the trusted client token; upper-case hex. Its known-answer
//! test below is a token the live service accepted (rany2/edge-tts issue #290). Whether Microsoft
//! still accepts it cannot be checked offline; a 403 says so clearly.
//! Not here: retries, HTTP, or anything about the WebSocket protocol itself.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::clock;

/// The constant client token Edge's read-aloud extension sends (public, the same for everyone).
pub const TRUSTED_CLIENT_TOKEN: &str = "6A5AA1D4EAFF4E9FB37E23D68491D6F4";

/// The Chromium/Edge version the token and the User-Agent claim to come from.
pub const CHROMIUM_FULL_VERSION: &str = "130.0.2849.68";

/// Seconds between 1601-01-01 (Windows file time epoch) and 1970-01-01.
const WINDOWS_EPOCH_OFFSET_SECS: i64 = 11_644_473_600;

/// A token is valid for the 5-minute window its time falls in.
const TOKEN_WINDOW_SECS: i64 = 300;

/// What one handshake presents to Edge: query parameters plus the browser identity they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeCredentials {
    /// `TrustedClientToken` query parameter.
    pub trusted_client_token: String,
    /// `Sec-MS-GEC` query parameter.
    pub sec_ms_gec: String,
    /// `Sec-MS-GEC-Version` query parameter.
    pub sec_ms_gec_version: String,
    /// `User-Agent` header; must name the same browser version as `sec_ms_gec_version`.
    pub user_agent: String,
}

/// How to make the credentials for a handshake at a given server time. Replaceable on purpose.
pub trait EdgeTokenScheme: Send + Sync + 'static {
    /// `server_now` is our clock corrected by what a previous 403 taught us about the server's.
    fn credentials(&self, server_now: SystemTime) -> EdgeCredentials;
}

/// The November 2024 scheme (see the module docs).
#[derive(Debug, Clone)]
pub struct FileTimeSha256 {
    pub trusted_client_token: String,
    pub chromium_full_version: String,
}

impl Default for FileTimeSha256 {
    fn default() -> Self {
        Self {
            trusted_client_token: TRUSTED_CLIENT_TOKEN.into(),
            chromium_full_version: CHROMIUM_FULL_VERSION.into(),
        }
    }
}

impl EdgeTokenScheme for FileTimeSha256 {
    fn credentials(&self, server_now: SystemTime) -> EdgeCredentials {
        let major = self
            .chromium_full_version
            .split('.')
            .next()
            .unwrap_or("130");
        EdgeCredentials {
            trusted_client_token: self.trusted_client_token.clone(),
            sec_ms_gec: sec_ms_gec(clock::unix_seconds(server_now), &self.trusted_client_token),
            sec_ms_gec_version: format!("1-{}", self.chromium_full_version),
            user_agent: format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/{major}.0.0.0 Safari/537.36 Edg/{major}.0.0.0"
            ),
        }
    }
}

/// `Sec-MS-GEC` for a Unix time: SHA-256 of `<file-time ticks rounded down to 5 min><client token>`.
pub fn sec_ms_gec(unix_seconds: i64, trusted_client_token: &str) -> String {
    let file_time_secs = unix_seconds + WINDOWS_EPOCH_OFFSET_SECS;
    let window_start = file_time_secs - file_time_secs.rem_euclid(TOKEN_WINDOW_SECS);
    let ticks = i128::from(window_start) * 10_000_000; // 100 ns ticks
    let digest = Sha256::digest(format!("{ticks}{trusted_client_token}").as_bytes());
    hex::encode_upper(digest)
}

/// How far the server's clock is ahead of ours, in whole seconds, learned from 403 responses.
/// Shared by every stream of one provider so the correction is learned once.
#[derive(Debug, Default)]
pub struct ClockSkew {
    server_ahead_secs: AtomicI64,
}

impl ClockSkew {
    /// Our clock corrected to the server's.
    pub fn server_now(&self, local_now: SystemTime) -> SystemTime {
        let skew = self.server_ahead_secs.load(Ordering::Relaxed);
        let magnitude = Duration::from_secs(skew.unsigned_abs());
        if skew >= 0 {
            local_now + magnitude
        } else {
            local_now.checked_sub(magnitude).unwrap_or(local_now)
        }
    }

    /// Learns the skew from a rejected handshake's `Date` header. Returns `true` if the estimate
    /// moved by more than the header's 1 s resolution, i.e. a retry might now succeed.
    pub fn learn_from_date_header(&self, date_header: &str, local_now: SystemTime) -> bool {
        let Some(server_time) = clock::parse_http_date(date_header) else {
            return false;
        };
        let estimate = clock::unix_seconds(server_time) - clock::unix_seconds(local_now);
        let previous = self.server_ahead_secs.swap(estimate, Ordering::Relaxed);
        (estimate - previous).abs() > 1
    }

    pub fn server_ahead_secs(&self) -> i64 {
        self.server_ahead_secs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn known_answer_from_a_token_the_live_service_accepted() {
        // Distributed as working on 2024-11-04 15:20:12 UTC (rany2/edge-tts issue #290).
        assert_eq!(
            sec_ms_gec(1_730_733_612, TRUSTED_CLIENT_TOKEN),
            "2FD7FBB316546A4A4D9D2647A42D3A7FDC192655EF6B87ED618C1592A14DB93B",
            "the Nov 2024 scheme must reproduce a token Edge accepted"
        );
    }

    #[test]
    fn token_is_constant_within_a_five_minute_window_and_changes_across() {
        // 1_730_733_600 + epoch offset is a multiple of 300: the window runs to …3899.
        let window_start =
            1_730_733_600 - (1_730_733_600 + WINDOWS_EPOCH_OFFSET_SECS).rem_euclid(300);
        let token = sec_ms_gec(window_start, TRUSTED_CLIENT_TOKEN);
        assert_eq!(
            sec_ms_gec(window_start + 299, TRUSTED_CLIENT_TOKEN),
            token,
            "same window, same token"
        );
        assert_ne!(
            sec_ms_gec(window_start + 300, TRUSTED_CLIENT_TOKEN),
            token,
            "next window, new token"
        );
        assert_eq!(token.len(), 64, "SHA-256 in hex");
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
            "upper-case hex"
        );
    }

    #[test]
    fn credentials_name_one_browser_version_in_token_and_user_agent() {
        let credentials =
            FileTimeSha256::default().credentials(UNIX_EPOCH + Duration::from_secs(1_730_733_612));
        assert_eq!(
            credentials.sec_ms_gec_version, "1-130.0.2849.68",
            "version parameter format is 1-<full version>"
        );
        assert!(
            credentials.user_agent.contains("Edg/130.0.0.0"),
            "the User-Agent claims the same major version"
        );
        assert_eq!(
            credentials.trusted_client_token, TRUSTED_CLIENT_TOKEN,
            "the public client token"
        );
    }

    #[test]
    fn skew_is_learned_from_the_date_header_and_applied() {
        let skew = ClockSkew::default();
        let local = UNIX_EPOCH + Duration::from_secs(1_730_733_612);
        assert!(
            skew.learn_from_date_header("Mon, 04 Nov 2024 16:20:12 GMT", local),
            "a server one hour ahead is news worth a retry"
        );
        assert_eq!(skew.server_ahead_secs(), 3600, "one hour ahead");
        assert_eq!(
            skew.server_now(local),
            local + Duration::from_secs(3600),
            "tokens are made for the server's time"
        );
        assert!(
            !skew.learn_from_date_header("Mon, 04 Nov 2024 16:20:13 GMT", local),
            "a 1 s difference is within the header's resolution: no retry"
        );
        assert!(
            !skew.learn_from_date_header("garbage", local),
            "an unreadable Date teaches nothing"
        );
    }
}
