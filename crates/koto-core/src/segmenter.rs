//! Streaming segmenter: cuts an LLM reply into speakable segments while it is still being
//! written. No IO and no clock: the engine owns time and calls `flush_first_clause` when its
//! bound for the first audio elapses.
//!
//! # Rules
//! - **Hard stops** end a segment: `。｡！？…‥⋯．‼⁇⁈⁉`, newlines, ASCII `!`/`?` unless glued to
//!   ASCII (`?q=1`), and `.` when it ends a sentence: followed by a newline, CJK, the end of
//!   the reply, or a space and then anything but a lowercase letter, unless the word before
//!   is an abbreviation (`Mr.`, `e.g.`, `U.S.`, `J.`, `Jan. 5`), or a list number at the start of a
//!   line. `3.14` and `example.com/a.b` are not ends; `...` always is. A `.` at the very end
//!   of the text received so far stays undecided until the next char (or `finish`).
//! - **Pauses** `，、；：､` and ASCII `,;:` (unless glued to ASCII: `1,000`, `10:30`,
//!   `http://`) end a segment once it is `soft_break_min_chars` wide.
//! - What follows a stop goes with it: repeated stops (`?!`, `……`), closing quotes and
//!   brackets (`」』》”)）` and `"`/`'` right after the stop), spaces, closing markup and emoji.
//!   Opening quotes and brackets, and opening markup, start the next segment.
//! - **Length**: a segment reaching `max_chars` with no break is cut there (CJK) or where the
//!   current word ends (other scripts; a word 1.5× too long is cut anyway).
//! - **First clause**: the first segment of the reply is cut at its first pause once it is
//!   `first_clause_min_chars` wide, or at `first_clause_max_chars` without a pause, so the
//!   first audio does not wait for a whole sentence. Later segments use the normal limits.
//! - **Width** is counted in CJK chars: a Han char, kana or hangul counts 1, any other letter
//!   or digit ⅓ (English is spoken at about three letters per Han char), punctuation, spaces
//!   and markup 0.
//! - **Not spoken** (each switchable, all kept in `Segment::text`): `<think>…</think>` (also
//!   `<thinking>`, also split across deltas), markdown marks (`*`, `**`, `_`, `~~`, backticks,
//!   fence lines, `#` headings, bullets, `1.` markers, `>` quotes, `[text](url)` → `text`,
//!   `![alt](url)` → `alt`), emoji, and `*stage directions*`: a single-asterisk span on one
//!   line, at most 80 chars, whose `*` does not follow a letter or digit (until its closing
//!   `*`, the newline or the 80th char arrives, the text after the `*` waits). While stage
//!   directions are stripped, markdown's `*emphasis*` counts as one (use `_emphasis_` or
//!   `**bold**`, which are spoken); with them kept, only the asterisks are dropped.
//!   Brackets like `（笑）` are spoken. Not handled: tables, HTML other than think tags.
//! - **`speak`** is the segment's spoken chars with each run of whitespace turned into one
//!   space and the ends trimmed; nothing else is changed. It is never blank: a segment is
//!   only cut once the next one has a letter or digit, and markup or punctuation with nothing
//!   to say joins its neighbour.
//!
//! # Guarantees
//! - The segments do not depend on how the reply was split into deltas (except for
//!   `flush_first_clause`, which is driven by time).
//! - The `text`s of all segments followed by `pending_text()` are exactly the reply. After
//!   `finish`, `pending_text()` is empty unless what follows the last segment (or the whole
//!   reply) has nothing to say, e.g. an emoji after a `flush_first_clause` cut.
//! - Linear time: every char is classified once and looked at a bounded number of times;
//!   undecided lookaheads resume where they stopped.

mod boundary;
mod chars;
mod markup;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod properties;

use serde::{Deserialize, Serialize};

use boundary::{Boundary, Limits};
use chars::normalize_speak;
use markup::{ItemLog, MarkupRules, MarkupScanner};

