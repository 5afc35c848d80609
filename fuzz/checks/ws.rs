//! Every WebSocket message decoder on one message: `/ws/ingest` text frames (and a parsed
//! frame re-encoded reads back the same), the relay's binary SPEECH_CHUNK framing (a decoded
//! chunk re-encoded decodes the same), a `/ws/live` client's STOP, and a `/ws/chat` batch
//! through the intake's checks. (`/ws/input` has its own target, `upload`: its messages only
//! mean something in sequence.) Refusals are fine; a panic or a broken round trip is not.

use koto_core::SessionId;
use koto_protocol::ingest::RelayFrame;
use koto_protocol::live_chat::ChatMessagesIn;
use koto_relay::{ClientFilter, decode_binary_chunk, encode_binary_chunk};

/// `/ws/ingest`'s default frame bound is larger; a small one also exercises the refusal.
const MAX_FRAME_BYTES: usize = 16 << 10;
/// `LIVE_CHAT_BATCH_MAX`'s default.
const CHAT_BATCH_MAX: usize = 50;

pub fn run(data: &[u8]) {
    binary_chunk(data);
    // Text frames that are not UTF-8 are refused by the socket (1007) before any decoder.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    ingest(text);
    live_stop(text);
    chat_batch(text);
}

fn binary_chunk(data: &[u8]) {
    let Ok(chunk) = decode_binary_chunk(data) else {
        return;
    };
    assert_eq!(chunk.pcm.len() % 2, 0, "PCM is whole s16 samples");
    let samples: Vec<i16> = chunk
        .pcm
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let again = decode_binary_chunk(&encode_binary_chunk(&chunk.header, &samples))
        .expect("a chunk the decoder accepted re-encodes to a valid frame");
    assert_eq!(again.pcm, chunk.pcm, "the PCM survives a round trip");
    assert_eq!(
        again.header.session_id, chunk.header.session_id,
        "the session survives a round trip"
    );
    assert_eq!(
        again.header.seq, chunk.header.seq,
        "the seq survives a round trip"
    );
}

fn ingest(text: &str) {
    let Ok(frame) = koto_relay::fuzz_parse_ingest_frame(text, MAX_FRAME_BYTES) else {
        return;
    };
    if let RelayFrame::SpeechChunk(chunk) = &frame {
        let _ = chunk.decode_pcm();
    }
    let encoded = serde_json::to_string(&frame).expect("a parsed frame serialises");
    let again = koto_relay::fuzz_parse_ingest_frame(&encoded, usize::MAX)
        .unwrap_or_else(|error| panic!("{encoded} was accepted once, then refused: {error:?}"));
    assert_eq!(again, frame, "a frame reads back as it was written");
}

fn live_stop(text: &str) {
    let any_session = ClientFilter::default();
    let one_session = ClientFilter {
        session: SessionId::parse("live-001").ok(),
        ..ClientFilter::default()
    };
    for filter in [any_session, one_session] {
        if let Ok((session, reason)) = koto_relay::fuzz_parse_client_stop(text, &filter) {
            assert!(
                SessionId::parse(session.as_str()).is_ok(),
                "a STOP names a valid session"
            );
            assert!(
                reason.chars().count() <= 64,
                "the reason is cut to 64 chars"
            );
        }
    }
}

fn chat_batch(text: &str) {
    let Ok(batch) = serde_json::from_str::<ChatMessagesIn>(text) else {
        return;
    };
    let count = batch.messages.len();
    if let Ok(events) =
        koto_server::live_chat::intake::events_from(batch.messages, CHAT_BATCH_MAX, 0)
    {
        assert_eq!(events.len(), count, "a batch is taken whole or not at all");
    }
}
