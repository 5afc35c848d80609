//! Languages: [`LangTag`] (a checked BCP-47-ish tag), [`DefaultLang`] (`auto` or a tag), and
//! [`speech_lang`], which decides the language a piece of reply text is spoken in.
//!
//! The decision is per piece of text (the engine asks once per segment), from the text's own
//! script, so a Chinese reply to an English question gets a Chinese voice and an English sentence
//! quoting 中文 keeps the English one. It knows no voices and no providers: mapping a language to
//! a voice is each TTS provider's job.
//!
//! Script counting: every Han ideograph, kana and Hangul syllable counts once (each is a
//! syllable); a run of other letters (a word) counts once; digits, punctuation and symbols do not
//! count. The dominant group decides, and a tie goes to the CJK side (a CJK voice can still spell a
//! Latin word, a Latin voice cannot read 中文 at all).

use std::fmt;
use std::str::FromStr;

/// A language tag such as `zh`, `ja`, `en-US`, `zh-Hant-TW`: a 2–3 letter primary language and up
/// to four subtags of 1–8 letters or digits, `-` or `_` separated (at most 35 bytes in all). Kept
/// in canonical case: `zh-Hant-TW`, `en-US`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LangTag(String);

/// Why a text is not a language tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a language tag: expected `auto` or a code such as zh, ja, en, ko, en-US, zh-TW"
)]
pub struct InvalidLang(pub String);

impl LangTag {
    /// Longest accepted tag: `zh-Hant-TW-x-abcdefgh` fits, prose does not.
    const MAX_LEN: usize = 35;

    pub fn parse(text: &str) -> Result<LangTag, InvalidLang> {
        let invalid = || InvalidLang(text.chars().take(64).collect());
        let text = text.trim();
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return Err(invalid());
        }
        let mut subtags = text.split(['-', '_']);
        let primary = subtags.next().unwrap_or_default();
        if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(invalid());
        }
        let mut canonical = primary.to_ascii_lowercase();
        for (index, subtag) in subtags.enumerate() {
            let plausible = (1..=8).contains(&subtag.len())
                && subtag.bytes().all(|b| b.is_ascii_alphanumeric());
            if index >= 4 || !plausible {
                return Err(invalid());
            }
            canonical.push('-');
            let alphabetic = subtag.bytes().all(|b| b.is_ascii_alphabetic());
            match subtag.len() {
                // A region (`TW`) is upper case, a script (`Hant`) title case (BCP 47 §2.1.1).
                2 if alphabetic => canonical.push_str(&subtag.to_ascii_uppercase()),
                4 if alphabetic => {
                    let lower = subtag.to_ascii_lowercase();
                    let (first, rest) = lower.split_at(1);
                    canonical.push_str(&first.to_ascii_uppercase());
                    canonical.push_str(rest);
                }
                _ => canonical.push_str(&subtag.to_ascii_lowercase()),
            }
        }
        Ok(LangTag(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The primary language, lower case: `zh` for `zh-TW`.
    pub fn primary(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }

    /// A bare primary language known to be valid (`zh`, `ja`, `ko`).
    fn primary_only(code: &'static str) -> LangTag {
        LangTag(code.to_owned())
    }
}

impl fmt::Display for LangTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<LangTag> for String {
    fn from(tag: LangTag) -> String {
        tag.0
    }
}

impl FromStr for LangTag {
    type Err = InvalidLang;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        LangTag::parse(text)
    }
}

/// The `default_lang` setting: let the reply's script decide, or speak one language.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DefaultLang {
    #[default]
    Auto,
    Fixed(LangTag),
}

impl FromStr for DefaultLang {
    type Err = InvalidLang;

    /// `auto` (any case, or empty) or a language tag.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("auto") {
            Ok(DefaultLang::Auto)
        } else {
            LangTag::parse(trimmed).map(DefaultLang::Fixed)
        }
    }
}

impl fmt::Display for DefaultLang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultLang::Auto => f.write_str("auto"),
            DefaultLang::Fixed(tag) => tag.fmt(f),
        }
    }
}

/// What a text's letters are mostly written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Han ideographs (and maybe kana), no kana: Chinese, or kanji-only Japanese.
    Han,
    /// Han and/or kana with at least one kana: Japanese.
    Kana,
    Hangul,
    /// Latin, Cyrillic, Arabic… letters: the script names no single language.
    Other,
}

impl Script {
    /// The dominant script of `text`; `None` when it has no letters at all (`123!`, emoji).
    pub fn dominant(text: &str) -> Option<Script> {
        let mut han = 0usize;
        let mut kana = 0usize;
        let mut hangul = 0usize;
        let mut words = 0usize;
        let mut in_word = false;
        for c in text.chars() {
            let class = class_of(c);
            in_word = match class {
                Class::Han => {
                    han += 1;
                    false
                }
                Class::Kana => {
                    kana += 1;
                    false
                }
                Class::Hangul => {
                    hangul += 1;
                    false
                }
                Class::Letter => {
                    if !in_word {
                        words += 1;
                    }
                    true
                }
                // An apostrophe or a combining mark does not split a word (`don't`, `café`).
                Class::Joiner => in_word,
                Class::None => false,
            };
        }
        let cjk = han + kana;
        if cjk == 0 && hangul == 0 {
            return (words > 0).then_some(Script::Other);
        }
        if hangul > cjk {
            return (hangul >= words)
                .then_some(Script::Hangul)
                .or(Some(Script::Other));
        }
        if cjk < words {
            return Some(Script::Other);
        }
        Some(if kana > 0 { Script::Kana } else { Script::Han })
    }
}

