//! Streaming MP3 → PCM decoding (symphonia) for providers that only speak MP3 (Edge, OpenAI `mp3`).
//!
//! Bytes go in as they arrive off the network, split anywhere; every complete MPEG audio frame is
//! decoded at once and comes out as mono `i16` PCM at the stream's own rate. This module finds frame
//! boundaries itself (symphonia's format reader wants a seekable, whole source) and feeds whole
//! frames to symphonia's Layer III decoder as packets. It deliberately does not resample, does not
//! trim the encoder delay (gapless playback is not a goal for speech), and decodes Layer III only
//! (the `mp3` feature of symphonia; Layers I/II never come from a TTS service).

use koto_core::ProviderError;
use koto_core::tts::PcmBlock;
use symphonia::core::audio::{AudioBufferRef, SampleBuffer};
use symphonia::core::codecs::{CODEC_TYPE_MP3, CodecParameters, Decoder, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::Packet;
use symphonia::default::codecs::MpaDecoder;

/// Bytes skipped in a row without finding a frame before the input is declared "not MP3". Large
/// enough for any junk a real stream carries between frames, small enough that a JSON error body
/// or a WAV file sent by mistake fails quickly instead of being swallowed silently.
const MAX_JUNK_BYTES: usize = 64 * 1024;

/// Why MP3 bytes could not be turned into PCM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Many bytes without a single MPEG audio frame: the data is something else (an error page, WAV…).
    #[error("no MPEG audio frame in {skipped_bytes} bytes: the data is not MP3")]
    NoFrameSync { skipped_bytes: usize },
    /// symphonia refused the stream as a whole (not a single bad frame, which is replaced by silence).
    #[error("MP3 decoder failed: {0}")]
    Codec(String),
}

impl From<DecodeError> for ProviderError {
    fn from(error: DecodeError) -> Self {
        ProviderError::Protocol(format!("undecodable audio from the provider: {error}"))
    }
}

/// An incremental MP3 decoder: `push` bytes as they arrive, `finish` at the end of the stream.
pub struct Mp3StreamDecoder {
    /// Undecoded bytes; `buffer[consumed..]` is what is still pending.
    buffer: Vec<u8>,
    consumed: usize,
    /// Bytes of an ID3v2 tag still to skip (a tag may span several pushes).
    tag_bytes_to_skip: usize,
    /// Shape of the frame that ended exactly at `consumed`: a header of the same shape there is
    /// trusted without waiting for the header after it, which keeps latency at zero frames.
    locked_shape: Option<FrameShape>,
    /// True until the first frame after the start of the stream (or after an ID3v2 tag) has been
    /// seen: only that frame may be a Xing/Info/VBRI header frame, which carries no audio.
    expecting_header_frame: bool,
    junk_run: usize,
    decoder: Option<ShapedDecoder>,
    sample_buffer: Option<SampleBuffer<f32>>,
    sample_rate: Option<u32>,
    n_frames: u64,
}

/// The decoder is rebuilt when the rate or channel count changes, which symphonia cannot follow.
struct ShapedDecoder {
    sample_rate: u32,
    channels: usize,
    inner: MpaDecoder,
}

impl Default for Mp3StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Mp3StreamDecoder {
    pub fn new() -> Self {
        Self {
            buffer: Vec::new(),
            consumed: 0,
            tag_bytes_to_skip: 0,
            locked_shape: None,
            expecting_header_frame: true,
            junk_run: 0,
            decoder: None,
            sample_buffer: None,
            sample_rate: None,
            n_frames: 0,
        }
    }

    /// The rate of the last decoded frame (`None` before the first one).
    pub fn sample_rate(&self) -> Option<u32> {
        self.sample_rate
    }

    /// Audio frames decoded so far (Xing/Info header frames not counted).
    pub fn frames_decoded(&self) -> u64 {
        self.n_frames
    }

