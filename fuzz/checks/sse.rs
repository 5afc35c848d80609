//! The OpenAI client's stream reading (koto-providers): SSE framing of a body in any chunking,
//! then each event read as the client reads it. Never a panic, and the events do not depend on
//! where the body was split (inside a line, a CRLF or a UTF-8 char included).

use koto_providers::llm::fuzz_read_event;
use koto_providers::llm::sse::{SseEvent, SseParser};

use super::split;

pub fn run(data: &[u8]) {
    let ([seed_a, seed_b, seed_c], body) = split::header(data);
    let whole = parse(&[body]);
    let chunked = parse(&split::pieces(body, &[seed_a, seed_b, seed_c]));
    assert_eq!(chunked, whole, "the events must not depend on the chunking");
    for event in &whole {
        // Errors are fine (the reply fails); only a panic is a bug.
        let _ = fuzz_read_event(event);
    }
}

fn parse(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    for piece in pieces {
        parser.push(piece, &mut out);
    }
    parser.finish(&mut out);
    out
}
