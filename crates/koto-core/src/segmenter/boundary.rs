//! Where segments end: a state machine over classified chars that finds sentence ends, pauses
//! and length cuts. It never reads markup (that is `markup`'s job) and never looks at the
//! clock (the engine owns time).
//!
//! A segment is only cut when the first speakable char of the next one has arrived. Until then
//! the closing quotes, repeated stops, spaces and closing markup that follow a stop can still
//! join it, so a segment never ends up as punctuation or markup alone, and where the cut falls
//! does not depend on how the text was split into deltas.

use super::chars::{
    is_ascii_quote, is_ascii_soft_break, is_cjk, is_closer, is_hard_stop, is_newline, is_opener,
    is_speakable, is_wide_soft_break, width_in_thirds,
};
use super::markup::{Attach, Class, Item, ItemLog};

/// Titles and other words that end in `.` without ending a sentence. Dotted acronyms
/// (`U.S.`, `e.g.`, `Ph.D.`) and initials (`J. K.`) are recognised by shape instead.
const ABBREVIATIONS: &[&str] = &[
    "Mr", "Mrs", "Ms", "Mx", "Dr", "Prof", "Sr", "Jr", "St", "Mt", "Ft", "vs", "Vs", "cf", "Cf",
    "approx", "Approx", "ca", "Fig", "fig", "Eq", "eq", "Gen", "Col", "Capt", "Lt", "Sgt", "Rev",
    "Hon", "Gov", "Sen", "Rep", "Pres", "Ave", "Blvd", "Dept", "Univ", "vol", "Vol", "pp",
];
/// Words that end in `.` before a number: `Jan. 5`, `No. 3`, `p. 12` (but `No. I won't.`).
const BEFORE_NUMBER: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec", "No",
    "no", "Nos", "p", "ch", "Ch", "sec", "Sec", "art", "Art", "ed", "v", "ver", "Ver",
];
/// How far back the abbreviation check looks: longer words are not abbreviations.
const WORD_LOOKBACK: usize = 16;
/// How far back the "is this number at the start of a line" check looks.
const LINE_LOOKBACK: usize = 64;

/// Length limits in thirds of a CJK char (see `width_in_thirds`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) first_soft: u32,
    pub(super) first_max: u32,
    pub(super) soft: u32,
    pub(super) max: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct SegmentState {
    has_speakable: bool,
    width: u32,
    /// Latest index where a time-driven cut would not split a word or a number.
    safe_cut: Option<usize>,
    /// The length limit was reached inside a word: cut where the word ends.
    cut_at_word_end: bool,
}

/// After a break: waiting for the next speakable char to cut before it.
#[derive(Debug, Default, Clone, Copy)]
struct Trail {
    /// Where the next segment starts if not right at its first speakable char: an opening
    /// quote, bracket or markup seen after the break.
    candidate: Option<usize>,
    saw_space: bool,
}

#[derive(Debug, Clone, Copy)]
struct DotScan {
    dot: usize,
    scan: usize,
    dots: u8,
    closers: bool,
    space: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GluedKind {
    /// ASCII `!`/`?`: a stop unless glued to ASCII (`?q=1`, `Yahoo!Japan`).
    Stop,
    /// ASCII `,;:`: a pause unless glued to ASCII (`1,000`, `10:30`, `http://`).
    Pause,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Body,
    Trailing(Trail),
    Dot(DotScan),
    Glued {
        at: usize,
        scan: usize,
        kind: GluedKind,
    },
}

#[derive(Debug)]
pub(super) struct Boundary {
    limits: Limits,
    /// Index of the next item to look at.
    cursor: usize,
    /// Index of the first item of the current segment.
    seg_start: usize,
    cuts_made: u32,
    seg: SegmentState,
    phase: Phase,
    /// Index just after the latest newline seen.
    line_begin: usize,
    /// Unit steps taken, for the test that keeps the boundary search linear.
    #[cfg(test)]
    pub(super) work: u64,
}

impl Boundary {
    pub(super) fn new(limits: Limits) -> Self {
        Boundary {
            limits,
            cursor: 0,
            seg_start: 0,
            cuts_made: 0,
            seg: SegmentState::default(),
            phase: Phase::Body,
            line_begin: 0,
            #[cfg(test)]
            work: 0,
        }
    }