enum Class {
    Han,
    Kana,
    Hangul,
    Letter,
    Joiner,
    None,
}

fn class_of(c: char) -> Class {
    match c {
        // CJK Unified Ideographs, Extension A, compatibility ideographs, 々 and 〇, and the
        // supplementary ideograph planes (Extensions B–I).
        '\u{4E00}'..='\u{9FFF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{3005}'
        | '\u{3007}'
        | '\u{20000}'..='\u{3FFFF}' => Class::Han,
        // ・ (U+30FB) is punctuation, used in Chinese too; the rest of the blocks is kana.
        '\u{30FB}' => Class::None,
        '\u{3041}'..='\u{309F}'
        | '\u{30A0}'..='\u{30FF}'
        | '\u{31F0}'..='\u{31FF}'
        | '\u{FF66}'..='\u{FF9F}' => Class::Kana,
        '\u{AC00}'..='\u{D7AF}'
        | '\u{1100}'..='\u{11FF}'
        | '\u{3130}'..='\u{318F}'
        | '\u{A960}'..='\u{A97F}'
        | '\u{D7B0}'..='\u{D7FF}' => Class::Hangul,
        '\'' | '\u{2019}' | '\u{0300}'..='\u{036F}' => Class::Joiner,
        c if c.is_alphabetic() => Class::Letter,
        _ => Class::None,
    }
}

