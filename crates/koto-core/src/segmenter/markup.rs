//! Markup scanner: classifies each char of a reply as spoken or as markup (think blocks,
//! markdown marks, emoji, `*stage directions*`). It does not cut segments (`boundary` does).
//!
//! Streaming without guessing: a decision that needs chars not yet received (`<thi` could be
//! `<think>`, a lone `*` could open a stage direction) waits for them, or for the end of the
//! stream, so the classes never depend on where the deltas were split. Each wait is bounded by
//! a few chars, except a stage direction, which is bounded by its line and
//! `STAGE_DIRECTION_MAX_CHARS`; partial scans resume where they stopped, so the work stays
//! linear in the length of the reply.

use super::chars::{is_emoji, is_newline, is_opener};

/// Longest `*stage direction*` recognised, in chars between the asterisks. Until its closing
/// `*` arrives everything after the opening one is held back, so keep this short.
const STAGE_DIRECTION_MAX_CHARS: usize = 80;
const OPEN_TAGS: [&str; 2] = ["<think>", "<thinking>"];
const CLOSE_TAGS: [&str; 2] = ["</think>", "</thinking>"];
/// Longest line marker looked at: `######` and a space.
const LINE_MARKER_LOOKAHEAD: usize = 8;

/// Which neighbour a markup char belongs to when a segment ends next to it: closing marks
/// (`**` after a word, emoji) stay with the sentence before, opening ones (`**` after a space,
/// `[`, a think block, a list bullet) go with the text after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attach {
    Back,
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Spoken,
    Markup(Attach),
}

const FORWARD: Class = Class::Markup(Attach::Forward);
const BACK: Class = Class::Markup(Attach::Back);

/// One classified char of the reply.
#[derive(Debug, Clone, Copy)]
pub(super) struct Item {
    pub(super) ch: char,
    /// Byte offset of `ch` from the start of the reply.
    pub(super) offset: usize,
    pub(super) class: Class,
}

impl Item {
    pub(super) fn is_spoken(&self) -> bool {
        self.class == Class::Spoken
    }
}

/// Classified chars not yet emitted, indexed by their position in the whole reply (so indices
/// held by `boundary` survive forgetting the emitted front).
#[derive(Debug, Default)]
pub(super) struct ItemLog {
    base: usize,
    items: Vec<Item>,
}

impl ItemLog {
    pub(super) fn get(&self, index: usize) -> Option<Item> {
        self.items.get(index.checked_sub(self.base)?).copied()
    }

    /// Index one past the last classified char.
    pub(super) fn end(&self) -> usize {
        self.base + self.items.len()
    }

    pub(super) fn range(&self, from: usize, to: usize) -> &[Item] {
        let (Some(from), Some(to)) = (from.checked_sub(self.base), to.checked_sub(self.base))
        else {
            return &[];
        };
        self.items.get(from..to).unwrap_or(&[])
    }

    /// Drops items before `index` (already emitted). Called once per push, not per segment,
    /// so a big delta holding many segments is not shifted once per segment.
    pub(super) fn forget_before(&mut self, index: usize) {
        let n = index.saturating_sub(self.base).min(self.items.len());
        self.items.drain(..n);
        self.base += n;
    }

    fn push(&mut self, item: Item) {
        self.items.push(item);
    }
}

/// What is stripped from `speak` (each also stays in `text`).
#[derive(Debug, Clone, Copy)]
pub(super) struct MarkupRules {
    pub(super) think: bool,
    pub(super) markdown: bool,
    pub(super) emoji: bool,
    pub(super) stage_directions: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    /// Inside `<think>…</think>`: everything is markup until the closing tag.
    Think,
    /// The rest of a ```` ``` ```` fence line (its info string).
    FenceLine,
    /// The `(url)` of a `[text](url)` link; `depth` counts open parentheses.
    LinkTarget {
        depth: u32,
    },
}

/// Progress of the search for the `*` that closes a stage direction.
#[derive(Debug, Clone, Copy)]
struct StageScan {
    /// Bytes after the opening `*` already looked at.
    scanned: usize,
    n_chars: usize,
    last_non_ws: bool,
}

enum TagMatch {
    Full(usize),
    Partial,
    No,
}

enum LineMarker {
    None,
    Undecided,
    Fence(usize),
    Quote,
    Prefix(usize),
}

