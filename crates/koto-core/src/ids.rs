//! Identifier newtypes. A `SessionId` can only exist in its validated form.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A session id: 1–64 characters of `[A-Za-z0-9._:-]` (CONTRACTS §1).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sessionId must be 1-64 characters of [A-Za-z0-9._:-]")]
pub struct InvalidSessionId;

impl SessionId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidSessionId> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.chars().all(valid_char) {
            return Err(InvalidSessionId);
        }
        Ok(SessionId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        SessionId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

/// A turn number within a session; starts at 0 and only grows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
#[serde(transparent)]
pub struct TurnNo(pub u64);

impl TurnNo {
    /// The highest turn number: JavaScript's largest exact integer (2^53 − 1), so every client
    /// reads it back unchanged, and far inside SQLite's signed 64-bit INTEGER, so `turn + 1`
    /// always fits the store.
    pub const MAX: u64 = (1 << 53) - 1;
}

impl fmt::Display for TurnNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `sessionId#turn`: the id every log line and event of a turn carries.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CorrelationId(String);

impl CorrelationId {
    pub fn new(session: &SessionId, turn: TurnNo) -> Self {
        CorrelationId(format!("{session}#{turn}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_accepts_the_contract_alphabet_only() {
        for ok in ["live-001", "a", "A.b_c:d-9", &"x".repeat(64)] {
            assert!(
                SessionId::parse(ok).is_ok(),
                "{ok:?} is within [A-Za-z0-9._:-]{{1,64}}"
            );
        }
        for bad in [
            "",
            " ",
            "a b",
            "a/b",
            "ünï",
            &"x".repeat(65),
            "a\n",
            "../etc",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn correlation_id_is_session_hash_turn() {
        let session = SessionId::parse("live-001").expect("valid id");
        assert_eq!(
            CorrelationId::new(&session, TurnNo(42)).as_str(),
            "live-001#42"
        );
    }
}