/// The language `text` (a piece of the reply) is spoken in.
///
/// - `default` fixed: `input` (the turn's `meta.lang`) if it is a valid tag, else `default`;
///   the script is not looked at.
/// - `auto`: the script decides. CJK with kana → `ja`; CJK without kana → `zh`, except that an
///   input of `ja` keeps kanji-only Japanese (`了解`) Japanese; Hangul → `ko`. The input's tag is
///   kept when it names the same language (`zh-TW` stays `zh-TW`). Any other script, or none, →
///   the input's language, else `None`: the provider's default voice (English for every built-in
///   default). `None` rather than `en`, so a streamer whose default voice speaks another language
///   is not told it lacks an "English" one.
///
/// An `input` that is not a language tag (any string may come from a client) counts as absent.
pub fn speech_lang(text: &str, input: Option<&str>, default: &DefaultLang) -> Option<LangTag> {
    let input = input.and_then(|tag| LangTag::parse(tag).ok());
    let DefaultLang::Auto = default else {
        return input.or_else(|| match default {
            DefaultLang::Fixed(tag) => Some(tag.clone()),
            DefaultLang::Auto => None,
        });
    };
    let same_or = |primary: &'static str, input: Option<LangTag>| match input {
        Some(tag) if tag.primary() == primary => tag,
        _ => LangTag::primary_only(primary),
    };
    match Script::dominant(text) {
        Some(Script::Kana) => Some(same_or("ja", input)),
        Some(Script::Han) => match input {
            Some(tag) if tag.primary() == "ja" => Some(tag),
            other => Some(same_or("zh", other)),
        },
        Some(Script::Hangul) => Some(same_or("ko", input)),
        Some(Script::Other) | None => input,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn auto(text: &str, input: Option<&str>) -> Option<String> {
        speech_lang(text, input, &DefaultLang::Auto).map(String::from)
    }

    #[test]
    fn tags_are_checked_and_canonical() {
        for (text, canonical) in [
            ("zh", "zh"),
            ("ZH", "zh"),
            (" ja ", "ja"),
            ("en_us", "en-US"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("yue", "yue"),
            ("es-419", "es-419"),
        ] {
            assert_eq!(
                LangTag::parse(text).map(String::from).as_deref(),
                Ok(canonical),
                "{text:?} is a tag"
            );
        }
        for text in [
            "",
            "auto",
            "e",
            "english",
            "zh--CN",
            "zh-",
            "-zh",
            "z1",
            "zh CN",
            "zh-CN-a-b-c-d",
            "zh-toolongsubtag",
            "中文",
            "en\0",
        ] {
            assert!(LangTag::parse(text).is_err(), "{text:?} is not a tag");
        }
        assert_eq!(LangTag::parse("zh-TW").unwrap().primary(), "zh");
    }

    #[test]
    fn default_lang_is_auto_or_a_tag() {
        assert_eq!("auto".parse(), Ok(DefaultLang::Auto));
        assert_eq!("AUTO".parse(), Ok(DefaultLang::Auto));
        assert_eq!("".parse(), Ok(DefaultLang::Auto), "unset means auto");
        assert_eq!(
            "zh".parse::<DefaultLang>().map(|d| d.to_string()),
            Ok("zh".to_owned())
        );
        let error = "chinese".parse::<DefaultLang>().unwrap_err();
        assert!(
            error.to_string().contains("\"chinese\""),
            "the value is named: {error}"
        );
    }

    #[test]
    fn auto_lets_the_script_decide() {
        assert_eq!(
            auto("你好，今天玩什么？", None),
            Some("zh".into()),
            "Han only"
        );
        assert_eq!(
            auto("こんにちは、今日は何をしますか？", None),
            Some("ja".into()),
            "kana"
        );
        assert_eq!(auto("カタカナだけ", None), Some("ja".into()), "katakana");
        assert_eq!(auto("안녕하세요!", None), Some("ko".into()), "Hangul");
        assert_eq!(
            auto("你好", Some("en")),
            Some("zh".into()),
            "the reply's script beats the input's language"
        );
        assert_eq!(auto("Hello there!", None), None, "Latin without a hint");
        assert_eq!(
            auto("Hello there!", Some("zh")),
            Some("zh".into()),
            "Latin: the input's language"
        );
        assert_eq!(auto("123 !!", Some("ja")), Some("ja".into()), "no letters");
        assert_eq!(auto("", None), None, "empty");
    }

    #[test]
    fn the_input_tag_is_kept_when_it_names_the_same_language() {
        assert_eq!(auto("你好", Some("zh-TW")), Some("zh-TW".into()));
        assert_eq!(auto("こんにちは", Some("ja_jp")), Some("ja-JP".into()));
        assert_eq!(
            auto("了解", Some("ja")),
            Some("ja".into()),
            "kanji-only Japanese stays Japanese when the input is Japanese"
        );
        assert_eq!(
            auto("了解", None),
            Some("zh".into()),
            "kanji only is Chinese otherwise"
        );
        assert_eq!(
            auto("Hi", Some("not a tag at all")),
            None,
            "a malformed meta.lang counts as absent"
        );
    }

    #[test]
    fn mixed_text_goes_by_the_dominant_script() {
        assert_eq!(
            auto("The word 中文 means the Chinese language.", None),
            None,
            "an English sentence quoting two ideographs stays English"
        );
        assert_eq!(
            auto("我喜欢用Python写代码。", None),
            Some("zh".into()),
            "a Chinese sentence with one English word is Chinese"
        );
        assert_eq!(
            auto("日本語でOKです", Some("en")),
            Some("ja".into()),
            "Japanese with a Latin word"
        );
        assert_eq!(
            auto("I'm don't can't won't 中文", None),
            None,
            "apostrophes do not split words"
        );
        assert_eq!(
            auto("OK 好", None),
            Some("zh".into()),
            "a tie (one word, one syllable) goes to the CJK side"
        );
    }

    #[test]
    fn a_fixed_default_applies_unless_the_input_names_a_language() {
        let zh = DefaultLang::Fixed(LangTag::parse("zh").unwrap());
        let fixed =
            |text: &str, input: Option<&str>| speech_lang(text, input, &zh).map(String::from);
        assert_eq!(fixed("Hello!", None), Some("zh".into()));
        assert_eq!(
            fixed("こんにちは", None),
            Some("zh".into()),
            "the script is not looked at"
        );
        assert_eq!(
            fixed("你好", Some("ja")),
            Some("ja".into()),
            "meta.lang wins"
        );
        assert_eq!(
            fixed("你好", Some("??")),
            Some("zh".into()),
            "a bad meta.lang is ignored"
        );
    }

    proptest! {
        #[test]
        fn any_text_and_input_give_a_valid_answer_deterministically(
            text in any::<String>(),
            input in proptest::option::of(any::<String>()),
            fixed in proptest::option::of("[a-z]{2}(-[A-Z]{2})?"),
        ) {
            let default = match &fixed {
                Some(tag) => DefaultLang::Fixed(LangTag::parse(tag).unwrap()),
                None => DefaultLang::Auto,
            };
            let first = speech_lang(&text, input.as_deref(), &default);
            let again = speech_lang(&text, input.as_deref(), &default);
            prop_assert_eq!(&first, &again, "deterministic");
            if let Some(tag) = &first {
                let reparsed = LangTag::parse(tag.as_str());
                prop_assert_eq!(reparsed.as_ref(), Ok(tag), "the answer is a canonical tag");
            }
            if fixed.is_some() {
                prop_assert!(first.is_some(), "a fixed default always gives a language");
            }
        }

        #[test]
        fn text_without_cjk_or_hangul_follows_the_input(
            text in "[ -~]{0,80}",
            input in proptest::option::of("(zh|ja|en|ko|fr)"),
        ) {
            prop_assert_eq!(
                speech_lang(&text, input.as_deref(), &DefaultLang::Auto).map(String::from),
                input,
                "ASCII text names no language of its own"
            );
        }

        #[test]
        fn any_text_parses_as_a_tag_or_an_error_without_panicking(text in any::<String>()) {
            let _ = LangTag::parse(&text);
            let _ = text.parse::<DefaultLang>();
            let _ = Script::dominant(&text);
        }
    }
}
