//! The output filter: a streamer's list of words and patterns checked against each reply segment
//! before it is synthesised, with a verdict the engine turns into mask, skip or stop. Pure and
//! prepared once per list; it does not apply the action, log, or know where the list is stored.
//!
//! A word matches its usual disguises, as chat's blocked words do (`chat_queue/text.rs`):
//! lowercase, accents and pinyin tones folded, look-alike digits read as letters (`5hab1`),
//! full-width letters read as ASCII, spaces and punctuation between letters ignored (`s h a b i`).
//! Short Latin words (< 4 letters) only match whole words, so `ass` leaves `class` alone. On top of
//! that the filter knows two scripts:
//!
//! - **Chinese**: a word in Han characters (`傻逼`) also catches its toneless pinyin written in
//!   Latin letters (`shabi`, `Shǎ Bī`), and a Latin word of 4+ letters (`shabi`) also catches Han
//!   text that reads so (`傻逼`, and its homophones: a reply cannot tell us which characters were
//!   meant). Han is read with each character's most common reading (the `pinyin` crate, no
//!   heteronyms) and a hit must cover whole syllables, so `shit` never hits 是他 (*shi ta*).
//! - **Japanese**: kana are folded (katakana = hiragana, `ー` ignored, so `ばか` hits `バーカ`); a
//!   kana word also catches its Hepburn romaji (`baka`), and a Latin word of 4+ letters catches
//!   kana that read so. Romaji hits cover whole kana (with `っ` bound to the kana after it), so
//!   `shit` never hits しってる.
//!
//! Known limits: kanji have no Japanese reading here (no dictionary), so `馬鹿` only matches `馬鹿`
//! (and its Chinese pinyin) — list `ばか` or `baka` as well. Han entries do not catch Han
//! homophones (`死` would otherwise hit every `四`), and short Latin words (< 4 letters: `sb`,
//! `cao`) do not catch Han or kana at all. A kana word's romaji can be an English word too
//! (`しね` also masks `shine`). Patterns (`/…/`, `/…/i`) run on the text as written,
//! without any folding.
//!
//! The folding is re-implemented here rather than shared with `chat_queue/text.rs`: the filter must
//! map every folded letter back to the characters that produced it, to mask them, and chat's
//! helpers return bare strings.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::chat_queue::text::{fold_accent, read_lookalike};

/// At most this many entries in one list (words and patterns together).
pub const MAX_ENTRIES: usize = 2000;
/// At most this many `/…/` patterns: each is its own compiled automaton run on every segment.
pub const MAX_PATTERNS: usize = 100;
/// At most this many characters in one entry.
pub const MAX_ENTRY_CHARS: usize = 200;
/// The compiled size limit of one pattern, in bytes (`RegexBuilder::size_limit`).
pub const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// What the engine does with a segment the filter hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterAction {
    /// Speak the segment with the hits masked (`FilterVerdict::Hit::masked`).
    #[default]
    Mask,
    /// Drop the segment and go on with the next one.
    Skip,
    /// End the turn here.
    Stop,
}

impl FilterAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterAction::Mask => "mask",
            FilterAction::Skip => "skip",
            FilterAction::Stop => "stop",
        }
    }
}

impl fmt::Display for FilterAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FilterAction {
    type Err = FilterError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "mask" => Ok(FilterAction::Mask),
            "skip" => Ok(FilterAction::Skip),
            "stop" => Ok(FilterAction::Stop),
            _ => Err(FilterError::UnknownAction {
                value: value.to_owned(),
            }),
        }
    }
}

/// Why a list (or an action) was refused. Each message is one sentence naming the entry, fit to
/// show next to the settings field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("“{entry}” is not a valid pattern: {reason}.")]
    InvalidPattern { entry: String, reason: String },
    #[error("“{entry}” has no letters or digits to match; write a word, or a pattern as /…/.")]
    NothingToMatch { entry: String },
    #[error("“{entry}” is longer than {max} characters.")]
    EntryTooLong { entry: String, max: usize },
    #[error("The list has more than {max} entries; remove some.")]
    TooManyEntries { max: usize },
    #[error("The list has more than {max} patterns (/…/); remove some or write them as words.")]
    TooManyPatterns { max: usize },
    #[error("“{value}” is not a filter action; use mask, skip or stop.")]
    UnknownAction { value: String },
}