    /// Adds bytes and decodes every frame that is complete so far. Usually returns zero or one
    /// block; more only when the sample rate changes mid-stream.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<PcmBlock>, DecodeError> {
        self.buffer.extend_from_slice(bytes);
        let mut blocks = PcmBlocks::default();
        self.drain_frames(false, &mut blocks)?;
        self.compact();
        Ok(blocks.0)
    }

    /// The stream ended: decodes the last frame (held back until now if nothing confirmed it) and
    /// drops any trailing partial frame or tag.
    pub fn finish(&mut self) -> Result<Vec<PcmBlock>, DecodeError> {
        let mut blocks = PcmBlocks::default();
        self.drain_frames(true, &mut blocks)?;
        let leftover = self.buffer.len() - self.consumed;
        if leftover > 0 {
            tracing::debug!(leftover, "mp3: dropping a trailing partial frame");
        }
        self.buffer.clear();
        self.consumed = 0;
        self.locked_shape = None;
        Ok(blocks.0)
    }

    fn drain_frames(&mut self, at_end: bool, blocks: &mut PcmBlocks) -> Result<(), DecodeError> {
        loop {
            if self.tag_bytes_to_skip > 0 {
                let n = self
                    .tag_bytes_to_skip
                    .min(self.buffer.len() - self.consumed);
                self.consumed += n;
                self.tag_bytes_to_skip -= n;
                if self.tag_bytes_to_skip > 0 {
                    return Ok(());
                }
            }
            let pending = &self.buffer[self.consumed..];
            if pending.len() < 4 {
                return Ok(());
            }
            match Tag::detect(pending) {
                Some(Tag::Incomplete) => return Ok(()),
                Some(Tag::Skip {
                    len,
                    restarts_stream,
                }) => {
                    self.tag_bytes_to_skip = len;
                    self.locked_shape = None;
                    self.junk_run = 0;
                    if restarts_stream {
                        self.expecting_header_frame = true;
                    }
                    continue;
                }
                None => {}
            }
            let Some(header) = FrameHeader::parse(pending) else {
                self.skip_junk(at_end)?;
                continue;
            };
            let frame_len = header.frame_len;
            if pending.len() < frame_len {
                // Wait for the rest; at the end, a torn last frame stays as `finish`'s leftover.
                return Ok(());
            }
            let confirmed = if self.locked_shape == Some(header.shape) {
                true
            } else {
                match Boundary::after(&pending[frame_len..], header.shape) {
                    Boundary::Confirmed => true,
                    Boundary::NeedMoreBytes if at_end => true,
                    Boundary::NeedMoreBytes => return Ok(()),
                    Boundary::Mismatch => false,
                }
            };
            if !confirmed {
                // A sync word inside other data: step over it and look again.
                self.skip_junk(at_end)?;
                continue;
            }
            let frame_start = self.consumed;
            self.consumed += frame_len;
            self.locked_shape = Some(header.shape);
            self.junk_run = 0;
            let is_first = std::mem::replace(&mut self.expecting_header_frame, false);
            if is_first && header.is_vbr_header_frame(&self.buffer[frame_start..self.consumed]) {
                continue;
            }
            // Lend the buffer out for the decode instead of copying the frame.
            let buffer = std::mem::take(&mut self.buffer);
            let decoded = self.decode_frame(&buffer[frame_start..self.consumed], header, blocks);
            self.buffer = buffer;
            decoded?;
        }
    }

    /// Drops bytes up to the next possible sync byte (0xFF) after the current position.
    fn skip_junk(&mut self, at_end: bool) -> Result<(), DecodeError> {
        let pending = &self.buffer[self.consumed..];
        let skip = pending
            .iter()
            .skip(1)
            .position(|&b| b == 0xFF)
            .map_or(pending.len(), |i| i + 1);
        // Keep the tail: it may be the start of a tag or header whose rest has not arrived yet.
        let skip = if !at_end && skip == pending.len() {
            skip.saturating_sub(3).max(1)
        } else {
            skip
        };
        self.consumed += skip;
        self.locked_shape = None;
        self.junk_run += skip;
        if self.junk_run > MAX_JUNK_BYTES {
            return Err(DecodeError::NoFrameSync {
                skipped_bytes: self.junk_run,
            });
        }
        Ok(())
    }

    fn decode_frame(
        &mut self,
        frame: &[u8],
        header: FrameHeader,
        blocks: &mut PcmBlocks,
    ) -> Result<(), DecodeError> {
        let rebuild = self.decoder.as_ref().is_none_or(|d| {
            d.sample_rate != header.shape.sample_rate || d.channels != header.channels
        });
        if rebuild {
            let mut params = CodecParameters::new();
            params
                .for_codec(CODEC_TYPE_MP3)
                .with_sample_rate(header.shape.sample_rate);
            let inner = MpaDecoder::try_new(&params, &DecoderOptions::default())
                .map_err(|e| DecodeError::Codec(e.to_string()))?;
            self.decoder = Some(ShapedDecoder {
                sample_rate: header.shape.sample_rate,
                channels: header.channels,
                inner,
            });
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Err(DecodeError::Codec(
                "decoder missing after construction".into(),
            ));
        };
        let packet = Packet::new_from_slice(
            0,
            self.n_frames * header.samples_per_frame as u64,
            header.samples_per_frame as u64,
            frame,
        );
        self.n_frames += 1;
        self.sample_rate = Some(header.shape.sample_rate);
        match decoder.inner.decode(&packet) {
            Ok(decoded) => {
                // The decoder's own channel count decides the interleaving, not the header's mode.
                let channels = decoded.spec().channels.count().max(1);
                let sample_buffer = reusable_sample_buffer(&mut self.sample_buffer, &decoded);
                sample_buffer.copy_interleaved_ref(decoded);
                let samples = sample_buffer.samples();
                let rate = header.shape.sample_rate;
                blocks.extend(
                    rate,
                    samples.chunks_exact(channels).map(|frame| {
                        let mean = frame.iter().sum::<f32>() / channels as f32;
                        to_i16(mean)
                    }),
                );
                Ok(())
            }
            // One damaged frame (or one whose bit reservoir lies in bytes we never saw): keep the
            // timeline intact with silence rather than shortening the audio.
            Err(SymphoniaError::DecodeError(reason)) => {
                tracing::debug!(reason, "mp3: frame replaced by silence");
                blocks.extend(
                    header.shape.sample_rate,
                    std::iter::repeat_n(0, header.samples_per_frame),
                );
                Ok(())
            }
            Err(SymphoniaError::IoError(error)) => {
                tracing::debug!(%error, "mp3: frame replaced by silence");
                blocks.extend(
                    header.shape.sample_rate,
                    std::iter::repeat_n(0, header.samples_per_frame),
                );
                Ok(())
            }
            Err(other) => Err(DecodeError::Codec(other.to_string())),
        }
    }

    /// Keeps the buffer from growing without bound: pending bytes move to the front.
    fn compact(&mut self) {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
    }
}

