//! Ogg/Opus (RFC 7845): pages (CRC-checked) from the `ogg` crate, the first logical stream only.

use std::io::Cursor;

use ogg::reading::{OggReadError, PacketReader};

use super::opus::{OpusHead, OpusStream};
use super::{AudioDecodeError, DecodeLimits, MonoPcm};

const FORMAT: &str = "ogg/opus";

pub(crate) fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<MonoPcm, AudioDecodeError> {
    let mut reader = PacketReader::new(Cursor::new(bytes));
    let head_packet = next(&mut reader)?.ok_or(AudioDecodeError::Truncated {
        format: FORMAT,
        detail: "no complete first page".into(),
    })?;
    let serial = head_packet.stream_serial();
    let head = OpusHead::parse(&head_packet.data, FORMAT)?;
    let mut stream = OpusStream::new(head, FORMAT, limits)?;
    let mut seen_tags = false;
    let mut last_granule: Option<u64> = None;
    let mut ended = false;
    while let Some(packet) = next(&mut reader)? {
        if packet.stream_serial() != serial {
            continue;
        }
        if !seen_tags {
            // The second packet is OpusTags (metadata), never audio.
            seen_tags = true;
            if !packet.data.starts_with(b"OpusTags") {
                return Err(AudioDecodeError::Malformed {
                    format: FORMAT,
                    detail: "the second packet is not OpusTags".into(),
                });
            }
            continue;
        }
        stream.push_packet(&packet.data)?;
        if packet.last_in_page() {
            last_granule = Some(packet.absgp_page());
        }
        if packet.last_in_stream() {
            ended = true;
            break;
        }
    }
    // The final granule position counts samples from the start, pre-skip included; a shorter
    // total than decoded is the encoder's padding of the last packet.
    if let Some(granule) = last_granule.filter(|_| ended) {
        if granule > stream.decoded_frames.saturating_add(MAX_GRANULE_SLACK) {
            return Err(AudioDecodeError::Truncated {
                format: FORMAT,
                detail: format!(
                    "the last page claims {granule} samples but only {} are there",
                    stream.decoded_frames
                ),
            });
        }
        stream.trim_to(granule.saturating_sub(head.pre_skip));
    }
    Ok(stream.pcm)
}

/// A final granule may exceed the decoded count only by less than one packet (120 ms).
const MAX_GRANULE_SLACK: u64 = 5760;

fn next(reader: &mut PacketReader<Cursor<&[u8]>>) -> Result<Option<ogg::Packet>, AudioDecodeError> {
    reader.read_packet().map_err(|error| match error {
        OggReadError::ReadError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioDecodeError::Truncated {
                format: FORMAT,
                detail: "the file ends inside a page".into(),
            }
        }
        OggReadError::HashMismatch(expected, got) => AudioDecodeError::Malformed {
            format: FORMAT,
            detail: format!("page checksum {got:#010x}, expected {expected:#010x}"),
        },
        other => AudioDecodeError::Malformed {
            format: FORMAT,
            detail: other.to_string(),
        },
    })
}
