//! Character classes the segmenter cuts on: pure functions of one `char`, no context, no state.
//!
//! Context-dependent decisions (is this `.` a sentence end, is this `*` markup) live in
//! `boundary` and `markup`; this file only names sets of characters.

/// Line breaks. Each one ends a segment: list items and paragraphs are spoken one by one.
pub(super) fn is_newline(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Stops that end a sentence wherever they appear. ASCII `!`, `?` and `.` are not here: what
/// follows them decides (`?q=1` in a URL, `3.14`, `e.g.`).
pub(super) fn is_hard_stop(c: char) -> bool {
    matches!(
        c,
        '。' | '｡' | '！' | '？' | '…' | '‥' | '⋯' | '．' | '‼' | '⁇' | '⁈' | '⁉'
    )
}

/// Full-width pauses: a cut candidate once the segment is long enough, whatever follows.
pub(super) fn is_wide_soft_break(c: char) -> bool {
    matches!(c, '，' | '、' | '；' | '：' | '､')
}

/// ASCII pauses: a cut candidate only when not glued to ASCII (`1,000`, `10:30`, `http://`).
pub(super) fn is_ascii_soft_break(c: char) -> bool {
    matches!(c, ',' | ';' | ':')
}

/// Brackets and quotes that open a span: after a stop they start the next segment.
pub(super) fn is_opener(c: char) -> bool {
    matches!(
        c,
        '「' | '『'
            | '《'
            | '〈'
            | '【'
            | '〔'
            | '〖'
            | '〘'
            | '〚'
            | '“'
            | '‘'
            | '('
            | '（'
            | '['
            | '［'
            | '{'
            | '｛'
            | '«'
            | '‹'
            | '｢'
    )
}

/// Brackets and quotes that close a span: after a stop they stay with their sentence.
pub(super) fn is_closer(c: char) -> bool {
    matches!(
        c,
        '」' | '』'
            | '》'
            | '〉'
            | '】'
            | '〕'
            | '〗'
            | '〙'
            | '〛'
            | '”'
            | '’'
            | ')'
            | '）'
            | ']'
            | '］'
            | '}'
            | '｝'
            | '»'
            | '›'
            | '｣'
    )
}

/// ASCII quotes are both openers and closers; position decides (see `boundary`).
pub(super) fn is_ascii_quote(c: char) -> bool {
    c == '"' || c == '\''
}

/// Scripts written without spaces, one syllable-ish per char: Han, kana, hangul, full-width
/// letters and digits. Such a char weighs 1 in widths and may be cut after.
pub(super) fn is_cjk(c: char) -> bool {
    matches!(
        c as u32,
        0x1100..=0x11FF // hangul jamo
            | 0x3005..=0x3007 // 々 〆 〇
            | 0x3040..=0x30FF // hiragana, katakana (incl. ー)
            | 0x3130..=0x318F // hangul compatibility jamo
            | 0x31F0..=0x31FF // katakana phonetic extensions
            | 0x3400..=0x4DBF // CJK extension A
            | 0x4E00..=0x9FFF // CJK unified ideographs
            | 0xAC00..=0xD7AF // hangul syllables
            | 0xF900..=0xFAFF // CJK compatibility ideographs
            | 0xFF10..=0xFF19 // full-width digits
            | 0xFF21..=0xFF3A // full-width latin capitals
            | 0xFF41..=0xFF5A // full-width latin small letters
            | 0xFF66..=0xFF9F // half-width katakana
            | 0x20000..=0x3FFFF // CJK extensions B and later
    )
}

/// A char TTS actually pronounces: letters, digits (any script) and a few symbols that read as
/// words. A segment needs at least one; punctuation, spaces and emoji alone are not worth a
/// TTS call.
pub(super) fn is_speakable(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(
            c,
            '%' | '‰'
                | '$'
                | '€'
                | '£'
                | '¥'
                | '￥'
                | '₩'
                | '&'
                | '@'
                | '#'
                | '+'
                | '='
                | '°'
                | '℃'
                | '℉'
                | '×'
                | '÷'
                | '±'
        )
}

/// Width of a speakable char in thirds of a CJK char. A CJK char takes about as long to say as
/// three Latin letters (≈4–5 Han chars/s against ≈12–14 letters/s in English), so widths in
/// the config are in CJK chars and one Latin letter or digit counts a third.
pub(super) fn width_in_thirds(c: char) -> u32 {
    if is_cjk(c) { 3 } else { 1 }
}

/// Emoji and their glue (ZWJ, variation selectors, skin tones, keycaps, tag sequences), plus the
/// pictographic symbol blocks chat models sprinkle around (`♪`, `★`, `▶`).
pub(super) fn is_emoji(c: char) -> bool {
    matches!(
        c as u32,
        0x200D // zero-width joiner
            | 0x20E3 // combining keycap
            | 0x2300..=0x23FF // misc technical: ⌚ ⏰ ⏳
            | 0x25A0..=0x25FF // geometric shapes: ▶ ◀ ●
            | 0x2600..=0x2775 // misc symbols, dingbats: ☀ ★ ♪ ✅ ❤
            | 0x2794..=0x27BF // (between them ❶–➓ are numbers, read aloud)
            | 0x2934..=0x2935
            | 0x2B00..=0x2BFF // arrows and stars: ⬆ ⭐ ⭕
            | 0x3030 | 0x303D | 0x3297 | 0x3299
            | 0xFE0E..=0xFE0F // variation selectors
            | 0x1F000..=0x1FAFF // mahjong … symbols & pictographs extended-A, flags, skin tones
            | 0xE0020..=0xE007F // tag sequences (subdivision flags)
    )
}

/// Whitespace runs (newlines included) become one space; leading and trailing ones go. This
/// is the only change `speak` makes besides dropping markup.
pub(super) fn normalize_speak(spoken: impl Iterator<Item = char>) -> String {
    let mut speak = String::new();
    let mut space_pending = false;
    for c in spoken {
        if c.is_whitespace() {
            space_pending = !speak.is_empty();
        } else {
            if space_pending {
                speak.push(' ');
                space_pending = false;
            }
            speak.push(c);
        }
    }
    speak
}