fn reusable_sample_buffer<'a>(
    slot: &'a mut Option<SampleBuffer<f32>>,
    decoded: &AudioBufferRef<'_>,
) -> &'a mut SampleBuffer<f32> {
    let needed = decoded.capacity() * decoded.spec().channels.count();
    let fits = slot.as_ref().is_some_and(|b| b.capacity() >= needed);
    if !fits {
        *slot = None;
    }
    slot.get_or_insert_with(|| SampleBuffer::new(decoded.capacity() as u64, *decoded.spec()))
}

fn to_i16(sample: f32) -> i16 {
    // The float→int conversion saturates, so a clipped decoder output cannot wrap around.
    (sample * 32767.0).round() as i16
}

/// Decoded PCM gathered during one `push`: consecutive frames at one rate share a block.
#[derive(Default)]
struct PcmBlocks(Vec<PcmBlock>);

impl PcmBlocks {
    fn extend(&mut self, sample_rate: u32, samples: impl Iterator<Item = i16>) {
        match self.0.last_mut() {
            Some(last) if last.sample_rate == sample_rate => last.samples.extend(samples),
            _ => self.0.push(PcmBlock {
                sample_rate,
                samples: samples.collect(),
            }),
        }
    }
}

/// What a frame must share with its neighbour to count as the same stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameShape {
    version: MpegVersion,
    sample_rate: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MpegVersion {
    Mpeg1,
    Mpeg2,
    Mpeg25,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    shape: FrameShape,
    channels: usize,
    frame_len: usize,
    samples_per_frame: usize,
    has_crc: bool,
}