    /// Whether the segment in progress has anything to say.
    pub(super) fn has_speakable(&self) -> bool {
        self.seg.has_speakable
    }

    /// Looks at every classified item not yet seen and pushes the index of each cut (the first
    /// item of the next segment) to `cuts`, in order. With `eof` pending decisions are made.
    pub(super) fn advance(&mut self, items: &ItemLog, eof: bool, cuts: &mut Vec<usize>) {
        loop {
            #[cfg(test)]
            {
                self.work += 1;
            }
            match self.phase {
                Phase::Body => {
                    let Some(item) = items.get(self.cursor) else {
                        return;
                    };
                    let index = self.cursor;
                    self.cursor += 1;
                    self.body(item, index);
                }
                Phase::Trailing(mut trail) => {
                    let Some(item) = items.get(self.cursor) else {
                        return;
                    };
                    let index = self.cursor;
                    self.cursor += 1;
                    match self.trailing(item, index, &mut trail) {
                        Some(cut) => {
                            cuts.push(cut);
                            self.begin_segment(cut);
                        }
                        None => self.phase = Phase::Trailing(trail),
                    }
                }
                Phase::Dot(mut scan) => match self.decide_dot(items, &mut scan, eof) {
                    None => {
                        self.phase = Phase::Dot(scan);
                        return;
                    }
                    Some(stop) => self.resume_after(scan.dot, stop),
                },
                Phase::Glued { at, mut scan, kind } => {
                    match self.decide_glued(items, &mut scan, kind, eof) {
                        None => {
                            self.phase = Phase::Glued { at, scan, kind };
                            return;
                        }
                        Some(breaks) => self.resume_after(at, breaks),
                    }
                }
            }
        }
    }

    /// The engine's time bound for the first segment has elapsed: cut the first segment now at
    /// the latest point that splits no word, if it has anything to say. Returns the cut index.
    pub(super) fn force_first_cut(&mut self) -> Option<usize> {
        if self.cuts_made != 0 {
            return None;
        }
        let cut = match self.phase {
            Phase::Trailing(trail) => trail.candidate.unwrap_or(self.cursor),
            Phase::Body | Phase::Dot(_) | Phase::Glued { .. } => self.seg.safe_cut?,
        };
        if cut <= self.seg_start {
            return None;
        }
        // Items after the cut are looked at again, under the rules of a later segment.
        self.begin_segment(cut);
        Some(cut)
    }

    fn begin_segment(&mut self, at: usize) {
        self.seg_start = at;
        self.cursor = at;
        self.seg = SegmentState::default();
        self.phase = Phase::Body;
        self.cuts_made = self.cuts_made.saturating_add(1);
    }

    /// Continues after a decided `.`, `!`, `?` or ASCII pause at `at`: from the item after it,
    /// as a break or as ordinary text. The items looked ahead at are looked at again, once.
    fn resume_after(&mut self, at: usize, breaks: bool) {
        self.cursor = at + 1;
        self.phase = if breaks {
            Phase::Trailing(Trail::default())
        } else {
            Phase::Body
        };
    }

    fn first(&self) -> bool {
        self.cuts_made == 0
    }

    fn soft_limit(&self) -> u32 {
        if self.first() {
            self.limits.first_soft
        } else {
            self.limits.soft
        }
    }

    fn max_limit(&self) -> u32 {
        if self.first() {
            self.limits.first_max
        } else {
            self.limits.max
        }
    }