#[derive(Debug)]
pub(super) struct MarkupScanner {
    rules: MarkupRules,
    /// Byte offset, from the start of the reply, of the next char to classify.
    pos: usize,
    mode: Mode,
    prev: Option<char>,
    prev_attach: Attach,
    /// Only spaces or tabs since the last newline (or the start): line markers may follow.
    line_start: bool,
    line_start_before_think: bool,
    open_links: u32,
    stage: Option<StageScan>,
    /// Unit steps taken, for the test that keeps the scanner linear.
    #[cfg(test)]
    pub(super) work: u64,
}

impl MarkupScanner {
    pub(super) fn new(rules: MarkupRules) -> Self {
        MarkupScanner {
            rules,
            pos: 0,
            mode: Mode::Text,
            prev: None,
            prev_attach: Attach::Forward,
            line_start: true,
            line_start_before_think: true,
            open_links: 0,
            stage: None,
            #[cfg(test)]
            work: 0,
        }
    }

    /// Byte offset one past the last classified char.
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// Classifies as much of `buf` (which starts at reply offset `buf_base`) as can be decided.
    /// With `eof` the stream has ended and everything is decided.
    pub(super) fn scan(&mut self, buf: &str, buf_base: usize, eof: bool, log: &mut ItemLog) {
        while let Some(rest) = self.pos.checked_sub(buf_base).and_then(|at| buf.get(at..)) {
            if rest.is_empty() || !self.step(rest, eof, log) {
                break;
            }
        }
    }

