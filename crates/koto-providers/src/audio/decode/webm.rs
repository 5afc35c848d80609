//! WebM/Matroska with one Opus track → PCM: a small EBML reader for what `MediaRecorder` writes
//! (a live stream: a Segment and Clusters of unknown size, `SimpleBlock`s without lacing).
//!
//! It walks the element tree flat: the masters that lead to the audio (Segment, Tracks,
//! TrackEntry, Cluster, BlockGroup) are entered in place, so an unknown size never needs an end;
//! everything else is skipped by its size. An element whose size runs past the end of the file is
//! a truncated file. Not supported: laced blocks (no browser laces audio), codecs other than Opus.

use super::opus::{OpusHead, OpusStream};
use super::{AudioDecodeError, DecodeLimits, MonoPcm};

const FORMAT: &str = "webm/opus";

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const CLUSTER: u32 = 0x1F43_B675;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
/// Masters entered in place rather than skipped.
const ENTERED: [u32; 5] = [SEGMENT, TRACKS, TRACK_ENTRY, CLUSTER, BLOCK_GROUP];

#[derive(Debug, Default)]
struct Track {
    number: Option<u64>,
    codec: Option<String>,
    private: Option<Vec<u8>>,
}

pub(crate) fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<MonoPcm, AudioDecodeError> {
    let mut at = 0usize;
    let mut tracks: Vec<Track> = Vec::new();
    let mut audio: Option<(u64, OpusStream)> = None;
    let mut first = true;
    while at < bytes.len() {
        let (id, id_len) = read_id(&bytes[at..])?;
        let (size, size_len) = read_size(&bytes[at + id_len..])?;
        let body_at = at + id_len + size_len;
        if first {
            first = false;
            if id != EBML {
                return Err(malformed(
                    "the file does not start with an EBML header".into(),
                ));
            }
        }
        if ENTERED.contains(&id) {
            if id == TRACK_ENTRY {
                tracks.push(Track::default());
            }
            at = body_at;
            continue;
        }
        let Some(size) = size else {
            return Err(malformed(format!("element {id:#x} of unknown size")));
        };
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| body_at.checked_add(size))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| AudioDecodeError::Truncated {
                format: FORMAT,
                detail: format!(
                    "element {id:#x} declares {size} bytes but {} remain",
                    bytes.len().saturating_sub(body_at)
                ),
            })?;
        let body = &bytes[body_at..end];
        match id {
            TRACK_NUMBER => {
                if let Some(track) = tracks.last_mut() {
                    track.number = Some(read_uint(body));
                }
            }
            CODEC_ID => {
                if let Some(track) = tracks.last_mut() {
                    track.codec = Some(
                        String::from_utf8_lossy(body)
                            .trim_end_matches('\0')
                            .to_owned(),
                    );
                }
            }
            CODEC_PRIVATE => {
                if let Some(track) = tracks.last_mut() {
                    track.private = Some(body.to_vec());
                }
            }
            SIMPLE_BLOCK | BLOCK => {
                if audio.is_none() {
                    audio = Some(open_audio(&tracks, limits)?);
                }
                if let Some((number, stream)) = audio.as_mut() {
                    push_block(body, *number, stream)?;
                }
            }
            _ => {}
        }
        at = end;
    }
    match audio {
        Some((_, stream)) => Ok(stream.pcm),
        None if tracks.is_empty() => Err(AudioDecodeError::NoAudio { format: FORMAT }),
        None => {
            // Tracks but no blocks: still say what the tracks are if none is Opus.
            open_audio(&tracks, limits)?;
            Err(AudioDecodeError::NoAudio { format: FORMAT })
        }
    }
}

fn malformed(detail: String) -> AudioDecodeError {
    AudioDecodeError::Malformed {
        format: FORMAT,
        detail,
    }
}