    fn body(&mut self, item: Item, index: usize) {
        if let Class::Markup(attach) = item.class {
            // Closing markup right after a safe cut point (`你好**`) may go with it.
            if attach == Attach::Back && self.seg.safe_cut == Some(index) {
                self.seg.safe_cut = Some(index + 1);
            }
            return;
        }
        let c = item.ch;
        if c.is_whitespace() {
            let newline = is_newline(c);
            if newline {
                self.line_begin = index + 1;
            }
            if self.seg.has_speakable {
                self.seg.safe_cut = Some(index + 1);
                if newline || self.seg.cut_at_word_end {
                    self.phase = Phase::Trailing(Trail {
                        candidate: None,
                        saw_space: true,
                    });
                }
            }
            return;
        }
        if is_speakable(c) {
            let cjk = is_cjk(c);
            if self.seg.cut_at_word_end && cjk {
                // The over-long Latin word ended at a CJK char: cut before that char.
                self.phase = Phase::Trailing(Trail::default());
                self.cursor = index;
                return;
            }
            self.seg.has_speakable = true;
            self.seg.width = self.seg.width.saturating_add(width_in_thirds(c));
            if cjk {
                self.seg.safe_cut = Some(index + 1);
            }
            let max = self.max_limit();
            if self.seg.width >= max {
                // CJK can be cut anywhere; a Latin word is finished first, unless it is absurdly
                // long (a URL) and would never end.
                if cjk || self.seg.width >= max.saturating_add(max / 2) {
                    self.phase = Phase::Trailing(Trail::default());
                } else {
                    self.seg.cut_at_word_end = true;
                }
            }
            return;
        }
        // Punctuation and symbols. They only end a segment that has something to say.
        if !self.seg.has_speakable {
            return;
        }
        if is_hard_stop(c) {
            self.phase = Phase::Trailing(Trail::default());
        } else if c == '!' || c == '?' {
            self.phase = Phase::Glued {
                at: index,
                scan: index + 1,
                kind: GluedKind::Stop,
            };
        } else if c == '.' {
            self.phase = Phase::Dot(DotScan {
                dot: index,
                scan: index + 1,
                dots: 1,
                closers: false,
                space: false,
            });
        } else if is_ascii_soft_break(c) {
            if self.seg.width >= self.soft_limit() {
                self.phase = Phase::Glued {
                    at: index,
                    scan: index + 1,
                    kind: GluedKind::Pause,
                };
            }
        } else if is_wide_soft_break(c) {
            if self.seg.width >= self.soft_limit() {
                self.phase = Phase::Trailing(Trail::default());
            } else {
                self.seg.safe_cut = Some(index + 1);
            }
        } else if !c.is_ascii() {
            // Non-ASCII punctuation (`」`, `—`) is never inside a word or a number.
            self.seg.safe_cut = Some(index + 1);
        }
    }

    /// One item after a break. Returns the cut (first item of the next segment) once the next
    /// speakable char shows up.
    fn trailing(&mut self, item: Item, index: usize, trail: &mut Trail) -> Option<usize> {
        let c = item.ch;
        match item.class {
            Class::Markup(Attach::Back) => None,
            Class::Markup(Attach::Forward) => {
                trail.candidate.get_or_insert(index);
                None
            }
            Class::Spoken if is_speakable(c) => Some(trail.candidate.unwrap_or(index)),
            Class::Spoken if is_newline(c) => {
                // Whatever opened on the finished line without saying anything (an empty
                // bullet) stays behind with it.
                self.line_begin = index + 1;
                trail.saw_space = true;
                trail.candidate = None;
                None
            }
            Class::Spoken if c.is_whitespace() => {
                trail.saw_space = true;
                None
            }
            Class::Spoken if is_opener(c) => {
                trail.candidate.get_or_insert(index);
                None
            }
            Class::Spoken if is_closer(c) => None,
            Class::Spoken => {
                // Right after the stop (`."`, `?!`, `。」`) punctuation closes the sentence;
                // after a space (`. "Next`) it opens the next one.
                if trail.saw_space {
                    trail.candidate.get_or_insert(index);
                }
                None
            }
        }
    }

