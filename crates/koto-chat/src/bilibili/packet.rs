//! Bilibili's binary danmaku framing: a 16-byte big-endian header (packet length, header length,
//! protocol version, operation, sequence) and a body; version 2 bodies are zlib and version 3
//! brotli, each holding further packets.
//!
//! Decoding is total: truncated or lying lengths and bad compression give an error next to the
//! packets that were good, never a panic; decompression is capped so a bomb cannot eat memory.

use std::io::Read;

pub const HEADER_LEN: usize = 16;
/// Decompressed bytes one frame may expand to.
pub const MAX_INFLATED_BYTES: u64 = 8 * 1024 * 1024;
/// Compressed bodies hold plain packets; deeper nesting is never sent.
const MAX_DEPTH: usize = 2;

pub const OP_HEARTBEAT: u32 = 2;
pub const OP_HEARTBEAT_REPLY: u32 = 3;
pub const OP_MESSAGE: u32 = 5;
pub const OP_AUTH: u32 = 7;
pub const OP_AUTH_REPLY: u32 = 8;

pub const PROTOVER_JSON: u16 = 0;
pub const PROTOVER_INT: u16 = 1;
pub const PROTOVER_ZLIB: u16 = 2;
pub const PROTOVER_BROTLI: u16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub protover: u16,
    pub op: u32,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("frame truncated: {0}")]
    Truncated(String),
    #[error("bad header: {0}")]
    BadHeader(String),
    #[error("bad {0} body: {1}")]
    BadCompression(&'static str, String),
    #[error("decompressed body over {MAX_INFLATED_BYTES} bytes")]
    TooLarge,
    #[error("packets nested too deep")]
    TooDeep,
}

/// What one WebSocket frame held: the packets that decoded, and the error that stopped decoding
/// the rest (if any).
#[derive(Debug, Default)]
pub struct Decoded {
    pub packets: Vec<Packet>,
    pub error: Option<PacketError>,
}

pub fn encode(op: u32, protover: u16, body: &[u8]) -> Vec<u8> {
    let total = u32::try_from(HEADER_LEN + body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(HEADER_LEN as u16).to_be_bytes());
    out.extend_from_slice(&protover.to_be_bytes());
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Decode one frame, flattening compressed bodies into their packets.
pub fn decode(frame: &[u8]) -> Decoded {
    let mut decoded = Decoded::default();
    if let Err(error) = decode_into(frame, 0, &mut decoded.packets) {
        decoded.error = Some(error);
    }
    decoded
}

fn decode_into(mut rest: &[u8], depth: usize, out: &mut Vec<Packet>) -> Result<(), PacketError> {
    if depth > MAX_DEPTH {
        return Err(PacketError::TooDeep);
    }
    while !rest.is_empty() {
        if rest.len() < HEADER_LEN {
            return Err(PacketError::Truncated(format!(
                "{} bytes left, a header needs {HEADER_LEN}",
                rest.len()
            )));
        }
        let packet_len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let header_len = u16::from_be_bytes([rest[4], rest[5]]) as usize;
        let protover = u16::from_be_bytes([rest[6], rest[7]]);
        let op = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if header_len < HEADER_LEN || header_len > packet_len {
            return Err(PacketError::BadHeader(format!(
                "header length {header_len}, packet length {packet_len}"
            )));
        }
        if packet_len > rest.len() {
            return Err(PacketError::Truncated(format!(
                "packet says {packet_len} bytes, {} arrived",
                rest.len()
            )));
        }
        let body = &rest[header_len..packet_len];
        rest = &rest[packet_len..];
        match (protover, op) {
            (PROTOVER_ZLIB, OP_MESSAGE) => {
                let inflated = inflate(flate2::read::ZlibDecoder::new(body), "zlib")?;
                decode_into(&inflated, depth + 1, out)?;
            }
            (PROTOVER_BROTLI, OP_MESSAGE) => {
                let inflated = inflate(brotli::Decompressor::new(body, 4096), "brotli")?;
                decode_into(&inflated, depth + 1, out)?;
            }
            _ => out.push(Packet {
                protover,
                op,
                body: body.to_vec(),
            }),
        }
    }
    Ok(())
}

fn inflate(reader: impl Read, what: &'static str) -> Result<Vec<u8>, PacketError> {
    let mut out = Vec::new();
    reader
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|error| PacketError::BadCompression(what, error.to_string()))?;
    if out.len() as u64 > MAX_INFLATED_BYTES {
        return Err(PacketError::TooLarge);
    }
    Ok(out)
}

