//! One Opus stream (RFC 7845 `OpusHead` + packets) → mono PCM at 48 kHz, shared by the Ogg and
//! WebM demuxers.

use opus_decoder::OpusDecoder;

use super::{AudioDecodeError, DecodeLimits, MonoPcm};

/// Opus always decodes at 48 kHz here; the resampler takes it to 16 kHz afterwards.
pub(crate) const RATE: u32 = 48_000;
/// 120 ms at 48 kHz: the longest packet Opus allows, per channel.
const MAX_PACKET_FRAMES: usize = 5760;

/// The fields of `OpusHead` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpusHead {
    pub(crate) channels: usize,
    /// Samples (at 48 kHz) to discard from the start: the encoder's look-ahead.
    pub(crate) pre_skip: u64,
}

impl OpusHead {
    pub(crate) fn parse(packet: &[u8], format: &'static str) -> Result<Self, AudioDecodeError> {
        if packet.len() < 19 || &packet[..8] != b"OpusHead" {
            return Err(AudioDecodeError::Unsupported(format!(
                "the {format} stream is not Opus (no OpusHead)"
            )));
        }
        let version = packet[8];
        if version >> 4 != 0 {
            return Err(AudioDecodeError::Unsupported(format!(
                "OpusHead version {version}"
            )));
        }
        let channels = usize::from(packet[9]);
        let pre_skip = u64::from(u16::from_le_bytes([packet[10], packet[11]]));
        let mapping_family = packet[18];
        if channels == 0 {
            return Err(AudioDecodeError::Malformed {
                format,
                detail: "OpusHead declares 0 channels".into(),
            });
        }
        if channels > 2 || mapping_family > 1 {
            return Err(AudioDecodeError::Unsupported(format!(
                "multichannel Opus ({channels} channels, mapping family {mapping_family})"
            )));
        }
        Ok(Self { channels, pre_skip })
    }
}

/// Decodes packets in order, dropping the pre-skip.
pub(crate) struct OpusStream {
    decoder: OpusDecoder,
    head: OpusHead,
    format: &'static str,
    to_skip: u64,
    buffer: Vec<i16>,
    pub(crate) pcm: MonoPcm,
    /// 48 kHz frames decoded, pre-skip included.
    pub(crate) decoded_frames: u64,
}

impl OpusStream {
    pub(crate) fn new(
        head: OpusHead,
        format: &'static str,
        limits: &DecodeLimits,
    ) -> Result<Self, AudioDecodeError> {
        let decoder =
            OpusDecoder::new(RATE, head.channels).map_err(|error| AudioDecodeError::Malformed {
                format,
                detail: format!("cannot start the Opus decoder: {error}"),
            })?;
        Ok(Self {
            decoder,
            head,
            format,
            to_skip: head.pre_skip,
            buffer: vec![0; MAX_PACKET_FRAMES * head.channels],
            pcm: MonoPcm::new(RATE, limits),
            decoded_frames: 0,
        })
    }

    pub(crate) fn push_packet(&mut self, packet: &[u8]) -> Result<(), AudioDecodeError> {
        if packet.is_empty() {
            // An empty packet would ask for loss concealment; a file has no losses to hide.
            return Ok(());
        }
        let frames = self
            .decoder
            .decode(packet, &mut self.buffer, false)
            .map_err(|error| AudioDecodeError::Malformed {
                format: self.format,
                detail: format!(
                    "Opus packet {} bytes after {} frames: {error}",
                    packet.len(),
                    self.decoded_frames
                ),
            })?;
        self.decoded_frames += frames as u64;
        let skip = (self.to_skip.min(frames as u64)) as usize;
        self.to_skip -= skip as u64;
        let channels = self.head.channels;
        let usable = self
            .buffer
            .get(skip * channels..frames * channels)
            .unwrap_or(&[]);
        self.pcm.push_interleaved(usable, channels)
    }

    /// Cuts the output to `total` frames after the pre-skip (the end trimming of RFC 7845 §4.4).
    pub(crate) fn trim_to(&mut self, total: u64) {
        if (self.pcm.samples.len() as u64) > total {
            self.pcm.samples.truncate(total as usize);
        }
    }
}