/// The filter's answer for one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterVerdict {
    Clean,
    Hit {
        /// The entries that hit, as configured, in list order, each once.
        entries: Vec<String>,
        /// The segment with every hit's characters replaced by `*`, one per character; the rest
        /// (and so the char count) unchanged.
        masked: String,
    },
}

impl FilterVerdict {
    pub fn is_clean(&self) -> bool {
        matches!(self, FilterVerdict::Clean)
    }

    /// For the transcript: `filtered: 傻逼, /f+u+c+k+/i`; `None` when clean.
    pub fn reason(&self) -> Option<String> {
        match self {
            FilterVerdict::Clean => None,
            FilterVerdict::Hit { entries, .. } => Some(format!("filtered: {}", entries.join(", "))),
        }
    }
}

/// A parsed list, with every word's folded forms prepared once. `OutputFilter::default()` is the
/// empty list, which passes everything.
#[derive(Debug, Clone, Default)]
pub struct OutputFilter {
    /// As configured, in list order; `WordEntry::entry` and `PatternEntry::entry` index it.
    entries: Vec<String>,
    words: Vec<WordEntry>,
    patterns: Vec<PatternEntry>,
}

#[derive(Debug, Clone)]
struct WordEntry {
    entry: usize,
    /// Folded as written (Han kept, kana as hiragana).
    literal: String,
    /// Short ASCII forms must cover whole words.
    literal_whole: bool,
    /// A Latin word of 4+ letters: also looked for in the reply's romanised form.
    latin_long: bool,
    /// For words with Han or kana: their pinyin / romaji, looked for in the reply's Latin letters.
    romanised: Option<(String, bool)>,
}

#[derive(Debug, Clone)]
struct PatternEntry {
    entry: usize,
    regex: regex::Regex,
}

impl OutputFilter {
    /// Entries are separated by commas (`,`, `，`, `、`) or newlines, trimmed; empty ones are
    /// ignored and repeated ones kept once. `/…/` is a regular expression, `/…/i` one that ignores
    /// case; a comma inside it does not end it.
    pub fn parse(list: &str) -> Result<OutputFilter, FilterError> {
        let mut filter = OutputFilter::default();
        let mut seen = HashSet::new();
        for raw in split_entries(list) {
            let raw = raw?;
            if raw.text.chars().count() > MAX_ENTRY_CHARS {
                let start: String = raw.text.chars().take(24).collect();
                return Err(FilterError::EntryTooLong {
                    entry: format!("{start}…"),
                    max: MAX_ENTRY_CHARS,
                });
            }
            if !seen.insert(raw.text.clone()) {
                continue;
            }
            if filter.entries.len() == MAX_ENTRIES {
                return Err(FilterError::TooManyEntries { max: MAX_ENTRIES });
            }
            let entry = filter.entries.len();
            match raw.pattern {
                Some((pattern, ignore_case)) => {
                    if filter.patterns.len() == MAX_PATTERNS {
                        return Err(FilterError::TooManyPatterns { max: MAX_PATTERNS });
                    }
                    let regex = compile_pattern(&raw.text, pattern, ignore_case)?;
                    filter.patterns.push(PatternEntry { entry, regex });
                }
                None => filter.words.push(WordEntry::new(entry, &raw.text)?),
            }
            filter.entries.push(raw.text);
        }
        Ok(filter)
    }

    /// True for a list with no entries: `check` is then always `Clean`.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries as configured, in list order.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    pub fn check(&self, segment: &str) -> FilterVerdict {
        if self.is_empty() || segment.is_empty() {
            return FilterVerdict::Clean;
        }
        let mut hit = vec![false; self.entries.len()];
        let mut spans = Vec::new();
        if !self.words.is_empty() {
            let literal = View::build(segment, false);
            let has_cjk = segment.chars().any(|c| is_han(c) || kana_fold(c).is_some());
            let romanised = if has_cjk && self.words.iter().any(|word| word.latin_long) {
                Some(View::build(segment, true))
            } else {
                None
            };
            for word in &self.words {
                let mut found = if word.latin_long {
                    romanised
                        .as_ref()
                        .unwrap_or(&literal)
                        .find(&word.literal, false, &mut spans)
                } else {
                    literal.find(&word.literal, word.literal_whole, &mut spans)
                };
                if let Some((romanised, whole)) = &word.romanised {
                    found |= literal.find(romanised, *whole, &mut spans);
                }
                if found {
                    hit[word.entry] = true;
                }
            }
        }
        for pattern in &self.patterns {
            for found in pattern.regex.find_iter(segment) {
                if !found.is_empty() {
                    spans.push(found.range());
                    hit[pattern.entry] = true;
                }
            }
        }
        if spans.is_empty() {
            return FilterVerdict::Clean;
        }
        let entries = self
            .entries
            .iter()
            .zip(&hit)
            .filter(|(_, hit)| **hit)
            .map(|(entry, _)| entry.clone())
            .collect();
        FilterVerdict::Hit {
            entries,
            masked: mask(segment, spans),
        }
    }
}

