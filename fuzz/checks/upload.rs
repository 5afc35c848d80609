//! `/ws/input`'s upload assembly (koto-server, `routes::legacy`) on any sequence of text and
//! binary frames under small bounds: never a panic, and what it assembles stays within them
//! (a text is non-empty and at most `max_text_bytes`, audio at most `max_upload_bytes`).

use std::borrow::Cow;

use koto_server::routes::legacy::{FuzzFrame, FuzzUploaded, LegacyLimits, fuzz_upload};

use super::split;

pub fn run(data: &[u8]) {
    let ([chunks, bytes, text_bytes], rest) = split::header(data);
    let limits = LegacyLimits {
        max_chunks: u64::from(chunks % 8),
        max_upload_bytes: usize::from(bytes) * 4,
        max_text_bytes: usize::from(text_bytes) * 2,
        ..LegacyLimits::default()
    };
    // Frames are separated by 0x00; each starts with its kind: 'b' binary, anything else text.
    let owned: Vec<(bool, Cow<'_, str>, &[u8])> = rest
        .split(|b| *b == 0)
        .map(|frame| match frame.split_first() {
            Some((b'b', body)) => (true, Cow::Borrowed(""), body),
            _ => (false, String::from_utf8_lossy(frame), &[][..]),
        })
        .collect();
    let frames: Vec<FuzzFrame<'_>> = owned
        .iter()
        .map(|(binary, text, body)| {
            if *binary {
                FuzzFrame::Binary(body)
            } else {
                FuzzFrame::Text(text)
            }
        })
        .collect();
    match fuzz_upload(&frames, &limits) {
        Some(Ok(FuzzUploaded::Text(text))) => {
            assert!(!text.trim().is_empty(), "an empty text is refused");
            assert!(
                text.len() <= limits.max_text_bytes,
                "a text of {} bytes is over the bound of {}",
                text.len(),
                limits.max_text_bytes
            );
        }
        Some(Ok(FuzzUploaded::Audio(len))) => {
            assert!(len > 0, "audio without bytes is refused");
            assert!(
                len <= limits.max_upload_bytes,
                "{len} audio bytes are over the bound of {}",
                limits.max_upload_bytes
            );
        }
        Some(Err(_)) | None => {}
    }
}
