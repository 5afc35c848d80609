//! [`VoiceMap`]: a provider's voice per language (`TTS_VOICES`, `zh=cmn,ja=ja`), and the lookup
//! every provider shares: a forced voice, else the map, else the provider's built-in default.
//!
//! What a "voice" is stays the provider's business (an espeak-ng voice, an Edge voice name, a Piper
//! `.onnx` path); this module only checks the shape of the list and matches language tags.

use std::fmt;
use std::str::FromStr;

use koto_core::lang::LangTag;

/// Voices by language. A request's tag matches an entry of the same tag first (`zh-TW`), then
/// one of its primary language (`zh`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoiceMap {
    entries: Vec<(LangTag, String)>,
}

/// Why a `TTS_VOICES` text is not a voice list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidVoiceMap(String);

impl VoiceMap {
    pub fn new(entries: impl IntoIterator<Item = (LangTag, String)>) -> Self {
        VoiceMap {
            entries: entries.into_iter().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(language, voice)` pairs in the order given.
    pub fn entries(&self) -> impl Iterator<Item = (&LangTag, &str)> {
        self.entries
            .iter()
            .map(|(lang, voice)| (lang, voice.as_str()))
    }

    /// The voice configured for `lang`, if any. A `lang` that is not a tag matches nothing.
    pub fn get(&self, lang: Option<&str>) -> Option<&str> {
        let tag = LangTag::parse(lang?).ok()?;
        let exact = self.entries.iter().find(|(entry, _)| *entry == tag);
        let primary = || {
            self.entries
                .iter()
                .find(|(entry, _)| entry.as_str() == tag.primary())
        };
        exact.or_else(primary).map(|(_, voice)| voice.as_str())
    }
}

impl FromStr for VoiceMap {
    type Err = InvalidVoiceMap;

    /// `lang=voice` pairs separated by commas; blanks around either side are ignored, an empty
    /// text is an empty map. A language given twice is refused (which one would win?).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut entries: Vec<(LangTag, String)> = Vec::new();
        for pair in text
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let Some((lang, voice)) = pair.split_once('=') else {
                return Err(InvalidVoiceMap(format!(
                    "{pair:?} is not lang=voice (e.g. zh=cmn,ja=ja)"
                )));
            };
            let lang = LangTag::parse(lang).map_err(|error| InvalidVoiceMap(error.to_string()))?;
            let voice = voice.trim();
            if voice.is_empty() {
                return Err(InvalidVoiceMap(format!("no voice given for {lang}")));
            }
            if entries.iter().any(|(known, _)| *known == lang) {
                return Err(InvalidVoiceMap(format!("{lang} is listed twice")));
            }
            entries.push((lang, voice.to_owned()));
        }
        Ok(VoiceMap { entries })
    }
}

impl fmt::Display for VoiceMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (lang, voice)) in self.entries.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{lang}={voice}")?;
        }
        Ok(())
    }
}

/// The voice for a request's language: `forced` (`TTS_VOICE`) if set, else the map's entry, else
/// `default_for(lang)`, the provider's built-in choice.
pub fn choose<'a>(
    forced: Option<&'a str>,
    voices: &'a VoiceMap,
    lang: Option<&str>,
    default_for: fn(Option<&str>) -> &'static str,
) -> &'a str {
    forced
        .or_else(|| voices.get(lang))
        .unwrap_or_else(|| default_for(lang))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_list_parses_and_a_tag_matches_exactly_then_by_primary_language() {
        let map: VoiceMap = " zh = cmn , zh-TW=yue, ja=ja ".parse().unwrap();
        assert_eq!(map.get(Some("zh")), Some("cmn"));
        assert_eq!(map.get(Some("zh-tw")), Some("yue"), "the exact tag first");
        assert_eq!(
            map.get(Some("zh-CN")),
            Some("cmn"),
            "then the primary language"
        );
        assert_eq!(map.get(Some("ja_JP")), Some("ja"));
        assert_eq!(map.get(Some("ko")), None, "not listed");
        assert_eq!(map.get(None), None);
        assert_eq!(map.get(Some("garbage!")), None, "not a tag");
        assert_eq!(map.to_string(), "zh=cmn,zh-TW=yue,ja=ja", "round trip");
        assert!("".parse::<VoiceMap>().unwrap().is_empty());
    }

    #[test]
    fn malformed_lists_are_refused_with_the_reason() {
        for (text, reason) in [
            ("zh", "not lang=voice"),
            ("zh=", "no voice given for zh"),
            ("chinese=cmn", "not a language tag"),
            ("zh=cmn,zh=yue", "listed twice"),
        ] {
            let error = text.parse::<VoiceMap>().unwrap_err().to_string();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_forced_voice_beats_the_map_which_beats_the_default() {
        let map: VoiceMap = "zh=zh-voice".parse().unwrap();
        fn default(lang: Option<&str>) -> &'static str {
            if lang == Some("ja") {
                "ja-default"
            } else {
                "en-default"
            }
        }
        assert_eq!(choose(Some("forced"), &map, Some("zh"), default), "forced");
        assert_eq!(choose(None, &map, Some("zh"), default), "zh-voice");
        assert_eq!(choose(None, &map, Some("ja"), default), "ja-default");
        assert_eq!(choose(None, &map, None, default), "en-default");
    }
}
