//! Text checks for chat: the comparison key for duplicates, links, and blocked words with their
//! romanised variants (accents and pinyin tone marks folded, look-alike digits read as letters,
//! spaces and punctuation ignored). Pure functions, no allocation beyond the keys they return.

/// The duplicate key: lowercase letters and digits only, runs of one char cut to one (so
/// `LOOOOL!!!` and `lol` are the same message), accents and tone marks folded.
pub fn duplicate_key(text: &str) -> String {
    let mut key = String::with_capacity(text.len());
    let mut last = None;
    for c in text.chars().flat_map(char::to_lowercase).map(fold_accent) {
        if !c.is_alphanumeric() || Some(c) == last {
            continue;
        }
        last = Some(c);
        key.push(c);
    }
    key
}

/// True when the text carries a link: a scheme, `www.`, or a word ending in a common top-level
/// domain (`bit.ly/x`, `spam.com`).
pub fn has_link(text: &str) -> bool {
    let lower = text.to_lowercase();
    if lower.contains("://") || lower.contains("www.") {
        return true;
    }
    const TLDS: &[&str] = &[
        "com", "net", "org", "io", "ly", "gg", "tv", "ru", "cn", "xyz", "me", "co", "link", "top",
        "shop", "site", "info", "biz", "app",
    ];
    lower
        .split(|c: char| c.is_whitespace() || "()[]<>\"'，。".contains(c))
        .any(|word| {
            let word = word.trim_end_matches(['.', ',', '!', '?', ':', ';']);
            let host = word.split('/').next().unwrap_or_default();
            match host.rsplit_once('.') {
                Some((name, tld)) => {
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
                        && TLDS.contains(&tld)
                }
                None => false,
            }
        })
}

/// A blocked word, prepared once: matched against the text's folded form, so `shǎbī`,
/// `sha bi`, `SHABI` and `5hab1` all hit the word `shabi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedWord {
    /// As configured, for the reason shown to the streamer.
    pub word: String,
    folded: String,
    /// Short Latin words (`sb`, `ass`) would hit inside innocent words once spaces are gone,
    /// so they must match a whole word; longer or non-Latin ones match anywhere.
    whole_word: bool,
}

impl BlockedWord {
    pub fn new(word: &str) -> Option<BlockedWord> {
        let folded = fold_for_words(word);
        if folded.is_empty() {
            return None;
        }
        let whole_word = folded.chars().count() < 4 && folded.is_ascii();
        Some(BlockedWord {
            word: word.trim().to_owned(),
            folded,
            whole_word,
        })
    }
}

/// The first blocked word the text contains.
pub fn find_blocked<'a>(text: &str, words: &'a [BlockedWord]) -> Option<&'a BlockedWord> {
    if words.is_empty() {
        return None;
    }
    let joined = fold_for_words(text);
    let tokens: Vec<String> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '，' | '。'))
        .map(fold_for_words)
        .filter(|token| !token.is_empty())
        .collect();
    words.iter().find(|word| {
        if word.whole_word {
            tokens.contains(&word.folded)
        } else {
            joined.contains(&word.folded)
        }
    })
}

/// Lowercase, accents and tones folded, look-alike digits and signs read as letters, and
/// everything that is not a letter or digit removed.
fn fold_for_words(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(fold_accent)
        .map(read_lookalike)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Digits and signs that stand in for letters (`5hab1`, `a$$`) → the letter.
pub(crate) fn read_lookalike(c: char) -> char {
    match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        other => other,
    }
}

/// Latin letters with accents or pinyin tone marks → the bare letter (`ǎ` → `a`, `ü` → `u`,
/// pinyin's rare `ê`, `ế`, `ǹ`, `ḿ` too). Shared with the output filter.
pub(crate) fn fold_accent(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ǎ' | 'ă' | 'ą' => 'a',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ě' | 'ę' | 'ế' | 'ề' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'ǐ' => 'i',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ō' | 'ǒ' | 'ø' => 'o',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ǔ' | 'ǖ' | 'ǘ' | 'ǚ' | 'ǜ' => 'u',
        'ñ' | 'ń' | 'ň' | 'ǹ' => 'n',
        'ç' | 'č' => 'c',
        'š' | 'ś' => 's',
        'ž' | 'ź' | 'ż' => 'z',
        'ý' | 'ÿ' => 'y',
        'ḿ' => 'm',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_identical_texts_share_a_key() {
        assert_eq!(duplicate_key("LOOOOL!!!"), duplicate_key("lol"));
        assert_eq!(duplicate_key("First!"), duplicate_key("first"));
        assert_eq!(duplicate_key("你好 你好"), duplicate_key("你好你好"));
        assert_ne!(duplicate_key("hello there"), duplicate_key("hello where"));
        assert_eq!(duplicate_key("?!?"), "", "punctuation alone has no key");
    }

    #[test]
    fn links_are_found_in_their_usual_disguises() {
        for text in [
            "see https://x.test",
            "www.example",
            "go to spam.com now",
            "bit.ly/abc",
        ] {
            assert!(has_link(text), "{text:?} carries a link");
        }
        for text in ["hello.", "3.14 is pi", "what's up? ok.", "e.g. this"] {
            assert!(!has_link(text), "{text:?} carries no link");
        }
    }

    #[test]
    fn blocked_words_match_romanised_and_pinyin_variants() {
        let words: Vec<BlockedWord> = ["shabi", "傻逼", "sb"]
            .iter()
            .filter_map(|w| BlockedWord::new(w))
            .collect();
        for text in [
            "ni shǎbī a",
            "SHA BI",
            "5hab1!",
            "你个傻逼",
            "u r sb",
            "S.B.",
        ] {
            assert!(find_blocked(text, &words).is_some(), "{text:?} is blocked");
        }
        for text in ["hello", "a sbstantial pun", "傻子"] {
            assert!(find_blocked(text, &words).is_none(), "{text:?} is clean");
        }
    }

    #[test]
    fn blank_words_are_not_words() {
        assert_eq!(BlockedWord::new(" ,. "), None);
    }
}