    /// Decides whether the `.` at `scan.dot` ends a sentence, looking past closing quotes,
    /// spaces and markup to the first char that tells. `None`: wait for more text.
    fn decide_dot(&mut self, items: &ItemLog, scan: &mut DotScan, eof: bool) -> Option<bool> {
        loop {
            #[cfg(test)]
            {
                self.work += 1;
            }
            let Some(item) = items.get(scan.scan) else {
                // The end of the reply ends its last sentence.
                return eof.then_some(true);
            };
            scan.scan += 1;
            if !item.is_spoken() {
                continue;
            }
            let c = item.ch;
            if !scan.space && !scan.closers && c == '.' {
                scan.dots = scan.dots.saturating_add(1);
                if scan.dots >= 3 {
                    // An ellipsis is a stop wherever it is.
                    return Some(true);
                }
                continue;
            }
            if !scan.space && (is_closer(c) || is_ascii_quote(c)) {
                scan.closers = true;
                continue;
            }
            if is_newline(c) {
                return Some(true);
            }
            if c.is_whitespace() {
                scan.space = true;
                continue;
            }
            if !scan.space {
                // `3.14`, `example.com/a.b`, `e.g`: glued to ASCII, not an end. Glued to CJK
                // (`OK.好的`), it is.
                return Some(!c.is_ascii());
            }
            if c.is_lowercase() {
                return Some(false);
            }
            let before_number = c.is_ascii_digit();
            return Some(!(scan.dots == 1 && self.is_abbreviation(items, scan.dot, before_number)));
        }
    }

    /// Whether the word before the `.` at `dot` makes it an abbreviation rather than a stop.
    fn is_abbreviation(&self, items: &ItemLog, dot: usize, before_number: bool) -> bool {
        let mut word_start = dot;
        while word_start > self.seg_start && dot - word_start < WORD_LOOKBACK {
            match items.get(word_start - 1) {
                Some(item) if item.is_spoken() && (item.ch.is_alphanumeric() || item.ch == '.') => {
                    word_start -= 1;
                }
                _ => break,
            }
        }
        let word: String = items
            .range(word_start, dot)
            .iter()
            .map(|item| item.ch)
            .collect();
        if word.is_empty() {
            return false;
        }
        if ABBREVIATIONS.contains(&word.as_str())
            || before_number && BEFORE_NUMBER.contains(&word.as_str())
        {
            return true;
        }
        let mut chars = word.chars();
        if let (Some(initial), None) = (chars.next(), chars.next())
            && initial.is_ascii_uppercase()
        {
            // `J. K. Rowling`; but `So did I. Then…` ends a sentence.
            return initial != 'I';
        }
        if word.contains('.') {
            // `U.S`, `e.g`, `Ph.D`, `a.m`.
            return word.split('.').all(|part| {
                (1..=2).contains(&part.chars().count()) && part.chars().all(char::is_alphabetic)
            });
        }
        // `1. First` at the start of a line is a list number (when markdown is kept).
        word.chars().all(|c| c.is_ascii_digit()) && self.starts_line(items, word_start)
    }

    fn starts_line(&self, items: &ItemLog, index: usize) -> bool {
        if self.line_begin < self.seg_start
            || self.line_begin > index
            || index - self.line_begin > LINE_LOOKBACK
        {
            return false;
        }
        items
            .range(self.line_begin, index)
            .iter()
            .all(|item| !item.is_spoken() || item.ch.is_whitespace())
    }

    /// Decides an ASCII `!?` or `,;:` by the next spoken char. `None`: wait for more text.
    fn decide_glued(
        &mut self,
        items: &ItemLog,
        scan: &mut usize,
        kind: GluedKind,
        eof: bool,
    ) -> Option<bool> {
        loop {
            #[cfg(test)]
            {
                self.work += 1;
            }
            let Some(item) = items.get(*scan) else {
                return eof.then_some(true);
            };
            *scan += 1;
            if !item.is_spoken() {
                continue;
            }
            let next = item.ch;
            let glued = match kind {
                GluedKind::Stop => next.is_ascii_alphanumeric(),
                GluedKind::Pause => next.is_ascii_alphanumeric() || next == '/' || next == '\\',
            };
            return Some(!glued);
        }
    }
}
