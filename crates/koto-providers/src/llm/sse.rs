//! Incremental, lenient Server-Sent Events framing: response-body bytes in, `(event, data)`
//! records out. Does no IO and knows nothing of OpenAI (`chunk.rs` reads the data).
//!
//! Follows the WHATWG event-stream grammar where it matters (`\n`, `\r\n` and lone `\r` line
//! ends, `:` comments, one optional space after `field:`, multi-line `data`) and is lenient where
//! real "compatible" servers are sloppy: a final event without the blank line is still delivered
//! at end of stream, and unknown fields are ignored. Input may be split at any byte, including
//! inside a multi-byte UTF-8 character: bytes are buffered and only complete lines are decoded
//! (a line end is ASCII, so it can never fall inside a character).

/// One dispatched event. `event` is the `event:` field (none for the default `message` type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// The parser state between two calls of [`SseParser::push`].
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line.
    partial_line: Vec<u8>,
    /// The previous input ended with `\r`: a `\n` at the start of the next input belongs to
    /// the same line end and must not count as an (event-dispatching) empty line.
    after_cr: bool,
    /// Whether the first line has been seen (a UTF-8 BOM is stripped from it only).
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Feeds the next bytes of the body; appends every event completed by them to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = bytes;
        if self.after_cr {
            match rest.first() {
                None => return,
                Some(b'\n') => rest = &rest[1..],
                Some(_) => {}
            }
            self.after_cr = false;
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let terminator = rest[pos];
            if self.partial_line.is_empty() {
                self.take_line(&rest[..pos], out);
            } else {
                self.partial_line.extend_from_slice(&rest[..pos]);
                let line = std::mem::take(&mut self.partial_line);
                self.take_line(&line, out);
                // Keep the allocation for the next split line.
                self.partial_line = line;
                self.partial_line.clear();
            }
            rest = &rest[pos + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.partial_line.extend_from_slice(rest);
    }

    /// The body ended: an unterminated last line is taken as a line, and a pending event is
    /// delivered even without its blank line (lenient; the spec would drop it).
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.partial_line.is_empty() {
            let line = std::mem::take(&mut self.partial_line);
            self.take_line(&line, out);
        }
        self.dispatch(out);
        self.after_cr = false;
    }

    fn take_line(&mut self, raw: &[u8], out: &mut Vec<SseEvent>) {
        let decoded = String::from_utf8_lossy(raw);
        let mut line: &str = &decoded;
        if !self.started {
            self.started = true;
            line = line.strip_prefix('\u{FEFF}').unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            // `id`, `retry` and anything unknown mean nothing to a one-shot completion stream.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !self.has_data {
            return; // per spec: an event without data is not dispatched
        }
        self.has_data = false;
        out.push(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut out);
        }
        parser.finish(&mut out);
        out
    }

    fn parse(body: &[u8]) -> Vec<SseEvent> {
        parse_chunks(&[body])
    }

    fn data(text: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: text.to_owned(),
        }
    }

    #[test]
    fn plain_frames_with_and_without_the_space_after_the_colon() {
        let events = parse(b"data: {\"a\":1}\n\ndata:{\"b\":2}\n\ndata: [DONE]\n\n");
        assert_eq!(
            events,
            vec![data("{\"a\":1}"), data("{\"b\":2}"), data("[DONE]")],
            "one space after the colon is optional and stripped"
        );
    }

    #[test]
    fn all_three_line_endings_and_mixtures_give_the_same_events() {
        let expected = vec![data("one"), data("two")];
        for body in [
            &b"data: one\n\ndata: two\n\n"[..],
            b"data: one\r\n\r\ndata: two\r\n\r\n",
            b"data: one\r\rdata: two\r\r",
            b"data: one\r\n\ndata: two\n\r\n",
        ] {
            assert_eq!(parse(body), expected, "line endings {body:?} are all legal");
        }
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_end() {
        // If the `\n` after a chunk-final `\r` were a second line end it would be an empty line
        // and dispatch the event early: here that would split "a\nb" into two events.
        let events = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(
            events,
            vec![data("a\nb")],
            "\\r|\\n across chunks is a single line end"
        );
    }

    #[test]
    fn comments_ids_retry_and_unknown_fields_are_ignored() {
        let body =
            b": keep-alive\n\nid: 7\nretry: 1000\nfoo: bar\ndata: x\n\n: OPENROUTER PROCESSING\n\n";
        assert_eq!(
            parse(body),
            vec![data("x")],
            "only data and event fields produce anything"
        );
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let events = parse(b"data: {\"a\":\ndata: 1}\ndata\n\n");
        assert_eq!(
            events,
            vec![data("{\"a\":\n1}\n")],
            "a bare `data` line appends an empty line"
        );
    }

    #[test]
    fn event_names_are_reported_and_reset_per_event() {
        let events = parse(b"event: error\ndata: {}\n\ndata: next\n\nevent: ping\n\n");
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("error".into()),
                    data: "{}".into()
                },
                data("next")
            ],
            "the event name belongs to one event only; an event without data is not dispatched"
        );
    }

    #[test]
    fn a_final_event_without_blank_line_is_delivered_at_the_end() {
        assert_eq!(
            parse(b"data: a\n\ndata: [DONE]"),
            vec![data("a"), data("[DONE]")],
            "lenient EOF"
        );
        assert_eq!(
            parse(b"data: [DONE]\n"),
            vec![data("[DONE]")],
            "lenient EOF after a line end"
        );
    }

    #[test]
    fn a_leading_bom_is_stripped() {
        assert_eq!(
            parse("\u{FEFF}data: x\n\n".as_bytes()),
            vec![data("x")],
            "BOM before the first field"
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events_including_inside_utf8() {
        let body = "data: {\"c\":\"你好，世界\"}\r\n\r\n: c\n\ndata: こんにちは\rdata: 🎉 ok\r\rdata:[DONE]\n\n";
        let bytes = body.as_bytes();
        let whole = parse(bytes);
        assert_eq!(whole.len(), 3, "three events in the body: {whole:?}");
        for cut in 0..=bytes.len() {
            assert_eq!(
                parse_chunks(&[&bytes[..cut], &bytes[cut..]]),
                whole,
                "a split at byte {cut} must not change the events"
            );
        }
        for first in 0..bytes.len() {
            for second in first..bytes.len() {
                let pieces = [&bytes[..first], &bytes[first..second], &bytes[second..]];
                assert_eq!(
                    parse_chunks(&pieces),
                    whole,
                    "splits at {first} and {second}"
                );
            }
        }
        let one_byte_pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_chunks(&one_byte_pieces), whole, "one byte at a time");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let events = parse(b"data: a\xffb\n\n");
        assert_eq!(
            events,
            vec![data("a\u{FFFD}b")],
            "lossy decoding keeps the stream alive"
        );
    }

    #[test]
    fn events_are_emitted_as_soon_as_their_blank_line_arrives() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        parser.push(b"data: first\n", &mut out);
        assert!(out.is_empty(), "no blank line yet, so no event");
        parser.push(b"\n", &mut out);
        assert_eq!(
            out,
            vec![data("first")],
            "the blank line dispatches without waiting for more input"
        );
    }
}