/// Segmenter tuning. Widths are in CJK chars (see the module docs); values below 1 are
/// treated as 1 where a zero would make no sense.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SegmenterConfig {
    /// The first segment is cut at a pause once it is this wide.
    pub first_clause_min_chars: usize,
    /// The first segment is cut at this width even without a pause.
    pub first_clause_max_chars: usize,
    /// Later segments are cut at a pause once they are this wide.
    pub soft_break_min_chars: usize,
    /// Later segments are cut at this width even without a pause.
    pub max_chars: usize,
    pub strip_think: bool,
    pub strip_markdown: bool,
    pub strip_emoji: bool,
    pub strip_stage_directions: bool,
}

impl Default for SegmenterConfig {
    /// About 1 s of speech before the first pause may cut, at most 5 s before the first audio
    /// segment is cut; later segments 4–12 s (Chinese ≈ 4–5 chars/s, English ≈ 13 letters/s).
    fn default() -> Self {
        SegmenterConfig {
            first_clause_min_chars: 2,
            first_clause_max_chars: 24,
            soft_break_min_chars: 20,
            max_chars: 60,
            strip_think: true,
            strip_markdown: true,
            strip_emoji: true,
            strip_stage_directions: true,
        }
    }
}

/// Bytes of `text` up to the end of its last complete sentence (a stop and the closing quotes
/// or brackets after it; ASCII `.` `!` `?` count when a space, a line break or the end follows);
/// 0 when no sentence ends in it. A reply cut by a token cap is kept up to here.
pub fn end_of_last_sentence(text: &str) -> usize {
    let mut end = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let ascii_stop = matches!(c, '.' | '!' | '?')
            && chars.peek().is_none_or(|(_, next)| {
                next.is_whitespace() || chars::is_closer(*next) || chars::is_ascii_quote(*next)
            });
        if chars::is_hard_stop(c) || chars::is_newline(c) || ascii_stop {
            let mut stop = at + c.len_utf8();
            while let Some((next_at, next)) = chars.peek().copied() {
                if !(chars::is_closer(next)
                    || chars::is_ascii_quote(next)
                    || matches!(next, '.' | '!' | '?'))
                {
                    break;
                }
                stop = next_at + next.len_utf8();
                chars.next();
            }
            end = stop;
        }
    }
    end
}

/// One piece of the reply, ready for TTS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// 0, 1, 2… within the reply.
    pub index: u32,
    /// The reply's text for this span, markup included: the transcript. It may end with the
    /// spaces, newlines and closing markup that followed the sentence.
    pub text: String,
    /// What TTS should say: `text` without markup, whitespace normalised. Never blank.
    pub speak: String,
}

/// Cuts one reply (one turn) into segments. Feed it the LLM deltas with `push`, then call
/// `finish`.
#[derive(Debug)]
pub struct Segmenter {
    /// Received text not yet emitted; starts at reply offset `buf_base`.
    buf: String,
    buf_base: usize,
    /// Reply offset and item index where the current segment starts.
    seg_offset: usize,
    seg_item: usize,
    scanner: MarkupScanner,
    items: ItemLog,
    boundary: Boundary,
    next_index: u32,
    /// `flush_first_clause` found nothing to cut: cut as soon as something can be.
    first_clause_due: bool,
    finished: bool,
}

impl Segmenter {
    pub fn new(config: SegmenterConfig) -> Self {
        let thirds = |chars: usize, floor: usize| {
            u32::try_from(chars.max(floor).saturating_mul(3)).unwrap_or(u32::MAX)
        };
        let limits = Limits {
            first_soft: thirds(config.first_clause_min_chars, 0),
            first_max: thirds(config.first_clause_max_chars, 1),
            soft: thirds(config.soft_break_min_chars, 0),
            max: thirds(config.max_chars, 1),
        };
        let rules = MarkupRules {
            think: config.strip_think,
            markdown: config.strip_markdown,
            emoji: config.strip_emoji,
            stage_directions: config.strip_stage_directions,
        };
        Segmenter {
            buf: String::new(),
            buf_base: 0,
            seg_offset: 0,
            seg_item: 0,
            scanner: MarkupScanner::new(rules),
            items: ItemLog::default(),
            boundary: Boundary::new(limits),
            next_index: 0,
            first_clause_due: false,
            finished: false,
        }
    }