/// Wrap packets into one compressed message packet, as the server does (tests and fakes).
pub fn encode_compressed(protover: u16, packets: &[Vec<u8>]) -> Vec<u8> {
    use std::io::Write;
    let plain: Vec<u8> = packets.concat();
    let body = match protover {
        PROTOVER_ZLIB => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = encoder.write_all(&plain);
            encoder.finish().unwrap_or_default()
        }
        _ => {
            let mut out = Vec::new();
            {
                let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                let _ = writer.write_all(&plain);
            }
            out
        }
    };
    encode(OP_MESSAGE, protover, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_and_compressed_packets_round_trip() {
        let a = encode(OP_MESSAGE, PROTOVER_JSON, br#"{"cmd":"A"}"#);
        let b = encode(OP_MESSAGE, PROTOVER_JSON, br#"{"cmd":"B"}"#);
        for protover in [PROTOVER_ZLIB, PROTOVER_BROTLI] {
            let frame = [
                encode(OP_HEARTBEAT_REPLY, PROTOVER_INT, &7u32.to_be_bytes()),
                encode_compressed(protover, &[a.clone(), b.clone()]),
            ]
            .concat();
            let decoded = decode(&frame);
            assert_eq!(decoded.error, None);
            let ops: Vec<(u32, &[u8])> = decoded
                .packets
                .iter()
                .map(|p| (p.op, p.body.as_slice()))
                .collect();
            assert_eq!(
                ops,
                vec![
                    (OP_HEARTBEAT_REPLY, &7u32.to_be_bytes()[..]),
                    (OP_MESSAGE, &br#"{"cmd":"A"}"#[..]),
                    (OP_MESSAGE, &br#"{"cmd":"B"}"#[..]),
                ]
            );
        }
    }

    #[test]
    fn a_lying_length_keeps_the_good_packets_and_names_the_problem() {
        let good = encode(OP_MESSAGE, PROTOVER_JSON, b"{}");
        let mut lying = encode(OP_MESSAGE, PROTOVER_JSON, b"{}");
        lying[3] = 200;
        let decoded = decode(&[good, lying].concat());
        assert_eq!(decoded.packets.len(), 1);
        assert!(
            matches!(decoded.error, Some(PacketError::Truncated(_))),
            "{:?}",
            decoded.error
        );
        let mut short_header = encode(OP_MESSAGE, PROTOVER_JSON, b"{}");
        short_header[5] = 4;
        assert!(matches!(
            decode(&short_header).error,
            Some(PacketError::BadHeader(_))
        ));
        assert!(matches!(
            decode(&[0, 0, 0]).error,
            Some(PacketError::Truncated(_))
        ));
    }

    #[test]
    fn bad_compression_is_an_error() {
        for protover in [PROTOVER_ZLIB, PROTOVER_BROTLI] {
            let frame = encode(OP_MESSAGE, protover, b"definitely not compressed");
            let decoded = decode(&frame);
            assert!(decoded.packets.is_empty());
            assert!(
                matches!(decoded.error, Some(PacketError::BadCompression(_, _))),
                "{:?}",
                decoded.error
            );
        }
    }

    #[test]
    fn a_decompression_bomb_is_capped() {
        let zeros = vec![0u8; (MAX_INFLATED_BYTES + 1024) as usize];
        let frame = encode_compressed(PROTOVER_ZLIB, &[zeros]);
        assert!(frame.len() < 100_000, "the bomb is small on the wire");
        assert_eq!(decode(&frame).error, Some(PacketError::TooLarge));
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoding_mangled_frames_never_panics(cut in 0usize..64, flip in 0usize..64, protover in 0u16..5) {
            let inner = encode(OP_MESSAGE, PROTOVER_JSON, br#"{"cmd":"DANMU_MSG"}"#);
            let mut frame = encode_compressed(if protover % 2 == 0 { PROTOVER_ZLIB } else { PROTOVER_BROTLI }, &[inner]);
            if let Some(byte) = frame.get_mut(flip) { *byte ^= 0x5a; }
            frame.truncate(frame.len().saturating_sub(cut));
            let _ = decode(&frame);
        }
    }
}
