//! Binary SPEECH_CHUNK framing for `/ws/live` clients that ask for binary audio.
//!
//! ```text
//! offset 0   u32 little-endian  N = byte length of the header
//! offset 4   N bytes            header: UTF-8 JSON, the SPEECH_CHUNK frame of CONTRACTS §2
//!                               without "pcm" and always with "sampleRate"
//! offset 4+N rest               the PCM: raw s16le mono samples at sampleRate
//! ```
//! In a browser: `const n = new DataView(buf).getUint32(0, true);
//! const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
//! const pcm = new Int16Array(buf.slice(4 + n));`
//!
//! Only SPEECH_CHUNK is ever binary; every other frame stays JSON text.

use base64::Engine as _;
use koto_protocol::ingest::{RelayFrame, SpeechChunk};

/// A binary SPEECH_CHUNK, decoded: the header (with an empty `pcm`) and the raw PCM bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryChunk {
    pub header: SpeechChunk,
    pub pcm: Vec<u8>,
}

impl BinaryChunk {
    /// The same chunk in its JSON form (`pcm` as base64).
    pub fn into_speech_chunk(self) -> SpeechChunk {
        let mut chunk = self.header;
        chunk.pcm = base64::engine::general_purpose::STANDARD.encode(&self.pcm);
        chunk
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("binary frame shorter than its 4-byte header length")]
    Truncated,
    #[error("header length {0} runs past the end of the frame")]
    HeaderTooLong(u32),
    #[error("header is not a SPEECH_CHUNK JSON object: {0}")]
    BadHeader(String),
    #[error("pcm of {0} bytes is not a whole number of 16-bit samples")]
    OddPcm(usize),
}

/// Frame `chunk` (whose `pcm` is ignored) with `samples` as raw s16le.
pub fn encode_binary_chunk(chunk: &SpeechChunk, samples: &[i16]) -> Vec<u8> {
    let header = header_json(chunk);
    // A header is a few hundred bytes (ids, seq, subtitle text); it cannot reach 4 GiB.
    let header_len = u32::try_from(header.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(4 + header.len() + samples.len() * 2);
    frame.extend_from_slice(&header_len.to_le_bytes());
    frame.extend_from_slice(header.as_bytes());
    frame.extend(samples.iter().flat_map(|sample| sample.to_le_bytes()));
    frame
}

fn header_json(chunk: &SpeechChunk) -> String {
    let mut header = chunk.clone();
    header.pcm.clear();
    header.sample_rate = Some(chunk.sample_rate());
    let mut value = serde_json::to_value(RelayFrame::SpeechChunk(header)).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("pcm");
    }
    value.to_string()
}

/// Decode a frame made by [`encode_binary_chunk`].
pub fn decode_binary_chunk(frame: &[u8]) -> Result<BinaryChunk, FramingError> {
    let (len_bytes, rest) = frame
        .split_first_chunk::<4>()
        .ok_or(FramingError::Truncated)?;
    let header_len = u32::from_le_bytes(*len_bytes);
    let split = usize::try_from(header_len)
        .ok()
        .filter(|n| *n <= rest.len())
        .ok_or(FramingError::HeaderTooLong(header_len))?;
    let (header, pcm) = rest.split_at(split);
    let mut value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| FramingError::BadHeader(e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| FramingError::BadHeader("not an object".into()))?;
    object.insert("pcm".into(), serde_json::Value::String(String::new()));
    let frame: RelayFrame =
        serde_json::from_value(value).map_err(|e| FramingError::BadHeader(e.to_string()))?;
    let RelayFrame::SpeechChunk(header) = frame else {
        return Err(FramingError::BadHeader("type is not SPEECH_CHUNK".into()));
    };
    if pcm.len() % 2 != 0 {
        return Err(FramingError::OddPcm(pcm.len()));
    }
    Ok(BinaryChunk {
        header,
        pcm: pcm.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use koto_core::{SessionId, TurnNo};
    use koto_protocol::ingest::{SegmentInfo, Viseme};

    use super::*;

    fn chunk() -> SpeechChunk {
        SpeechChunk {
            session_id: SessionId::parse("live-001").expect("valid id"),
            turn: TurnNo(42),
            seq: 7,
            pcm: SpeechChunk::encode_pcm(&[1, -2, 300]),
            sample_rate: None,
            viseme: Viseme { mouth_open: 0.5 },
            segment: Some(SegmentInfo {
                index: 0,
                text: "字幕".into(),
            }),
        }
    }

    #[test]
    fn layout_is_length_header_then_raw_pcm() {
        let pcm = [1u8, 0, 0xfe, 0xff, 0x2c, 0x01];
        let frame = encode_binary_chunk(&chunk(), &[1, -2, 300]);
        let header_len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let header: serde_json::Value =
            serde_json::from_slice(&frame[4..4 + header_len]).expect("header is JSON");
        assert_eq!(header["type"], "SPEECH_CHUNK", "the header is the §2 frame");
        assert_eq!(header["seq"], 7, "with its seq");
        assert_eq!(
            header["sampleRate"], 24_000,
            "and always an explicit sample rate"
        );
        assert_eq!(
            header["segment"]["text"], "字幕",
            "subtitles ride in the header"
        );
        assert!(
            header.get("pcm").is_none(),
            "the audio is not in the header"
        );
        assert_eq!(
            &frame[4 + header_len..],
            &pcm,
            "raw s16le follows the header"
        );
    }

    #[test]
    fn decode_inverts_encode() {
        let original = chunk();
        let pcm = [1u8, 0, 0xfe, 0xff, 0x2c, 0x01];
        let decoded =
            decode_binary_chunk(&encode_binary_chunk(&original, &[1, -2, 300])).expect("decodes");
        assert_eq!(decoded.pcm, pcm, "pcm bytes survive");
        let mut expected = original.clone();
        expected.sample_rate = Some(24_000);
        assert_eq!(
            decoded.into_speech_chunk(),
            expected,
            "the JSON form comes back, base64 and all"
        );
    }

    #[test]
    fn broken_frames_are_errors_not_panics() {
        assert_eq!(
            decode_binary_chunk(&[1, 0]),
            Err(FramingError::Truncated),
            "too short"
        );
        assert_eq!(
            decode_binary_chunk(&[9, 0, 0, 0, b'{']),
            Err(FramingError::HeaderTooLong(9)),
            "header length past the end"
        );
        assert!(
            matches!(
                decode_binary_chunk(&[2, 0, 0, 0, b'{', b'}']),
                Err(FramingError::BadHeader(_))
            ),
            "an empty object is no SPEECH_CHUNK"
        );
        // One sample (2 bytes) and half of the next.
        let mut odd = encode_binary_chunk(&chunk(), &[0x0201]);
        odd.push(3);
        assert_eq!(
            decode_binary_chunk(&odd),
            Err(FramingError::OddPcm(3)),
            "half a sample"
        );
    }
}