const BITRATES_MPEG1_L3: [u32; 15] = [
    0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];
const BITRATES_MPEG2_L3: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];

impl FrameHeader {
    /// Parses a Layer III frame header at the start of `bytes` (at least 4 bytes). Free-format
    /// frames (bitrate index 0) are rejected: their length is not in the header, and no TTS
    /// service produces them.
    fn parse(bytes: &[u8]) -> Option<FrameHeader> {
        let [b0, b1, b2, b3] = *bytes.first_chunk::<4>()?;
        if b0 != 0xFF || b1 & 0xE0 != 0xE0 {
            return None;
        }
        let version = match (b1 >> 3) & 0b11 {
            0b00 => MpegVersion::Mpeg25,
            0b10 => MpegVersion::Mpeg2,
            0b11 => MpegVersion::Mpeg1,
            _ => return None,
        };
        if (b1 >> 1) & 0b11 != 0b01 {
            return None; // not Layer III
        }
        let has_crc = b1 & 1 == 0;
        let bitrate_index = usize::from(b2 >> 4);
        let kbps = match version {
            MpegVersion::Mpeg1 => *BITRATES_MPEG1_L3.get(bitrate_index)?,
            MpegVersion::Mpeg2 | MpegVersion::Mpeg25 => *BITRATES_MPEG2_L3.get(bitrate_index)?,
        };
        if kbps == 0 {
            return None;
        }
        let base_rate = match (b2 >> 2) & 0b11 {
            0 => 44_100,
            1 => 48_000,
            2 => 32_000,
            _ => return None,
        };
        let (sample_rate, samples_per_frame, slot_factor) = match version {
            MpegVersion::Mpeg1 => (base_rate, 1152, 144),
            MpegVersion::Mpeg2 => (base_rate / 2, 576, 72),
            MpegVersion::Mpeg25 => (base_rate / 4, 576, 72),
        };
        if b3 & 0b11 == 0b10 {
            return None; // reserved emphasis
        }
        let padding = usize::from((b2 >> 1) & 1);
        let frame_len = (slot_factor * kbps * 1000 / sample_rate) as usize + padding;
        let channels = if b3 >> 6 == 0b11 { 1 } else { 2 };
        Some(FrameHeader {
            shape: FrameShape {
                version,
                sample_rate,
            },
            channels,
            frame_len,
            samples_per_frame,
            has_crc,
        })
    }

    /// A Xing/Info (LAME) or VBRI frame: a valid frame whose payload is stream metadata, not audio.
    fn is_vbr_header_frame(&self, frame: &[u8]) -> bool {
        let side_info_len = match (self.shape.version, self.channels) {
            (MpegVersion::Mpeg1, 1) => 17,
            (MpegVersion::Mpeg1, _) => 32,
            (_, 1) => 9,
            (_, _) => 17,
        };
        let xing_at = 4 + usize::from(self.has_crc) * 2 + side_info_len;
        let tag_at = |offset: usize| frame.get(offset..offset + 4);
        matches!(tag_at(xing_at), Some(b"Xing") | Some(b"Info")) || tag_at(4 + 32) == Some(b"VBRI")
    }
}

/// Tags that may sit before, between or after the frames.
enum Tag {
    /// Skip this many bytes; an ID3v2 tag may start a new stream (concatenated files).
    Skip { len: usize, restarts_stream: bool },
    /// Looks like a tag but its size is not readable yet.
    Incomplete,
}

impl Tag {
    fn detect(pending: &[u8]) -> Option<Tag> {
        if pending.starts_with(b"ID3") {
            let Some(header) = pending.get(..10) else {
                return Some(Tag::Incomplete);
            };
            let size_bytes = &header[6..10];
            if size_bytes.iter().any(|b| b & 0x80 != 0) {
                return None; // not a real tag: its size is not syncsafe
            }
            let size = size_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 7) | usize::from(b));
            let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
            return Some(Tag::Skip {
                len: 10 + size + footer,
                restarts_stream: true,
            });
        }
        if pending.starts_with(b"TAG") {
            // ID3v1: a fixed 128-byte trailer.
            return Some(if pending.len() >= 128 {
                Tag::Skip {
                    len: 128,
                    restarts_stream: false,
                }
            } else {
                Tag::Incomplete
            });
        }
        None
    }
}

