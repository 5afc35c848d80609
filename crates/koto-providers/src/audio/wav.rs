//! Streaming WAV (RIFF) parsing for pipes: the header first, then mono `i16` samples as the bytes
//! arrive, split anywhere. No IO, no resampling.
//!
//! Made for programs that write WAV to stdout without knowing the length in advance (espeak-ng
//! writes `0x7ffff000` as the data size, others write 0 or `0xFFFFFFFF`). Such "streaming" sizes
//! mean "until the end of the stream"; any other data size is honoured and bytes after it (trailing
//! chunks such as `LIST`) are ignored. Supported: integer PCM, 16 bits, 1–8 channels (several
//! channels are averaged to mono), as `WAVE_FORMAT_PCM` or `WAVE_FORMAT_EXTENSIBLE`. Deliberately
//! not supported: other sample widths, float, compressed formats, RF64.

use koto_core::ProviderError;
use koto_core::tts::PcmBlock;

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// A `fmt ` chunk larger than this is not a WAV header anyone writes; refusing it bounds memory.
const MAX_FMT_CHUNK: u32 = 1024;
/// Data sizes at or above this are placeholders of a writer that could not seek back, never a
/// real length: espeak-ng writes `0x7ffff000`, others `0xFFFFFFFF`.
const STREAMING_SIZE_THRESHOLD: u32 = 0x7FFF_0000;

/// The audio format a WAV header declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
}

/// Why a byte stream could not be read as WAV.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a RIFF/WAVE stream (it starts with {start:?})")]
    NotWave { start: String },
    #[error(
        "unsupported WAV format (format tag {format_tag:#06x}, {channels} channels, {bits_per_sample} bits): only 16-bit integer PCM is supported"
    )]
    Unsupported {
        format_tag: u16,
        channels: u16,
        bits_per_sample: u16,
    },
    #[error("malformed WAV header: {0}")]
    Malformed(String),
    /// The stream ended before the `data` chunk began.
    #[error("the WAV stream ended inside its header after {received} bytes")]
    TruncatedHeader { received: u64 },
}