    /// Adds a delta; returns the segments it completed (often none). Ignored after `finish`.
    pub fn push(&mut self, delta: &str) -> Vec<Segment> {
        if self.finished || delta.is_empty() {
            return Vec::new();
        }
        self.buf.push_str(delta);
        let mut segments = self.run(false);
        if self.first_clause_due && self.next_index == 0 {
            segments.extend(self.cut_first_clause());
        }
        segments
    }

    /// The reply is complete: returns the remaining segments.
    pub fn finish(&mut self) -> Vec<Segment> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut segments = self.run(true);
        if self.boundary.has_speakable() {
            let end = self.items.end();
            segments.push(self.cut(end));
            self.forget_emitted();
        }
        segments
    }

    /// The engine's time bound for the first segment elapsed: returns what the first segment
    /// has so far, cut after its last complete word (all of it for CJK). `None` when the first
    /// segment is already out or nothing complete can be said yet; in the latter case the
    /// first segment is cut by the next `push` that makes it possible.
    pub fn flush_first_clause(&mut self) -> Option<Segment> {
        if self.finished || self.next_index != 0 {
            return None;
        }
        let segment = self.cut_first_clause();
        self.first_clause_due = segment.is_none();
        segment
    }

    /// Text received but not part of any segment returned so far. After `finish` it is empty
    /// unless it has nothing to say (see the module docs).
    pub fn pending_text(&self) -> &str {
        self.buf
            .get(self.seg_offset.saturating_sub(self.buf_base)..)
            .unwrap_or_default()
    }

    fn run(&mut self, eof: bool) -> Vec<Segment> {
        self.scanner
            .scan(&self.buf, self.buf_base, eof, &mut self.items);
        let mut cuts = Vec::new();
        self.boundary.advance(&self.items, eof, &mut cuts);
        let segments: Vec<Segment> = cuts.into_iter().map(|at| self.cut(at)).collect();
        self.forget_emitted();
        segments
    }

    fn cut_first_clause(&mut self) -> Option<Segment> {
        let at = self.boundary.force_first_cut()?;
        let segment = self.cut(at);
        self.forget_emitted();
        self.first_clause_due = false;
        Some(segment)
    }

    /// Emits the current segment, ending before item `at` (or at the end of the classified text
    /// when `at` is past the last item).
    fn cut(&mut self, at: usize) -> Segment {
        let end_offset = self
            .items
            .get(at)
            .map_or(self.scanner.position(), |item| item.offset);
        let text = self
            .buf
            .get(self.seg_offset - self.buf_base..end_offset - self.buf_base)
            .unwrap_or_default()
            .to_owned();
        let speak = normalize_speak(
            self.items
                .range(self.seg_item, at)
                .iter()
                .filter(|item| item.is_spoken())
                .map(|item| item.ch),
        );
        self.seg_offset = end_offset;
        self.seg_item = at;
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        Segment { index, text, speak }
    }

    fn forget_emitted(&mut self) {
        self.buf.drain(..self.seg_offset - self.buf_base);
        self.buf_base = self.seg_offset;
        self.items.forget_before(self.seg_item);
    }
}

#[cfg(test)]
mod sentence_end_tests {
    use super::end_of_last_sentence;

    fn cut(text: &str) -> &str {
        &text[..end_of_last_sentence(text)]
    }

    #[test]
    fn a_capped_reply_keeps_its_complete_sentences() {
        assert_eq!(cut("It was fun. And then we"), "It was fun.");
        assert_eq!(cut("Really?! \"Yes.\" So"), "Really?! \"Yes.\"");
        assert_eq!(cut("今天是晴天。我们去"), "今天是晴天。");
        assert_eq!(cut("Pi is 3.14 and"), "", "a decimal point ends nothing");
        assert_eq!(cut("no stop at all"), "");
        assert_eq!(cut("Done."), "Done.");
    }
}