/// What follows a candidate frame decides whether its sync word was real.
enum Boundary {
    Confirmed,
    NeedMoreBytes,
    Mismatch,
}

impl Boundary {
    fn after(next: &[u8], shape: FrameShape) -> Boundary {
        if next.starts_with(b"ID3") || next.starts_with(b"TAG") || next.starts_with(b"APE") {
            return Boundary::Confirmed;
        }
        if next.len() < 4 {
            return Boundary::NeedMoreBytes;
        }
        match FrameHeader::parse(next) {
            Some(following) if following.shape == shape => Boundary::Confirmed,
            _ => Boundary::Mismatch,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use symphonia::core::formats::{FormatOptions, FormatReader};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::default::formats::MpaReader;

    const MONO_24K: &[u8] = include_bytes!("../../tests/fixtures/speech-24k-mono.mp3");
    const STEREO_44K: &[u8] = include_bytes!("../../tests/fixtures/speech-44k-stereo-vbr-id3.mp3");

    fn decode_in_pieces(bytes: &[u8], piece: usize) -> (Vec<i16>, Option<u32>) {
        let mut decoder = Mp3StreamDecoder::new();
        let mut samples = Vec::new();
        let mut rates = Vec::new();
        for chunk in bytes.chunks(piece) {
            for block in decoder.push(chunk).unwrap() {
                rates.push(block.sample_rate);
                samples.extend(block.samples);
            }
        }
        for block in decoder.finish().unwrap() {
            rates.push(block.sample_rate);
            samples.extend(block.samples);
        }
        rates.dedup();
        assert!(
            rates.len() <= 1,
            "a fixture has one sample rate, got {rates:?}"
        );
        (samples, decoder.sample_rate())
    }

    /// symphonia's own whole-file reader and decoder, downmixed the same way: the oracle.
    /// Returns the samples and the channel count of the file.
    fn decode_with_symphonia_reader(bytes: &'static [u8]) -> (Vec<i16>, usize) {
        let source =
            MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
        let mut reader = MpaReader::try_new(source, &FormatOptions::default()).unwrap();
        let params = reader.default_track().unwrap().codec_params.clone();
        let mut decoder = MpaDecoder::try_new(&params, &DecoderOptions::default()).unwrap();
        let mut samples = Vec::new();
        let mut channels = 0;
        while let Ok(packet) = reader.next_packet() {
            let decoded = decoder.decode(&packet).unwrap();
            channels = decoded.spec().channels.count();
            let mut buffer = SampleBuffer::<f32>::new(decoded.capacity() as u64, *decoded.spec());
            buffer.copy_interleaved_ref(decoded);
            samples.extend(
                buffer
                    .samples()
                    .chunks_exact(channels)
                    .map(|f| to_i16(f.iter().sum::<f32>() / channels as f32)),
            );
        }
        (samples, channels)
    }

    #[test]
    fn mono_24k_fixture_decodes_to_its_full_length_at_24k() {
        let (samples, rate) = decode_in_pieces(MONO_24K, MONO_24K.len());
        assert_eq!(
            rate,
            Some(24_000),
            "the fixture is MPEG-2 Layer III at 24 kHz (Edge's format)"
        );
        // lame reported 128 frames; MPEG-2 Layer III frames carry 576 samples each.
        assert_eq!(
            samples.len(),
            128 * 576,
            "every frame of the fixture must be decoded, none invented"
        );
        // The source WAV held 72 378 samples; lame pads to whole frames (plus its encoder delay).
        assert!(
            samples.len() >= 72_378,
            "decoded audio cannot be shorter than the speech encoded"
        );
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(
            peak > 3_000,
            "speech must decode to audible samples, not silence (peak {peak})"
        );
    }

    #[test]
    fn streaming_decode_matches_symphonia_whole_file_reader() {
        for (fixture, n_channels) in [(MONO_24K, 1), (STEREO_44K, 2)] {
            let (ours, _) = decode_in_pieces(fixture, fixture.len());
            let (reference, channels) = decode_with_symphonia_reader(fixture);
            assert_eq!(
                channels, n_channels,
                "the fixture exercises the mono and the stereo (downmix) path"
            );
            assert_eq!(
                ours.len(),
                reference.len(),
                "same frames as symphonia's reader (tags and Info frame skipped)"
            );
            assert!(ours == reference, "same samples as symphonia's reader");
        }
    }

    #[test]
    fn stereo_vbr_fixture_with_id3_tags_is_downmixed_to_mono_at_44k1() {
        let (samples, rate) = decode_in_pieces(STEREO_44K, STEREO_44K.len());
        assert_eq!(rate, Some(44_100), "the fixture is MPEG-1 at 44.1 kHz");
        assert_eq!(
            samples.len() % 1152,
            0,
            "MPEG-1 Layer III frames carry 1152 samples each"
        );
        // Source: 132 994 samples; lame adds < 2 frames of delay + padding, and the Info frame is
        // metadata, not audio (decoding it would add 1152 samples of silence at the start).
        assert!(
            (132_994..132_994 + 3 * 1152).contains(&samples.len()),
            "decoded length {} must match the 3.02 s source",
            samples.len()
        );
    }

    #[test]
    fn any_split_of_the_bytes_gives_the_same_samples() {
        for fixture in [MONO_24K, STEREO_44K] {
            let (whole, _) = decode_in_pieces(fixture, fixture.len());
            for piece in [1, 2, 3, 7, 100, 143, 144, 145, 1000, 4096] {
                let (split, _) = decode_in_pieces(fixture, piece);
                assert!(
                    split == whole,
                    "pushing {piece}-byte pieces must give the same samples as one push"
                );
            }
        }
    }

    #[test]
    fn frames_come_out_as_soon_as_they_are_complete() {
        let mut decoder = Mp3StreamDecoder::new();
        // The fixture is CBR with 144-byte frames. Frame 1 alone is held back: nothing confirms
        // that its sync word is real until the next header arrives.
        assert!(
            decoder.push(&MONO_24K[..144]).unwrap().is_empty(),
            "an unconfirmed first frame waits"
        );
        let blocks = decoder.push(&MONO_24K[144..148]).unwrap();
        let n: usize = blocks.iter().map(|b| b.samples.len()).sum();
        assert_eq!(
            n, 576,
            "the next header confirms frame 1, which decodes at once"
        );
        // Once locked, a complete frame decodes without waiting for its successor.
        let blocks = decoder.push(&MONO_24K[148..288]).unwrap();
        let n: usize = blocks.iter().map(|b| b.samples.len()).sum();
        assert_eq!(n, 576, "frame 2 is complete and follows a locked frame");
    }

    #[test]
    fn junk_between_frames_is_skipped() {
        let mut bytes = b"garbage\xFF\xFF\x00 before".to_vec();
        bytes.extend_from_slice(&MONO_24K[..144 * 10]);
        bytes.extend_from_slice(b"\xFF\xE3 junk in the middle");
        bytes.extend_from_slice(&MONO_24K[144 * 10..]);
        let (samples, rate) = decode_in_pieces(&bytes, 50);
        assert_eq!(rate, Some(24_000), "frames are found after leading junk");
        assert_eq!(
            samples.len(),
            128 * 576,
            "junk costs no frames and invents none"
        );
    }

    #[test]
    fn data_that_is_not_mp3_is_an_error_not_silence() {
        let mut decoder = Mp3StreamDecoder::new();
        let json = br#"{"error":{"message":"nope"}}"#.repeat(4000);
        let result = decoder.push(&json);
        assert!(
            matches!(result, Err(DecodeError::NoFrameSync { .. })),
            "100 KB without a frame must fail, got {result:?}"
        );
    }

    #[test]
    fn truncated_last_frame_is_dropped_not_a_panic() {
        let (samples, _) = decode_in_pieces(&MONO_24K[..144 * 5 + 70], 33);
        assert_eq!(
            samples.len(),
            5 * 576,
            "five whole frames decode; the torn sixth is dropped"
        );
    }
}