/// The first Opus track, ready to decode.
fn open_audio(
    tracks: &[Track],
    limits: &DecodeLimits,
) -> Result<(u64, OpusStream), AudioDecodeError> {
    let Some(track) = tracks.iter().find(|t| t.codec.as_deref() == Some("A_OPUS")) else {
        let codecs: Vec<&str> = tracks.iter().filter_map(|t| t.codec.as_deref()).collect();
        return Err(AudioDecodeError::Unsupported(format!(
            "a WebM without an Opus track (tracks: {})",
            if codecs.is_empty() {
                "none".to_owned()
            } else {
                codecs.join(", ")
            }
        )));
    };
    let number = track
        .number
        .ok_or_else(|| malformed("the Opus track has no TrackNumber".into()))?;
    let private = track
        .private
        .as_deref()
        .ok_or_else(|| malformed("the Opus track has no CodecPrivate (OpusHead)".into()))?;
    let head = OpusHead::parse(private, FORMAT)?;
    Ok((number, OpusStream::new(head, FORMAT, limits)?))
}

/// A (Simple)Block: track number, 16-bit relative timecode, flags, then one frame.
fn push_block(
    body: &[u8],
    audio_track: u64,
    stream: &mut OpusStream,
) -> Result<(), AudioDecodeError> {
    let (track, track_len) = read_size(body)?;
    let header_len = track_len + 3;
    if body.len() < header_len {
        return Err(malformed("a block shorter than its header".into()));
    }
    if track != Some(audio_track) {
        return Ok(());
    }
    let flags = body[track_len + 2];
    if flags & 0x06 != 0 {
        return Err(AudioDecodeError::Unsupported("laced WebM blocks".into()));
    }
    stream.push_packet(&body[header_len..])
}

/// An element ID (marker bits kept, as IDs are written): 1–4 bytes.
fn read_id(bytes: &[u8]) -> Result<(u32, usize), AudioDecodeError> {
    let first = *bytes.first().ok_or_else(truncated_header)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Err(malformed(format!("invalid element ID byte {first:#04x}")));
    }
    let id_bytes = bytes.get(..len).ok_or_else(truncated_header)?;
    Ok((
        id_bytes.iter().fold(0u32, |id, &b| id << 8 | u32::from(b)),
        len,
    ))
}

/// A size (or a block's track number): 1–8 bytes, marker removed; all ones = unknown (`None`).
fn read_size(bytes: &[u8]) -> Result<(Option<u64>, usize), AudioDecodeError> {
    let first = *bytes.first().ok_or_else(truncated_header)?;
    if first == 0 {
        return Err(malformed("an EBML size longer than 8 bytes".into()));
    }
    let len = first.leading_zeros() as usize + 1;
    let size_bytes = bytes.get(..len).ok_or_else(truncated_header)?;
    let marker_free = u64::from(first) & ((1u64 << (8 - len)) - 1);
    let value = size_bytes[1..]
        .iter()
        .fold(marker_free, |value, &b| value << 8 | u64::from(b));
    let all_ones = (1u64 << (7 * len)) - 1;
    Ok(((value != all_ones).then_some(value), len))
}

fn read_uint(body: &[u8]) -> u64 {
    body.iter()
        .take(8)
        .fold(0u64, |value, &b| value << 8 | u64::from(b))
}

fn truncated_header() -> AudioDecodeError {
    AudioDecodeError::Truncated {
        format: FORMAT,
        detail: "the file ends inside an element header".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn vints_read_as_ebml_defines_them() {
        assert_eq!(
            read_id(&[0x1A, 0x45, 0xDF, 0xA3]).unwrap(),
            (EBML, 4),
            "a 4-byte ID keeps its marker"
        );
        assert_eq!(read_size(&[0x81]).unwrap(), (Some(1), 1), "1-byte size");
        assert_eq!(
            read_size(&[0x40, 0x02]).unwrap(),
            (Some(2), 2),
            "2-byte size"
        );
        assert_eq!(
            read_size(&[0xFF]).unwrap(),
            (None, 1),
            "all ones is unknown"
        );
        assert_eq!(
            read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap(),
            (None, 8),
            "MediaRecorder's 8-byte unknown size"
        );
        assert!(read_size(&[0x00]).is_err(), "no marker in the first byte");
        assert!(
            matches!(read_size(&[0x40]), Err(AudioDecodeError::Truncated { .. })),
            "cut inside a size"
        );
    }
}