impl WordEntry {
    fn new(entry: usize, text: &str) -> Result<WordEntry, FilterError> {
        let literal = View::build(text, false).folded;
        if literal.is_empty() {
            return Err(FilterError::NothingToMatch {
                entry: text.to_owned(),
            });
        }
        let is_short_ascii = |folded: &str| folded.is_ascii() && folded.chars().count() < 4;
        let romanised = View::build(text, true).folded;
        let romanised = (romanised != literal).then(|| {
            let whole = is_short_ascii(&romanised);
            (romanised, whole)
        });
        Ok(WordEntry {
            entry,
            literal_whole: is_short_ascii(&literal),
            latin_long: literal.is_ascii() && !is_short_ascii(&literal),
            literal,
            romanised,
        })
    }
}

/// One entry of the list as written, and its pattern (with the `i` flag) when it is one.
struct RawEntry<'a> {
    text: String,
    pattern: Option<(&'a str, bool)>,
}

const SEPARATORS: [char; 3] = [',', '，', '、'];

fn split_entries(list: &str) -> impl Iterator<Item = Result<RawEntry<'_>, FilterError>> {
    list.lines().flat_map(|line| {
        let mut entries = Vec::new();
        let mut rest = line;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || SEPARATORS.contains(&c));
            if rest.is_empty() {
                break;
            }
            if rest.starts_with('/') {
                match split_pattern(rest) {
                    Some((entry, pattern, ignore_case, after)) => {
                        entries.push(Ok(RawEntry {
                            text: entry.to_owned(),
                            pattern: Some((pattern, ignore_case)),
                        }));
                        rest = after;
                    }
                    None => {
                        let entry = rest.split(SEPARATORS).next().unwrap_or(rest).trim();
                        entries.push(Err(FilterError::InvalidPattern {
                            entry: entry.to_owned(),
                            reason: "a pattern is written /…/ or /…/i".to_owned(),
                        }));
                        break;
                    }
                }
            } else {
                let (word, after) = rest.split_once(SEPARATORS).unwrap_or((rest, ""));
                let word = word.trim();
                if !word.is_empty() {
                    entries.push(Ok(RawEntry {
                        text: word.to_owned(),
                        pattern: None,
                    }));
                }
                rest = after;
            }
        }
        entries
    })
}

/// `/…/` or `/…/i` at the start of `text`, closed by the first unescaped `/` (and optional `i`)
/// that ends the line or comes before a separator: `(entry, pattern, ignore_case, rest)`.
fn split_pattern(text: &str) -> Option<(&str, &str, bool, &str)> {
    let mut backslashes = 0;
    for (at, c) in text.char_indices().skip(1) {
        if c == '\\' {
            backslashes += 1;
            continue;
        }
        let escaped = backslashes % 2 == 1;
        backslashes = 0;
        if c != '/' || escaped {
            continue;
        }
        let after = &text[at + 1..];
        let (ignore_case, after_flag) = match after.strip_prefix('i') {
            Some(rest) => (true, rest),
            None => (false, after),
        };
        let tail = after_flag.trim_start();
        if tail.is_empty() || tail.starts_with(SEPARATORS) {
            let entry_end = text.len() - after_flag.len();
            return Some((&text[..entry_end], &text[1..at], ignore_case, tail));
        }
    }
    None
}

