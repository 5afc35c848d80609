//! Inline reasoning in reply text: `<think>…</think>` (and `<thinking>…</thinking>`), as local
//! reasoning models (DeepSeek-R1 distills, Qwen3, QwQ) stream it inside `content`. The splitter
//! turns such text into [`LlmDelta::Text`] and [`LlmDelta::Reasoning`] pieces as it arrives,
//! whatever the delta boundaries (a tag may come one character at a time). Pure: no IO.

use crate::llm::LlmDelta;

const TAGS: [(&str, &str); 2] = [("<think>", "</think>"), ("<thinking>", "</thinking>")];

#[derive(Debug, Default)]
pub struct ThinkSplitter {
    /// The closing tag awaited while inside a reasoning block.
    inside: Option<&'static str>,
    /// The tail that may be the start of a tag, held until the next text tells.
    pending: String,
    /// A block just closed: the blank lines models put after it are not reply text.
    after_block: bool,
}

impl ThinkSplitter {
    pub fn new() -> ThinkSplitter {
        ThinkSplitter::default()
    }

    /// Whether a reasoning block is open (its closing tag not seen yet).
    pub fn in_reasoning(&self) -> bool {
        self.inside.is_some()
    }

    /// Splits `text` (the next piece of `content`) onto `out`.
    pub fn push(&mut self, text: &str, out: &mut Vec<LlmDelta>) {
        let mut rest = std::mem::take(&mut self.pending);
        rest.push_str(text);
        let mut rest = rest.as_str();
        loop {
            match self.inside {
                None => match find_open(rest) {
                    Some((at, open_len, close)) => {
                        self.text(&rest[..at], out);
                        rest = &rest[at + open_len..];
                        self.inside = Some(close);
                    }
                    None => {
                        let keep = partial_tag_len(rest, TAGS.iter().map(|(open, _)| *open));
                        let (now, later) = rest.split_at(rest.len() - keep);
                        self.text(now, out);
                        self.pending = later.to_owned();
                        return;
                    }
                },
                Some(close) => match rest.find(close) {
                    Some(at) => {
                        reasoning(&rest[..at], out);
                        rest = &rest[at + close.len()..];
                        self.inside = None;
                        self.after_block = true;
                    }
                    None => {
                        let keep = partial_tag_len(rest, [close].into_iter());
                        let (now, later) = rest.split_at(rest.len() - keep);
                        reasoning(now, out);
                        self.pending = later.to_owned();
                        return;
                    }
                },
            }
        }
    }

    /// The reply ended: what was held back is what it looked like (text, or reasoning inside
    /// a block that never closed).
    pub fn finish(&mut self, out: &mut Vec<LlmDelta>) {
        let held = std::mem::take(&mut self.pending);
        if self.inside.is_some() {
            reasoning(&held, out);
        } else {
            self.text(&held, out);
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<LlmDelta>) {
        let text = if self.after_block {
            text.trim_start()
        } else {
            text
        };
        if !text.is_empty() {
            self.after_block = false;
            out.push(LlmDelta::Text(text.to_owned()));
        }
    }
}

fn reasoning(text: &str, out: &mut Vec<LlmDelta>) {
    if !text.is_empty() {
        out.push(LlmDelta::Reasoning(text.to_owned()));
    }
}

/// The first opening tag in `text`: its byte offset, length and closing tag.
fn find_open(text: &str) -> Option<(usize, usize, &'static str)> {
    TAGS.iter()
        .filter_map(|(open, close)| text.find(open).map(|at| (at, open.len(), *close)))
        .min_by_key(|(at, _, _)| *at)
}

/// How many bytes at the end of `text` could begin one of `tags` (held until the next delta).
fn partial_tag_len<'a>(text: &str, tags: impl Iterator<Item = &'a str>) -> usize {
    tags.flat_map(|tag| (1..tag.len()).rev().map(move |n| &tag[..n]))
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&str]) -> (String, String) {
        let mut splitter = ThinkSplitter::new();
        let mut out = Vec::new();
        for piece in pieces {
            splitter.push(piece, &mut out);
        }
        splitter.finish(&mut out);
        let mut text = String::new();
        let mut thought = String::new();
        for delta in out {
            match delta {
                LlmDelta::Text(t) => text.push_str(&t),
                LlmDelta::Reasoning(r) => thought.push_str(&r),
                LlmDelta::Capped => {}
            }
        }
        (text, thought)
    }

    #[test]
    fn a_leading_block_is_reasoning_and_the_blank_lines_after_it_go() {
        assert_eq!(
            split(&["<think>\nThe user greets me.\n</think>\n\nHello! Nice to meet you."]),
            (
                "Hello! Nice to meet you.".to_owned(),
                "\nThe user greets me.\n".to_owned()
            )
        );
        assert_eq!(
            split(&["<thinking>用户在问天气。</thinking>今天是晴天。"]),
            ("今天是晴天。".to_owned(), "用户在问天气。".to_owned())
        );
    }

    #[test]
    fn tags_cut_anywhere_by_the_deltas_are_still_found() {
        let reply = "<think>plan: be brief</think>Hi there. <think>again</think>Bye.";
        let expected = (
            "Hi there. Bye.".to_owned(),
            "plan: be briefagain".to_owned(),
        );
        // Every cut into two pieces, and one character at a time.
        for cut in (0..=reply.len()).filter(|cut| reply.is_char_boundary(*cut)) {
            assert_eq!(
                split(&[&reply[..cut], &reply[cut..]]),
                expected,
                "cut at {cut}"
            );
        }
        let chars: Vec<String> = reply.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(split(&pieces), expected);
    }

    #[test]
    fn text_that_only_looks_like_a_tag_is_text() {
        assert_eq!(
            split(&["a < b and <th", "ink of it"]).0,
            "a < b and <think of it"
        );
        assert_eq!(
            split(&["ends with <"]).0,
            "ends with <",
            "held back, then given at the end"
        );
    }

    #[test]
    fn a_block_that_never_closes_is_all_reasoning() {
        let mut splitter = ThinkSplitter::new();
        let mut out = Vec::new();
        splitter.push("<think>still thinking", &mut out);
        assert!(splitter.in_reasoning());
        splitter.finish(&mut out);
        assert_eq!(out, [LlmDelta::Reasoning("still thinking".to_owned())]);
    }

    #[test]
    fn text_is_given_as_it_arrives() {
        let mut splitter = ThinkSplitter::new();
        let mut out = Vec::new();
        splitter.push("Hello", &mut out);
        assert_eq!(
            out,
            [LlmDelta::Text("Hello".to_owned())],
            "no waiting for more"
        );
    }
}
