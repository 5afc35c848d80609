//! Echo handling that needs no signal processing: which mode protects the mic
//! (`ECHO_CANCEL`), the gate used without AEC, and the transcript check that drops the
//! co-host's own sentence heard back through the mic.
//!
//! The acoustic canceller itself is `aec.rs`; this file never touches samples.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// How the mic is protected from the co-host's own voice (`ECHO_CANCEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoMode {
    /// The played audio is the far-end reference of an acoustic echo canceller.
    Aec,
    /// No canceller: the mic is muted while the co-host speaks (no voice barge-in).
    Gate,
    /// The user wears headphones: nothing to cancel.
    Headphones,
}

impl EchoMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EchoMode::Aec => "aec",
            EchoMode::Gate => "gate",
            EchoMode::Headphones => "headphones",
        }
    }

    /// Whether a voice onset can be heard while the co-host speaks.
    pub fn hears_over_cohost(self) -> bool {
        !matches!(self, EchoMode::Gate)
    }
}

impl fmt::Display for EchoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EchoMode {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "aec" | "on" | "true" => Ok(EchoMode::Aec),
            "gate" | "off" | "false" => Ok(EchoMode::Gate),
            "headphones" => Ok(EchoMode::Headphones),
            other => Err(format!("`{other}` is not aec, gate or headphones")),
        }
    }
}

/// Share of a transcript's words that must occur in what the co-host is saying for it to be
/// taken as echo.
pub const ECHO_OVERLAP: f32 = 0.6;

/// Whether `transcript` is (mostly) words of `spoken`: the co-host's own sentences heard back.
/// Words are compared as a multiset (ASR reorders nothing but drops and mishears some); CJK
/// text is compared character by character. An empty transcript is not echo (it is nothing).
pub fn is_echo<'a>(transcript: &str, spoken: impl IntoIterator<Item = &'a str>) -> bool {
    let heard = tokens(transcript);
    if heard.is_empty() {
        return false;
    }
    let mut available: HashMap<String, usize> = HashMap::new();
    for sentence in spoken {
        for token in tokens(sentence) {
            *available.entry(token).or_default() += 1;
        }
    }
    let mut matched = 0usize;
    for token in &heard {
        if let Some(count) = available.get_mut(token)
            && *count > 0
        {
            *count -= 1;
            matched += 1;
        }
    }
    matched as f32 / heard.len() as f32 >= ECHO_OVERLAP
}

/// Words of `text`, lowercased, punctuation removed; each CJK character is a word.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() || c == '\'' {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out.retain(|token| token != "'");
    out
}

/// Number of words in a transcript, as the barge-in rule counts them.
pub fn word_count(text: &str) -> usize {
    tokens(text).len()
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF     // Hiragana, Katakana
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xF900..=0xFAFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_co_hosts_sentence_heard_back_is_echo() {
        let spoken = ["Welcome back, everyone! Today we play the forest level."];
        assert!(is_echo("welcome back everyone today we play", spoken));
        assert!(
            is_echo("welcome back every one today we play the forest", spoken),
            "a misheard word or two is still echo"
        );
        assert!(!is_echo("wait, stop, what about the boss?", spoken));
        assert!(!is_echo("", spoken), "nothing heard is not echo");
    }

    #[test]
    fn cjk_is_compared_by_character() {
        let spoken = ["今日はいい天気ですね。"];
        assert!(is_echo("今日はいい天気", spoken));
        assert!(!is_echo("ちょっと待って", spoken));
        assert_eq!(word_count("ちょっと待って"), 7);
    }

    #[test]
    fn words_are_counted_without_punctuation() {
        assert_eq!(word_count("Hey — wait, don't!"), 3);
        assert_eq!(word_count("..."), 0, "Whisper's silence marker is no word");
    }

    #[test]
    fn modes_parse_and_name_themselves() {
        for mode in [EchoMode::Aec, EchoMode::Gate, EchoMode::Headphones] {
            assert_eq!(mode.as_str().parse::<EchoMode>(), Ok(mode));
        }
        assert!("loud".parse::<EchoMode>().is_err());
        assert!(!EchoMode::Gate.hears_over_cohost());
    }
}