fn compile_pattern(
    entry: &str,
    pattern: &str,
    ignore_case: bool,
) -> Result<regex::Regex, FilterError> {
    let invalid = |reason: String| FilterError::InvalidPattern {
        entry: entry.to_owned(),
        reason,
    };
    let regex = regex::RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|error| invalid(pattern_error_reason(&error)))?;
    if regex.is_match("") {
        return Err(invalid(
            "it matches empty text, so it would hit every reply".to_owned(),
        ));
    }
    Ok(regex)
}

/// The last `error: …` line of the regex crate's multi-line report, which is the part a streamer
/// can act on (the rest is the pattern again with a caret).
fn pattern_error_reason(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(report) => report
            .lines()
            .rev()
            .find_map(|line| line.trim().strip_prefix("error: "))
            .unwrap_or(report.trim())
            .to_owned(),
        regex::Error::CompiledTooBig(limit) => {
            format!("it is too large once compiled (over {limit} bytes); simplify it")
        }
        other => other.to_string(),
    }
}

/// The segment with each span's characters replaced by `*`.
fn mask(segment: &str, mut spans: Vec<Range<usize>>) -> String {
    spans.sort_by_key(|span| span.start);
    let mut spans = spans.into_iter().peekable();
    let mut current: Option<Range<usize>> = None;
    let mut masked = String::with_capacity(segment.len());
    for (at, c) in segment.char_indices() {
        while current.as_ref().is_none_or(|span| span.end <= at) {
            match spans.peek() {
                Some(next) if next.start <= at => current = spans.next(),
                _ => break,
            }
        }
        let inside = current
            .as_ref()
            .is_some_and(|span| span.start <= at && at < span.end);
        masked.push(if inside { '*' } else { c });
    }
    masked
}

/// A folded form of some text, each folded character traced back to the characters it came from.
struct View {
    folded: String,
    /// Only units that produced folded characters, in order.
    units: Vec<Unit>,
    /// Byte ranges of `folded`, one per token: a run of word characters, or one Han/kana unit.
    tokens: Vec<Range<usize>>,
}

struct Unit {
    source: Range<usize>,
    folded: Range<usize>,
    token: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Letters and digits of scripts that space their words: runs of them form one token.
    Word,
    /// A Han character or a kana unit: a token of its own.
    Solo,
}

impl View {
    /// `romanise`: Han as toneless pinyin and kana as Hepburn romaji, instead of as written.
    fn build(text: &str, romanise: bool) -> View {
        let mut view = View {
            folded: String::with_capacity(text.len()),
            units: Vec::new(),
            tokens: Vec::new(),
        };
        let mut last_kind = None;
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut index = 0;
        while let Some(&(start, c)) = chars.get(index) {
            let folded_start = view.folded.len();
            let mut next = index + 1;
            let kind = if is_han(c) {
                let reading = romanise
                    .then(|| pinyin::ToPinyin::to_pinyin(&c))
                    .flatten()
                    .map(pinyin::Pinyin::plain);
                match reading {
                    Some(reading) => push_folded(&mut view.folded, reading.chars()),
                    None => view.folded.push(c),
                }
                Some(Kind::Solo)
            } else if c == 'ー' || c == 'ｰ' {
                // The long-vowel mark: ignored, so `バーカ` reads as `バカ`.
                Some(Kind::Solo)
            } else if let Some(kana) = kana_fold(c) {
                if romanise {
                    next = push_romaji(&mut view.folded, &chars, index);
                } else {
                    view.folded.push(kana);
                }
                Some(Kind::Solo)
            } else {
                push_folded(&mut view.folded, std::iter::once(c));
                (view.folded.len() > folded_start).then_some(Kind::Word)
            };
            let end = chars.get(next).map_or(text.len(), |&(at, _)| at);
            let folded = folded_start..view.folded.len();
            if folded.is_empty() {
                last_kind = kind.filter(|kind| *kind == Kind::Word);
            } else {
                let continues = kind == Some(Kind::Word) && last_kind == Some(Kind::Word);
                if !continues {
                    view.tokens.push(folded.clone());
                }
                let token = view.tokens.len() - 1;
                if let Some(range) = view.tokens.last_mut() {
                    range.end = folded.end;
                }
                view.units.push(Unit {
                    source: start..end,
                    folded,
                    token,
                });
                last_kind = kind;
            }
            index = next;
        }
        view
    }