    /// Classifies at least one char at the start of `rest`, or returns false to wait for more.
    fn step(&mut self, rest: &str, eof: bool, log: &mut ItemLog) -> bool {
        #[cfg(test)]
        {
            self.work += 1;
        }
        let mut chars = rest.chars();
        let Some(c) = chars.next() else {
            return false;
        };
        let next = chars.next();
        // A decision that needs the next char, which has not arrived yet.
        let next_pending = next.is_none() && !eof;

        match self.mode {
            Mode::Think => {
                if c == '<' {
                    match match_tag(rest, &CLOSE_TAGS) {
                        TagMatch::Partial if !eof => return false,
                        TagMatch::Full(n) => {
                            self.take(rest, n, FORWARD, log);
                            self.mode = Mode::Text;
                            self.line_start = self.line_start_before_think;
                            return true;
                        }
                        TagMatch::Partial | TagMatch::No => {}
                    }
                }
                self.take(rest, 1, FORWARD, log);
                return true;
            }
            Mode::FenceLine | Mode::LinkTarget { .. } if is_newline(c) => self.mode = Mode::Text,
            Mode::FenceLine => {
                self.take(rest, 1, BACK, log);
                return true;
            }
            Mode::LinkTarget { depth } => {
                let depth = match c {
                    '(' => depth + 1,
                    ')' => depth.saturating_sub(1),
                    _ => depth,
                };
                self.mode = if depth == 0 {
                    Mode::Text
                } else {
                    Mode::LinkTarget { depth }
                };
                self.take(rest, 1, BACK, log);
                return true;
            }
            Mode::Text => {}
        }

        if self.rules.think && c == '<' {
            match match_tag(rest, &OPEN_TAGS) {
                TagMatch::Partial if !eof => return false,
                TagMatch::Full(n) => {
                    self.line_start_before_think = self.line_start;
                    self.take(rest, n, FORWARD, log);
                    self.mode = Mode::Think;
                    return true;
                }
                TagMatch::Partial | TagMatch::No => {}
            }
        }

        if self.rules.markdown && self.line_start {
            match line_marker(rest, eof) {
                LineMarker::Undecided => return false,
                LineMarker::Fence(n) => {
                    self.take(rest, n, FORWARD, log);
                    self.mode = Mode::FenceLine;
                    return true;
                }
                LineMarker::Quote => {
                    self.take(rest, 1, FORWARD, log);
                    // `> - item`: a quoted line may carry its own marker.
                    self.line_start = true;
                    return true;
                }
                LineMarker::Prefix(n) => {
                    self.take(rest, n, FORWARD, log);
                    return true;
                }
                LineMarker::None => {}
            }
        }

        let class = match c {
            '*' if self.rules.markdown || self.rules.stage_directions => {
                if next_pending {
                    return false;
                }
                let in_run = self.prev == Some('*') || next == Some('*');
                if !in_run && self.rules.stage_directions && opens_stage_direction(self.prev, next)
                {
                    return self.stage_direction(rest, next, eof, log);
                }
                self.asterisk_class(next, in_run)
            }
            '_' if self.rules.markdown => {
                if next_pending {
                    return false;
                }
                // snake_case stays as written; `_emphasis_` and `__init__`'s outer runs do not.
                let intraword = self.prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric);
                if intraword {
                    Class::Spoken
                } else {
                    Class::Markup(self.run_attach('_'))
                }
            }
            '~' if self.rules.markdown => {
                if next_pending {
                    return false;
                }
                // `~~strike~~` is markup; a single `~` ("10~20") is text.
                if self.prev == Some('~') || next == Some('~') {
                    Class::Markup(self.run_attach('~'))
                } else {
                    Class::Spoken
                }
            }
            '`' if self.rules.markdown => Class::Markup(self.run_attach('`')),
            '[' if self.rules.markdown => {
                self.open_links = self.open_links.saturating_add(1);
                FORWARD
            }
            ']' if self.rules.markdown && self.open_links > 0 => {
                if next_pending {
                    return false;
                }
                self.open_links -= 1;
                if next == Some('(') {
                    self.mode = Mode::LinkTarget { depth: 0 };
                }
                BACK
            }
            '!' if self.rules.markdown => {
                if next_pending {
                    return false;
                }
                // `![alt](url)`: the image's `!` is not an exclamation.
                if next == Some('[') {
                    FORWARD
                } else {
                    Class::Spoken
                }
            }
            c if self.rules.emoji && is_emoji(c) => BACK,
            _ => Class::Spoken,
        };
        self.take(rest, 1, class, log);
        true
    }

    /// Looks for the `*` closing the stage direction opened by the `*` at the start of `rest`.
    /// Not found on the same line within the limit: the `*` is an ordinary asterisk.
    fn stage_direction(
        &mut self,
        rest: &str,
        next: Option<char>,
        eof: bool,
        log: &mut ItemLog,
    ) -> bool {
        let scan = self.stage.get_or_insert(StageScan {
            scanned: 1,
            n_chars: 0,
            last_non_ws: false,
        });
        // Some(Some(n)): closed after n chars; Some(None): not a stage direction.
        let mut outcome = None;
        for d in rest.get(scan.scanned..).unwrap_or_default().chars() {
            #[cfg(test)]
            {
                self.work += 1;
            }
            if is_newline(d) {
                outcome = Some(None);
                break;
            }
            if d == '*' && scan.last_non_ws {
                outcome = Some(Some(scan.n_chars));
                break;
            }
            scan.n_chars += 1;
            if scan.n_chars > STAGE_DIRECTION_MAX_CHARS {
                outcome = Some(None);
                break;
            }
            scan.last_non_ws = !d.is_whitespace();
            scan.scanned += d.len_utf8();
        }

        match outcome {
            Some(Some(n_inner)) => {
                self.stage = None;
                self.take(rest, n_inner + 2, FORWARD, log);
                true
            }
            Some(None) => {
                self.not_a_stage_direction(rest, next, log);
                true
            }
            None if eof => {
                self.not_a_stage_direction(rest, next, log);
                true
            }
            None => false,
        }
    }

    fn not_a_stage_direction(&mut self, rest: &str, next: Option<char>, log: &mut ItemLog) {
        self.stage = None;
        let class = self.asterisk_class(next, false);
        self.take(rest, 1, class, log);
    }

    fn asterisk_class(&self, next: Option<char>, in_run: bool) -> Class {
        if !self.rules.markdown {
            return Class::Spoken;
        }
        if !in_run {
            let spaced =
                self.prev.is_none_or(char::is_whitespace) && next.is_none_or(char::is_whitespace);
            let arithmetic = self.prev.is_some_and(|q| q.is_ascii_digit())
                && next.is_some_and(|n| n.is_ascii_digit());
            // "5 * 3", "5*3": an operator, not emphasis.
            if spaced || arithmetic {
                return Class::Spoken;
            }
        }
        Class::Markup(self.run_attach('*'))
    }

    /// A mark continuing a run (`**`, ```` `` ````) goes where the run's first char went; a
    /// run's first char opens when it follows a space or an opening bracket, else it closes.
    fn run_attach(&self, mark: char) -> Attach {
        if self.prev == Some(mark) {
            return self.prev_attach;
        }
        match self.prev {
            None => Attach::Forward,
            Some(q) if q.is_whitespace() || is_opener(q) || q == '"' || q == '\'' => {
                Attach::Forward
            }
            Some(_) => Attach::Back,
        }
    }

    fn take(&mut self, rest: &str, n_chars: usize, class: Class, log: &mut ItemLog) {
        for ch in rest.chars().take(n_chars) {
            log.push(Item {
                ch,
                offset: self.pos,
                class,
            });
            self.pos += ch.len_utf8();
            let newline = is_newline(ch);
            self.line_start = newline || (self.line_start && (ch == ' ' || ch == '\t'));
            if newline {
                // Links do not span lines; a stray `[` must not swallow a later `]`.
                self.open_links = 0;
            }
            if let Class::Markup(attach) = class {
                self.prev_attach = attach;
            }
            self.prev = Some(ch);
        }
    }
}

