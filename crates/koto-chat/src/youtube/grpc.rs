//! gRPC over HTTP/2 by hand: the 5-byte length-prefixed message framing, and `grpc-status` /
//! `grpc-message` from headers or trailers. Enough for one server-streaming call; no tonic (its
//! dependency tree cost ~8.5 min of rebuild on the shared 2-core machine, see ARCHITECTURE.md).
//!
//! Total over any input: oversized, compressed or cut messages are errors, never panics.

use bytes::{Buf, BytesMut};

/// One streamed message may be at most this big (gRPC's usual default).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a gRPC message of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("a compressed gRPC message, but we asked for none")]
    Compressed,
}

/// Accumulates body bytes and yields whole messages.
#[derive(Debug, Default)]
pub struct Deframer {
    buffer: BytesMut,
}

impl Deframer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buffer.len() < 5 {
            return Ok(None);
        }
        let compressed = self.buffer[0];
        let len = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]) as usize;
        if compressed != 0 {
            return Err(FrameError::Compressed);
        }
        if len > MAX_MESSAGE_BYTES {
            return Err(FrameError::TooLarge(len));
        }
        if self.buffer.len() < 5 + len {
            return Ok(None);
        }
        self.buffer.advance(5);
        Ok(Some(self.buffer.split_to(len).to_vec()))
    }

    /// Bytes of an unfinished message (a stream that ends here was cut).
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// `grpc-status` and its message (percent-decoded), if the map has one.
pub fn status(headers: &http::HeaderMap) -> Option<(u32, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((code, message))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_split_across_pushes_come_out_whole() {
        let wire = [frame(b"hello"), frame(b""), frame(b"world")].concat();
        let mut deframer = Deframer::default();
        let mut out = Vec::new();
        for chunk in wire.chunks(3) {
            deframer.push(chunk);
            while let Ok(Some(message)) = deframer.next_message() {
                out.push(message);
            }
        }
        assert_eq!(out, vec![b"hello".to_vec(), vec![], b"world".to_vec()]);
        assert_eq!(deframer.pending(), 0);
    }

    #[test]
    fn oversized_and_compressed_messages_are_errors() {
        let mut deframer = Deframer::default();
        deframer.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            deframer.next_message(),
            Err(FrameError::TooLarge(_))
        ));
        let mut deframer = Deframer::default();
        deframer.push(&[1, 0, 0, 0, 1, 0]);
        assert_eq!(deframer.next_message(), Err(FrameError::Compressed));
    }

    #[test]
    fn status_messages_are_percent_decoded() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("API%20key%20not%20valid%"),
        );
        assert_eq!(status(&headers), Some((16, "API key not valid%".into())));
    }

    proptest! {
        #[test]
        fn deframing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut deframer = Deframer::default();
            deframer.push(&bytes);
            while let Ok(Some(_)) = deframer.next_message() {}
        }
    }
}