    /// Looks for every occurrence of `needle` and pushes the source span of each accepted one.
    fn find(&self, needle: &str, whole: bool, spans: &mut Vec<Range<usize>>) -> bool {
        let mut found = false;
        let mut from = 0;
        while let Some(offset) = self.folded.get(from..).and_then(|rest| rest.find(needle)) {
            let start = from + offset;
            if let Some(span) = self.accept(start..start + needle.len(), whole) {
                spans.push(span);
                found = true;
            }
            from = start
                + self.folded[start..]
                    .chars()
                    .next()
                    .map_or(1, char::len_utf8);
        }
        found
    }

    /// A hit must cover whole units (never half a pinyin syllable or kana). Inside one word it may
    /// sit anywhere (`fuck` in `fucking`), unless `whole`; across tokens (`sha bi`, `傻逼`) it must
    /// start where a token starts and end where one ends, so `cash a bit` is not `shabi`.
    fn accept(&self, hit: Range<usize>, whole: bool) -> Option<Range<usize>> {
        let first = self
            .units
            .partition_point(|unit| unit.folded.start <= hit.start)
            .checked_sub(1)?;
        let last = self
            .units
            .partition_point(|unit| unit.folded.start < hit.end)
            .checked_sub(1)?;
        let (first, last) = (self.units.get(first)?, self.units.get(last)?);
        if first.folded.start != hit.start || last.folded.end != hit.end {
            return None;
        }
        let aligned = self.tokens.get(first.token)?.start == hit.start
            && self.tokens.get(last.token)?.end == hit.end;
        let accepted = if whole {
            aligned
        } else {
            first.token == last.token || aligned
        };
        accepted.then_some(first.source.start..last.source.end)
    }
}

/// Lowercase, full-width as ASCII, accents and tones folded, look-alike digits and signs read as
/// letters, and everything that is not a letter or digit dropped (as chat's `fold_for_words`).
fn push_folded(folded: &mut String, text: impl Iterator<Item = char>) {
    let letters = text
        .map(fold_width)
        .flat_map(char::to_lowercase)
        .map(fold_accent)
        .map(read_lookalike)
        .filter(|c| c.is_alphanumeric());
    folded.extend(letters);
}

/// Full-width ASCII (`ｓｂ`, `！`) → ASCII.
fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        other => other,
    }
}

fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3134F}'
        | '々')
}

/// A kana as hiragana (katakana folded); half-width katakana are kana but kept as they are.
fn kana_fold(c: char) -> Option<char> {
    match c {
        '\u{3041}'..='\u{3096}' | '\u{30F7}'..='\u{30FA}' | '\u{FF66}'..='\u{FF9D}' => Some(c),
        '\u{30A1}'..='\u{30F6}' => char::from_u32(c as u32 - 0x60),
        _ => None,
    }
}

/// Romanises the kana unit starting at `chars[index]`: leading `っ`s, one kana, and a small
/// `ゃゅょ` or vowel that combines with it (`きゃ`, `ファ`). Returns the index after the unit.
fn push_romaji(folded: &mut String, chars: &[(usize, char)], index: usize) -> usize {
    let kana_at = |at: usize| chars.get(at).and_then(|&(_, c)| kana_fold(c));
    let mut at = index;
    let mut doubled = false;
    while kana_at(at) == Some('っ') {
        doubled = true;
        at += 1;
    }
    let Some(base) = kana_at(at).and_then(hepburn) else {
        // `っ` before nothing it could double, or a kana without a romaji (half-width): nothing.
        return at.max(index + 1);
    };
    at += 1;
    let mut romaji = base.to_owned();
    match kana_at(at) {
        Some(small @ ('ゃ' | 'ゅ' | 'ょ')) if base.len() >= 2 && base.ends_with('i') => {
            romaji.pop();
            let vowel = match small {
                'ゃ' => 'a',
                'ゅ' => 'u',
                _ => 'o',
            };
            if !matches!(base, "shi" | "chi" | "ji") {
                romaji.push('y');
            }
            romaji.push(vowel);
            at += 1;
        }
        Some(small @ ('ぁ' | 'ぃ' | 'ぅ' | 'ぇ' | 'ぉ')) => {
            let vowel = hepburn(small).unwrap_or_default();
            match base {
                "u" => romaji = "w".to_owned(),
                "i" => romaji = "y".to_owned(),
                _ => {
                    romaji.pop();
                }
            }
            romaji.push_str(vowel);
            at += 1;
        }
        _ => {}
    }
    if doubled {
        if romaji.starts_with("ch") {
            romaji.insert(0, 't');
        } else if let Some(first) = romaji.chars().next().filter(|c| !"aiueon".contains(*c)) {
            romaji.insert(0, first);
        }
    }
    folded.push_str(&romaji);
    at
}