/// `*` opens a stage direction when it does not follow a letter or digit (`5*3*2`, `a*b*`)
/// and is followed by a visible char.
fn opens_stage_direction(prev: Option<char>, next: Option<char>) -> bool {
    !prev.is_some_and(|q| q.is_ascii_alphanumeric()) && next.is_some_and(|n| !n.is_whitespace())
}

/// Matches `rest` against ASCII tags, ignoring ASCII case; `Partial` when `rest` is a proper
/// prefix of one (the rest of the tag may be in the next delta).
fn match_tag(rest: &str, tags: &[&str]) -> TagMatch {
    let mut partial = false;
    for tag in tags {
        let n = rest.len().min(tag.len());
        if rest.as_bytes()[..n].eq_ignore_ascii_case(&tag.as_bytes()[..n]) {
            if n == tag.len() {
                return TagMatch::Full(tag.len());
            }
            partial = true;
        }
    }
    if partial {
        TagMatch::Partial
    } else {
        TagMatch::No
    }
}

/// Markdown line markers at the start of a line (after indentation): ```` ``` ```` fences,
/// `#` headings, `-`/`+`/`*`/`•`/`・` bullets, `1.`/`1)` ordered markers, `>` quotes. A marker
/// includes the one space after it.
fn line_marker(rest: &str, eof: bool) -> LineMarker {
    let head: Vec<char> = rest.chars().take(LINE_MARKER_LOOKAHEAD).collect();
    // The next char is needed but has not arrived: wait, unless the stream has ended.
    let ran_out = |at_end: LineMarker| {
        if eof { at_end } else { LineMarker::Undecided }
    };
    let is_blank = |c: char| c == ' ' || c == '\t';
    let Some(&first) = head.first() else {
        return LineMarker::None;
    };
    match first {
        '`' | '~' => {
            for i in 1..3 {
                match head.get(i) {
                    Some(&d) if d == first => {}
                    Some(_) => return LineMarker::None,
                    None => return ran_out(LineMarker::None),
                }
            }
            LineMarker::Fence(3)
        }
        '#' => {
            let hashes = head.iter().take_while(|&&d| d == '#').count();
            if hashes > 6 {
                return LineMarker::None;
            }
            match head.get(hashes) {
                Some(&d) if is_blank(d) => LineMarker::Prefix(hashes + 1),
                Some(&d) if is_newline(d) => LineMarker::Prefix(hashes),
                Some(_) => LineMarker::None,
                None => ran_out(LineMarker::Prefix(hashes)),
            }
        }
        '-' | '+' | '*' | '•' | '・' => {
            // `•` and the Japanese `・` are bullets even without a space after them.
            let bare_bullet = first == '•' || first == '・';
            match head.get(1) {
                Some(&d) if is_blank(d) => LineMarker::Prefix(2),
                Some(_) if bare_bullet => LineMarker::Prefix(1),
                Some(_) => LineMarker::None,
                None if bare_bullet => ran_out(LineMarker::Prefix(1)),
                None => ran_out(LineMarker::None),
            }
        }
        '>' => LineMarker::Quote,
        '0'..='9' => {
            let digits = head.iter().take_while(|d| d.is_ascii_digit()).count();
            if digits > 3 {
                return LineMarker::None;
            }
            match head.get(digits) {
                Some('.' | ')') => {}
                Some(_) => return LineMarker::None,
                None => return ran_out(LineMarker::None),
            }
            match head.get(digits + 1) {
                Some(&d) if is_blank(d) => LineMarker::Prefix(digits + 2),
                Some(_) => LineMarker::None,
                None => ran_out(LineMarker::None),
            }
        }
        _ => LineMarker::None,
    }
}