impl From<WavError> for ProviderError {
    fn from(error: WavError) -> Self {
        ProviderError::Protocol(format!("unreadable WAV from the provider: {error}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the 12 bytes `RIFF <size> WAVE`.
    RiffHeader,
    /// Waiting for the 8 bytes `<id> <size>` of the next chunk.
    ChunkHeader,
    /// Inside the `fmt ` chunk, waiting for all of its (padded) body.
    FmtBody { size: u32 },
    /// Skipping a chunk we do not need (`LIST`, `fact`, …), padding included.
    Skip { remaining: u64 },
    /// Inside `data`; `None` = until the end of the stream.
    Data { remaining: Option<u64> },
    /// After a `data` chunk of known size: the rest is ignored.
    Trailer,
    /// A previous push failed; the stream is unusable.
    Failed,
}

/// An incremental WAV reader: `push` bytes as they come, `finish` at end of stream.
#[derive(Debug)]
pub struct WavStreamDecoder {
    state: State,
    /// Header bytes not yet parsed, or the incomplete frame at the end of the last push.
    pending: Vec<u8>,
    received: u64,
    format: Option<WavFormat>,
    error: Option<WavError>,
}

impl Default for WavStreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl WavStreamDecoder {
    pub fn new() -> Self {
        Self {
            state: State::RiffHeader,
            pending: Vec::new(),
            received: 0,
            format: None,
            error: None,
        }
    }

    /// The format, once the `fmt ` chunk has been read.
    pub fn format(&self) -> Option<WavFormat> {
        self.format
    }

    /// Feeds the next bytes. Returns the samples of every frame completed by them (mono, at the
    /// header's rate), or `None` when none was completed. After an error every call repeats it.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<PcmBlock>, WavError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        self.received += bytes.len() as u64;
        match self.push_inner(bytes) {
            Ok(samples) => Ok(match (samples.is_empty(), self.format) {
                (false, Some(format)) => Some(PcmBlock {
                    sample_rate: format.sample_rate,
                    samples,
                }),
                _ => None,
            }),
            Err(error) => {
                self.state = State::Failed;
                self.pending.clear();
                self.error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Ends the stream: an error if it never reached the audio data. A trailing partial frame
    /// (a writer killed mid-sample) is dropped.
    pub fn finish(&mut self) -> Result<(), WavError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        match self.state {
            State::Data { .. } | State::Trailer => {
                if !self.pending.is_empty() {
                    tracing::debug!(
                        bytes = self.pending.len(),
                        "WAV stream ended inside a frame; dropping it"
                    );
                    self.pending.clear();
                }
                Ok(())
            }
            _ => Err(WavError::TruncatedHeader {
                received: self.received,
            }),
        }
    }

    fn push_inner(&mut self, bytes: &[u8]) -> Result<Vec<i16>, WavError> {
        let mut input = bytes;
        let mut samples = Vec::new();
        while !input.is_empty() {
            match self.state {
                State::RiffHeader => {
                    let Some(header) = self.take_header_bytes(&mut input, 12) else {
                        break;
                    };
                    if &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" {
                        return Err(WavError::NotWave {
                            start: String::from_utf8_lossy(&header).into_owned(),
                        });
                    }
                    self.state = State::ChunkHeader;
                }
                State::ChunkHeader => {
                    let Some(header) = self.take_header_bytes(&mut input, 8) else {
                        break;
                    };
                    let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
                    self.state = match &header[0..4] {
                        b"fmt " => {
                            if !(16..=MAX_FMT_CHUNK).contains(&size) {
                                return Err(WavError::Malformed(format!(
                                    "fmt chunk of {size} bytes"
                                )));
                            }
                            State::FmtBody { size }
                        }
                        b"data" => {
                            if self.format.is_none() {
                                return Err(WavError::Malformed(
                                    "data chunk before the fmt chunk".into(),
                                ));
                            }
                            let remaining = (size != 0 && size < STREAMING_SIZE_THRESHOLD)
                                .then_some(u64::from(size));
                            State::Data { remaining }
                        }
                        // RIFF pads odd-sized chunks to an even length.
                        _ => State::Skip {
                            remaining: u64::from(size) + u64::from(size & 1),
                        },
                    };
                }
                State::FmtBody { size } => {
                    let padded = (size + (size & 1)) as usize;
                    let Some(body) = self.take_header_bytes(&mut input, padded) else {
                        break;
                    };
                    self.format = Some(parse_fmt(&body[..size as usize])?);
                    self.state = State::ChunkHeader;
                }
                State::Skip { remaining } => {
                    let skipped = remaining.min(input.len() as u64);
                    input = &input[skipped as usize..];
                    let remaining = remaining - skipped;
                    self.state = if remaining == 0 {
                        State::ChunkHeader
                    } else {
                        State::Skip { remaining }
                    };
                }
                State::Data { remaining } => {
                    let take =
                        remaining.map_or(input.len(), |r| r.min(input.len() as u64) as usize);
                    self.decode_frames(&input[..take], &mut samples);
                    input = &input[take..];
                    if let Some(r) = remaining {
                        let left = r - take as u64;
                        self.state = if left == 0 {
                            State::Trailer
                        } else {
                            State::Data {
                                remaining: Some(left),
                            }
                        };
                    }
                }
                State::Trailer => break,
                State::Failed => {
                    return Err(WavError::Malformed("the stream already failed".into()));
                }
            }
        }
        Ok(samples)
    }

    /// Accumulates header bytes until `needed` are there; then returns them and empties `pending`.
    fn take_header_bytes(&mut self, input: &mut &[u8], needed: usize) -> Option<Vec<u8>> {
        let missing = needed.saturating_sub(self.pending.len());
        let take = missing.min(input.len());
        self.pending.extend_from_slice(&input[..take]);
        *input = &input[take..];
        (self.pending.len() == needed).then(|| std::mem::take(&mut self.pending))
    }

    /// Decodes whole frames (16-bit LE, interleaved), averaging channels; keeps a partial frame.
    fn decode_frames(&mut self, bytes: &[u8], samples: &mut Vec<i16>) {
        let channels = self.format.map_or(1, |f| usize::from(f.channels.max(1)));
        let frame_bytes = channels * 2;
        let mut data = bytes;
        if !self.pending.is_empty() {
            let take = (frame_bytes - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < frame_bytes {
                return;
            }
            let frame = std::mem::take(&mut self.pending);
            samples.push(downmix(&frame));
        }
        let whole = data.len() / frame_bytes * frame_bytes;
        samples.reserve(whole / frame_bytes);
        samples.extend(data[..whole].chunks_exact(frame_bytes).map(downmix));
        self.pending.extend_from_slice(&data[whole..]);
    }
}

fn downmix(frame: &[u8]) -> i16 {
    if frame.len() == 2 {
        return i16::from_le_bytes([frame[0], frame[1]]);
    }
    let channels = (frame.len() / 2) as i32;
    let sum: i32 = frame
        .chunks_exact(2)
        .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
        .sum();
    // The mean of i16 values is an i16.
    (sum / channels.max(1)) as i16
}

fn parse_fmt(body: &[u8]) -> Result<WavFormat, WavError> {
    let u16_at = |at: usize| u16::from_le_bytes([body[at], body[at + 1]]);
    let format_tag = u16_at(0);
    let channels = u16_at(2);
    let sample_rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    let bits_per_sample = u16_at(14);
    let unsupported = WavError::Unsupported {
        format_tag,
        channels,
        bits_per_sample,
    };
    let is_pcm = match format_tag {
        WAVE_FORMAT_PCM => true,
        // WAVEFORMATEXTENSIBLE: cbSize(2) validBits(2) channelMask(4) then the SubFormat GUID,
        // whose first two bytes are the plain format tag.
        WAVE_FORMAT_EXTENSIBLE => body.len() >= 26 && u16_at(24) == WAVE_FORMAT_PCM,
        _ => false,
    };
    if !is_pcm || bits_per_sample != 16 || !(1..=8).contains(&channels) {
        return Err(unsupported);
    }
    if sample_rate == 0 {
        return Err(WavError::Malformed("sample rate 0".into()));
    }
    Ok(WavFormat {
        sample_rate,
        channels,
        bits_per_sample,
    })
}

/// A complete 16-bit mono PCM WAV file of `samples` (what an ASR server is sent).
pub fn encode_mono_s16(samples: &[i16], sample_rate: u32) -> Vec<u8> {
    // A WAV's sizes are u32: longer audio is cut there (4 GB; uploads are bounded far below).
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX - 36) & !1;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&WAVE_FORMAT_PCM.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for sample in &samples[..data_len as usize / 2] {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A header as espeak-ng writes it: bogus sizes, because stdout cannot seek back.
    fn header(sample_rate: u32, channels: u16, data_size: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&data_size.wrapping_add(36).to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&WAVE_FORMAT_PCM.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes());
        h.extend_from_slice(&sample_rate.to_le_bytes());
        h.extend_from_slice(&(sample_rate * u32::from(channels) * 2).to_le_bytes());
        h.extend_from_slice(&(channels * 2).to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data_size.to_le_bytes());
        h
    }

    fn le_bytes(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// Feeds `bytes` in pieces of the given sizes (cycled) and collects every sample.
    fn decode_in_pieces(bytes: &[u8], piece_sizes: &[usize]) -> (Vec<i16>, WavStreamDecoder) {
        let mut decoder = WavStreamDecoder::new();
        let mut samples = Vec::new();
        let mut at = 0;
        for size in piece_sizes.iter().cycle() {
            if at >= bytes.len() {
                break;
            }
            let end = (at + size).min(bytes.len());
            if let Some(block) = decoder.push(&bytes[at..end]).unwrap() {
                assert_eq!(block.sample_rate, 22_050, "blocks carry the header's rate");
                samples.extend(block.samples);
            }
            at = end;
        }
        decoder.finish().unwrap();
        (samples, decoder)
    }

    #[test]
    fn espeak_style_stream_split_anywhere_decodes_every_sample() {
        let samples: Vec<i16> = (0..1000)
            .map(|i| ((i * 37) % 65_536 - 32_768) as i16)
            .collect();
        let mut bytes = header(22_050, 1, 0x7fff_f000);
        bytes.extend(le_bytes(&samples));
        // Odd piece sizes split the header and individual samples at every possible offset.
        for pieces in [&[1usize][..], &[3], &[7, 1, 2], &[43, 1], &[45], &[4096]] {
            let (decoded, decoder) = decode_in_pieces(&bytes, pieces);
            assert_eq!(
                decoded, samples,
                "pieces {pieces:?}: a streaming size means every byte after the header is audio"
            );
            assert_eq!(
                decoder.format(),
                Some(WavFormat {
                    sample_rate: 22_050,
                    channels: 1,
                    bits_per_sample: 16
                })
            );
        }
    }

    #[test]
    fn zero_and_max_data_sizes_also_mean_until_end_of_stream() {
        let samples = vec![1i16, -2, 3, -4];
        for size in [0, u32::MAX] {
            let mut bytes = header(22_050, 1, size);
            bytes.extend(le_bytes(&samples));
            let (decoded, _) = decode_in_pieces(&bytes, &[5]);
            assert_eq!(decoded, samples, "data size {size:#x} is a placeholder");
        }
    }

    #[test]
    fn a_real_data_size_is_honoured_and_trailing_chunks_ignored() {
        let samples = vec![100i16, 200, 300];
        let mut bytes = header(22_050, 1, 6);
        bytes.extend(le_bytes(&samples));
        bytes.extend_from_slice(b"LIST\x04\x00\x00\x00abcd");
        let (decoded, _) = decode_in_pieces(&bytes, &[2]);
        assert_eq!(
            decoded, samples,
            "bytes after a data chunk of known size are not audio"
        );
    }

    #[test]
    fn stereo_is_downmixed_and_unknown_chunks_skipped() {
        let mut bytes = header(22_050, 2, 0);
        // Insert an odd-sized LIST chunk (with its pad byte) between fmt and data.
        let data_at = bytes.len() - 8;
        let list = b"LIST\x03\x00\x00\x00xyz\x00";
        bytes.splice(data_at..data_at, list.iter().copied());
        bytes.extend(le_bytes(&[1000, 3000, -100, -300, i16::MAX, i16::MAX]));
        let (decoded, _) = decode_in_pieces(&bytes, &[3]);
        assert_eq!(
            decoded,
            vec![2000, -200, i16::MAX],
            "each stereo frame becomes the mean of its channels"
        );
    }

    #[test]
    fn non_wav_and_unsupported_formats_are_errors() {
        let mut decoder = WavStreamDecoder::new();
        assert!(
            matches!(
                decoder.push(b"{\"error\":\"bad\"}"),
                Err(WavError::NotWave { .. })
            ),
            "JSON is not WAV"
        );
        assert!(
            decoder.push(&header(22_050, 1, 0)).is_err(),
            "a failed decoder stays failed"
        );

        let mut eight_bit = header(22_050, 1, 0);
        eight_bit[34] = 8;
        let mut decoder = WavStreamDecoder::new();
        assert!(
            matches!(
                decoder.push(&eight_bit),
                Err(WavError::Unsupported {
                    bits_per_sample: 8,
                    ..
                })
            ),
            "only 16-bit PCM is decoded"
        );
    }

    #[test]
    fn a_stream_ending_inside_the_header_is_truncated() {
        let mut decoder = WavStreamDecoder::new();
        assert_eq!(decoder.push(&header(22_050, 1, 0)[..30]), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(WavError::TruncatedHeader { received: 30 }),
            "no data chunk was reached"
        );
        assert_eq!(
            WavStreamDecoder::new().finish(),
            Err(WavError::TruncatedHeader { received: 0 }),
            "an empty stream is not a WAV stream"
        );
    }

    #[test]
    fn encoded_mono_wav_decodes_to_the_same_samples() {
        let samples: Vec<i16> = (0..999).map(|i| (i * 61 - 30_000) as i16).collect();
        let bytes = encode_mono_s16(&samples, 16_000);
        let mut decoder = WavStreamDecoder::new();
        let block = decoder.push(&bytes).unwrap().unwrap();
        decoder.finish().unwrap();
        assert_eq!(block.sample_rate, 16_000, "the rate written");
        assert_eq!(block.samples, samples, "every sample round-trips");
    }
}