/// Modern Hepburn for one hiragana.
fn hepburn(kana: char) -> Option<&'static str> {
    Some(match kana {
        'あ' | 'ぁ' => "a",
        'い' | 'ぃ' | 'ゐ' => "i",
        'う' | 'ぅ' => "u",
        'え' | 'ぇ' | 'ゑ' => "e",
        'お' | 'ぉ' | 'を' => "o",
        'か' | 'ゕ' => "ka",
        'き' => "ki",
        'く' => "ku",
        'け' | 'ゖ' => "ke",
        'こ' => "ko",
        'が' => "ga",
        'ぎ' => "gi",
        'ぐ' => "gu",
        'げ' => "ge",
        'ご' => "go",
        'さ' => "sa",
        'し' => "shi",
        'す' => "su",
        'せ' => "se",
        'そ' => "so",
        'ざ' => "za",
        'じ' | 'ぢ' => "ji",
        'ず' | 'づ' => "zu",
        'ぜ' => "ze",
        'ぞ' => "zo",
        'た' => "ta",
        'ち' => "chi",
        'つ' => "tsu",
        'て' => "te",
        'と' => "to",
        'だ' => "da",
        'で' => "de",
        'ど' => "do",
        'な' => "na",
        'に' => "ni",
        'ぬ' => "nu",
        'ね' => "ne",
        'の' => "no",
        'は' => "ha",
        'ひ' => "hi",
        'ふ' => "fu",
        'へ' => "he",
        'ほ' => "ho",
        'ば' => "ba",
        'び' => "bi",
        'ぶ' => "bu",
        'べ' => "be",
        'ぼ' => "bo",
        'ぱ' => "pa",
        'ぴ' => "pi",
        'ぷ' => "pu",
        'ぺ' => "pe",
        'ぽ' => "po",
        'ま' => "ma",
        'み' => "mi",
        'む' => "mu",
        'め' => "me",
        'も' => "mo",
        'や' | 'ゃ' => "ya",
        'ゆ' | 'ゅ' => "yu",
        'よ' | 'ょ' => "yo",
        'ら' => "ra",
        'り' => "ri",
        'る' => "ru",
        'れ' => "re",
        'ろ' => "ro",
        'わ' | 'ゎ' => "wa",
        'ん' => "n",
        'ゔ' => "vu",
        'ヷ' => "va",
        'ヸ' => "vi",
        'ヹ' => "ve",
        'ヺ' => "vo",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn filter(list: &str) -> OutputFilter {
        OutputFilter::parse(list).unwrap()
    }

    /// The masked text, or `None` when clean.
    fn masked(filter: &OutputFilter, segment: &str) -> Option<String> {
        match filter.check(segment) {
            FilterVerdict::Clean => None,
            FilterVerdict::Hit { masked, .. } => Some(masked),
        }
    }

    fn assert_hits(filter: &OutputFilter, segments: &[&str]) {
        for segment in segments {
            assert!(!filter.check(segment).is_clean(), "{segment:?} is filtered");
        }
    }

    fn assert_clean(filter: &OutputFilter, segments: &[&str]) {
        for segment in segments {
            assert!(filter.check(segment).is_clean(), "{segment:?} is clean");
        }
    }

    #[test]
    fn masking_keeps_the_clean_text_around_a_han_word() {
        let list = filter("傻逼");
        assert_eq!(
            list.check("你这个傻逼，快走"),
            FilterVerdict::Hit {
                entries: vec!["傻逼".to_owned()],
                masked: "你这个**，快走".to_owned(),
            },
            "only the two characters of the word are masked"
        );
        assert_clean(&list, &["你这个傻子，快走", "逼近"]);
    }

    #[test]
    fn a_han_word_catches_its_pinyin_in_latin_letters() {
        let list = filter("傻逼");
        assert_eq!(
            masked(&list, "you are sha bi, ok").as_deref(),
            Some("you are ******, ok")
        );
        assert_eq!(
            masked(&list, "Shǎ Bī!").as_deref(),
            Some("******!"),
            "the space between the syllables too"
        );
        assert_hits(&list, &["SHABI", "5hab1", "ｓｈａｂｉ"]);
        assert_clean(&list, &["cash a bit", "沙比"]);
    }

    #[test]
    fn a_pinyin_word_catches_the_han_spelling() {
        let list = filter("shabi");
        assert_eq!(masked(&list, "你这个傻逼").as_deref(), Some("你这个**"));
        assert_eq!(
            masked(&list, "sha逼").as_deref(),
            Some("****"),
            "mixed spellings"
        );
        assert_hits(&list, &["ni shǎbī a", "s h a b i"]);
    }

    #[test]
    fn romanised_hits_cover_whole_syllables_and_kana() {
        let shit = filter("shit");
        assert_clean(&shit, &["是他", "しってる", "した"]);
        assert_hits(&shit, &["sh1t", "bullshit"]);
        assert_clean(&filter("huang"), &["壮"]);
    }

    #[test]
    fn han_words_do_not_catch_han_homophones_nor_short_latin_han() {
        let death = filter("死");
        assert_hits(&death, &["去死", "si"]);
        assert_clean(&death, &["四个", "sister"]);
        assert_clean(&filter("sb"), &["傻逼"]);
    }

    #[test]
    fn kana_words_catch_katakana_long_vowels_and_romaji() {
        let list = filter("ばか");
        assert_eq!(masked(&list, "お前はバカだ").as_deref(), Some("お前は**だ"));
        assert_eq!(masked(&list, "ばーか！").as_deref(), Some("***！"));
        assert_eq!(masked(&list, "B A K A").as_deref(), Some("*******"));
        assert_clean(&list, &["ばけ", "bake"]);
    }

    #[test]
    fn romaji_words_catch_kana() {
        let list = filter("baka");
        assert_eq!(masked(&list, "お前はバカだ").as_deref(), Some("お前は**だ"));
        assert_hits(&filter("kyoushitsu"), &["きょうしつ"]);
        assert_hits(&filter("matcha"), &["まっちゃ"]);
        assert_hits(&filter("fairu"), &["ファイル"]);
        assert_hits(&filter("kitte"), &["キッテ"]);
    }

    #[test]
    fn english_words_match_spaced_out_and_leetspeak() {
        let list = filter("fuck");
        assert_eq!(
            masked(&list, "what the f u c k.").as_deref(),
            Some("what the *******.")
        );
        assert_eq!(
            masked(&list, "FUCKING hell").as_deref(),
            Some("****ING hell")
        );
        assert_hits(&list, &["fück", "f.u.c.k"]);
        assert_clean(&list, &["fu cking"]);
    }

    #[test]
    fn short_words_only_match_whole_words() {
        let list = filter("ass, sb");
        assert_hits(
            &list,
            &["kiss my a$$", "ass.", "u r sb", "S.B.", "你是sb吧", "ＳＢ"],
        );
        assert_clean(&list, &["first class", "assistant", "a sbstantial pun"]);
    }

    #[test]
    fn patterns_are_regular_expressions_on_the_text_as_written() {
        let list = filter("/f+u+c+k+/i, /Bad/, /a{2,3}/");
        assert_eq!(
            list.entries(),
            ["/f+u+c+k+/i", "/Bad/", "/a{2,3}/"],
            "the comma inside the braces is part of the pattern"
        );
        assert_eq!(masked(&list, "FUUUCK off").as_deref(), Some("****** off"));
        assert_hits(&list, &["Bad", "aa"]);
        assert_clean(&list, &["bad", "a"]);
        assert_eq!(
            filter("/a/b/").entries(),
            ["/a/b/"],
            "an inner slash does not close it"
        );
    }

    #[test]
    fn invalid_patterns_are_refused_with_the_entry_named() {
        let error = OutputFilter::parse("ok, /x(/, fine").unwrap_err();
        assert_eq!(
            error,
            FilterError::InvalidPattern {
                entry: "/x(/".to_owned(),
                reason: "unclosed group".to_owned()
            }
        );
        assert_eq!(
            error.to_string(),
            "“/x(/” is not a valid pattern: unclosed group."
        );
        let unclosed = OutputFilter::parse("/abc").unwrap_err();
        assert_eq!(
            unclosed.to_string(),
            "“/abc” is not a valid pattern: a pattern is written /…/ or /…/i."
        );
        let empty = OutputFilter::parse("/a*/").unwrap_err();
        assert!(
            matches!(empty, FilterError::InvalidPattern { ref entry, .. } if entry == "/a*/"),
            "a pattern that matches empty text would filter everything: {empty}"
        );
        let huge = OutputFilter::parse(r"/\w{500}\w{500}/").unwrap_err();
        assert!(huge.to_string().contains("too large"), "{huge}");
    }

    #[test]
    fn the_list_is_bounded() {
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|n| format!("word{n}")).collect();
        assert_eq!(
            OutputFilter::parse(&many.join(",")).unwrap_err(),
            FilterError::TooManyEntries { max: MAX_ENTRIES }
        );
        let patterns: Vec<String> = (0..=MAX_PATTERNS).map(|n| format!("/x{n}/")).collect();
        assert_eq!(
            OutputFilter::parse(&patterns.join("\n")).unwrap_err(),
            FilterError::TooManyPatterns { max: MAX_PATTERNS }
        );
        let long = "a".repeat(MAX_ENTRY_CHARS + 1);
        assert!(matches!(
            OutputFilter::parse(&long),
            Err(FilterError::EntryTooLong { .. })
        ));
        assert_eq!(
            OutputFilter::parse("ok, !!!").unwrap_err().to_string(),
            "“!!!” has no letters or digits to match; write a word, or a pattern as /…/."
        );
    }

    #[test]
    fn entries_split_on_commas_and_newlines_in_both_widths() {
        let list = filter(" a1b2 ，傻逼、ばか\r\n\n shabi , shabi,,");
        assert_eq!(
            list.entries(),
            ["a1b2", "傻逼", "ばか", "shabi"],
            "trimmed, empties and repeats dropped"
        );
    }

    #[test]
    fn an_empty_list_passes_everything() {
        for list in ["", " , \n，、 "] {
            let list = filter(list);
            assert!(list.is_empty());
            assert_eq!(list.check("你这个傻逼 fuck"), FilterVerdict::Clean);
        }
        assert!(OutputFilter::default().check("anything").is_clean());
    }

    #[test]
    fn the_reason_names_every_entry_that_hit_in_list_order() {
        let list = filter("/f+u+c+k+/i, 傻逼, clean");
        let verdict = list.check("傻逼 fuuuck");
        assert_eq!(
            verdict.reason().as_deref(),
            Some("filtered: /f+u+c+k+/i, 傻逼")
        );
        assert_eq!(list.check("hello").reason(), None);
    }

    #[test]
    fn filter_actions_parse_and_print() {
        for action in [FilterAction::Mask, FilterAction::Skip, FilterAction::Stop] {
            assert_eq!(action.as_str().parse::<FilterAction>().unwrap(), action);
        }
        assert_eq!(
            " STOP ".parse::<FilterAction>().unwrap(),
            FilterAction::Stop
        );
        let error = "ban".parse::<FilterAction>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "“ban” is not a filter action; use mask, skip or stop."
        );
        assert_eq!(
            serde_json::to_string(&FilterAction::Skip).unwrap(),
            "\"skip\"",
            "the config spells it as the form does"
        );
    }

    proptest! {
        #[test]
        fn check_never_panics_and_masks_in_place(
            segment in "(\\PC|[傻逼ばかバカっッーしゃｓ5$@ ,.]){0,40}",
            random in any::<String>(),
        ) {
            let list = filter("傻逼, ばか, baka, shabi, sb, ass, fuck, /b.d/i, 死");
            for text in [segment.as_str(), random.as_str()] {
                if let FilterVerdict::Hit { masked, entries } = list.check(text) {
                    prop_assert!(!entries.is_empty());
                    prop_assert_eq!(masked.chars().count(), text.chars().count());
                    for (out, original) in masked.chars().zip(text.chars()) {
                        prop_assert!(out == original || out == '*');
                    }
                }
            }
        }
    }
}
