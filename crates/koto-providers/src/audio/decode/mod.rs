//! Uploaded audio files → 16 kHz mono PCM for an ASR: WAV, MP3, OGG/Opus and WebM/Opus (what
//! browsers' `MediaRecorder` sends), sniffed from their first bytes, never from a file name.
//! No IO: bytes in, samples out (callers run it on a blocking thread).
//!
//! Opus is decoded at 48 kHz by the pure-Rust `opus-decoder` (no C to cross-build), with the
//! stream's pre-skip removed and the end trimmed to the last Ogg granule; Ogg pages come from the
//! `ogg` crate (CRC-checked), WebM from the small EBML reader in [`webm`]. Every format ends in
//! the project's resampler ([`super::resample::StreamResampler`]). Bounds: the byte limit is
//! checked first and the duration limit while decoding, so a one-hour file costs at most the limit
//! in work. Deliberately not supported: Vorbis, AAC/MP4, FLAC, multichannel Opus (> 2 channels).

mod ogg;
mod opus;
mod webm;

use koto_core::asr::ASR_SAMPLE_RATE;

use super::mp3::Mp3StreamDecoder;
use super::resample::StreamResampler;
use super::wav::{WavError, WavStreamDecoder};

/// Bounds of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest file accepted (`ASR_MAX_UPLOAD_BYTES`).
    pub max_bytes: usize,
    /// Longest audio accepted, in milliseconds (`ASR_MAX_SECONDS` × 1000).
    pub max_duration_ms: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_duration_ms: 60_000,
        }
    }
}

/// The container a file was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Wav,
    Mp3,
    OggOpus,
    WebmOpus,
}

impl AudioFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::OggOpus => "ogg/opus",
            AudioFormat::WebmOpus => "webm/opus",
        }
    }
}

/// A decoded upload.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Mono s16 at [`ASR_SAMPLE_RATE`].
    pub samples: Vec<i16>,
    pub format: AudioFormat,
    /// The rate the file was coded at (48 000 for Opus).
    pub source_rate: u32,
}

impl DecodedAudio {
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(ASR_SAMPLE_RATE)
    }
}

/// Why an upload could not become PCM. Callers map `TooLarge`/`TooLong` to 413 and the rest to
/// "unsupported audio".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioDecodeError {
    #[error("the audio file is empty")]
    Empty,
    #[error("the audio file has {bytes} bytes; the limit is {limit} (ASR_MAX_UPLOAD_BYTES)")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the audio is longer than the limit of {limit_ms} ms (ASR_MAX_SECONDS)")]
    TooLong { limit_ms: u64 },
    /// Not a container we read, or a codec inside it we do not decode.
    #[error("unsupported audio: {0}")]
    Unsupported(String),
    /// The file ends before what its own headers promise.
    #[error("truncated {format} file: {detail}")]
    Truncated {
        format: &'static str,
        detail: String,
    },
    /// Headers or packets that contradict the format.
    #[error("malformed {format} file: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    /// A well-formed file with no audio samples in it.
    #[error("the {format} file contains no audio")]
    NoAudio { format: &'static str },
}

impl AudioDecodeError {
    /// Over a size or duration bound (HTTP 413), as opposed to unreadable.
    pub fn is_too_big(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::TooLong { .. })
    }
}

/// Recognises the container by its magic bytes.
pub fn sniff(bytes: &[u8]) -> Option<AudioFormat> {
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        Some(AudioFormat::Wav)
    } else if bytes.starts_with(b"OggS") {
        Some(AudioFormat::OggOpus)
    } else if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(AudioFormat::WebmOpus)
    } else if bytes.starts_with(b"ID3")
        || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0)
    {
        Some(AudioFormat::Mp3)
    } else {
        None
    }
}

/// Decodes a whole uploaded file to 16 kHz mono within `limits`.
pub fn decode_upload(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<DecodedAudio, AudioDecodeError> {
    if bytes.is_empty() {
        return Err(AudioDecodeError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(AudioDecodeError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let Some(format) = sniff(bytes) else {
        let start: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(AudioDecodeError::Unsupported(format!(
            "not WAV, MP3, OGG/Opus or WebM/Opus (the file starts with {start})"
        )));
    };
    // The codecs are third-party code fed untrusted bytes: a panic in one becomes a clear error,
    // not a crashed request task.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_format(format, bytes, limits)
    }))
    .unwrap_or_else(|_panic| {
        Err(AudioDecodeError::Malformed {
            format: format.as_str(),
            detail: "the decoder gave up on this data".into(),
        })
    })?;
    if decoded.pcm.samples.is_empty() {
        return Err(AudioDecodeError::NoAudio {
            format: format.as_str(),
        });
    }
    let samples = resample_to_asr(decoded.source_rate, &decoded.pcm.samples, format)?;
    Ok(DecodedAudio {
        samples,
        format,
        source_rate: decoded.source_rate,
    })
}

/// Mono samples at one rate, with the duration bound applied while they grow.
pub(crate) struct MonoPcm {
    pub(crate) samples: Vec<i16>,
    rate: u32,
    max_samples: u64,
    limit_ms: u64,
}

impl MonoPcm {
    pub(crate) fn new(rate: u32, limits: &DecodeLimits) -> Self {
        Self {
            samples: Vec::new(),
            rate,
            max_samples: limits.max_duration_ms * u64::from(rate) / 1000,
            limit_ms: limits.max_duration_ms,
        }
    }

    /// Appends `frames` of `channels` interleaved samples, averaged to mono.
    pub(crate) fn push_interleaved(
        &mut self,
        interleaved: &[i16],
        channels: usize,
    ) -> Result<(), AudioDecodeError> {
        let channels = channels.max(1);
        self.samples
            .extend(interleaved.chunks_exact(channels).map(|frame| {
                let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
                (sum / channels as i32) as i16
            }));
        if self.samples.len() as u64 > self.max_samples {
            return Err(AudioDecodeError::TooLong {
                limit_ms: self.limit_ms,
            });
        }
        Ok(())
    }
}

struct Decoded {
    pcm: MonoPcm,
    source_rate: u32,
}

fn decode_format(
    format: AudioFormat,
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<Decoded, AudioDecodeError> {
    match format {
        AudioFormat::Wav => decode_wav(bytes, limits),
        AudioFormat::Mp3 => decode_mp3(bytes, limits),
        AudioFormat::OggOpus => ogg::decode(bytes, limits).map(|pcm| Decoded {
            pcm,
            source_rate: opus::RATE,
        }),
        AudioFormat::WebmOpus => webm::decode(bytes, limits).map(|pcm| Decoded {
            pcm,
            source_rate: opus::RATE,
        }),
    }
}

fn decode_wav(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, AudioDecodeError> {
    let malformed = |detail: String| AudioDecodeError::Malformed {
        format: "wav",
        detail,
    };
    if let Some((declared, present)) = wav_data_sizes(bytes)
        && declared > present
    {
        return Err(AudioDecodeError::Truncated {
            format: "wav",
            detail: format!("the data chunk declares {declared} bytes but {present} follow"),
        });
    }
    let mut decoder = WavStreamDecoder::new();
    let mut pcm: Option<MonoPcm> = None;
    let wav_error = |error: WavError| match error {
        WavError::Unsupported { .. } => AudioDecodeError::Unsupported(error.to_string()),
        WavError::TruncatedHeader { .. } => AudioDecodeError::Truncated {
            format: "wav",
            detail: error.to_string(),
        },
        other => malformed(other.to_string()),
    };
    // Pieces, so the duration bound stops a huge file early.
    for piece in bytes.chunks(64 * 1024) {
        if let Some(block) = decoder.push(piece).map_err(wav_error)? {
            let pcm = pcm.get_or_insert_with(|| MonoPcm::new(block.sample_rate, limits));
            pcm.push_interleaved(&block.samples, 1)?;
        }
    }
    decoder.finish().map_err(wav_error)?;
    let rate = decoder.format().map_or(0, |f| f.sample_rate);
    if rate == 0 {
        return Err(malformed("a sample rate of 0".into()));
    }
    Ok(Decoded {
        pcm: pcm.unwrap_or_else(|| MonoPcm::new(rate, limits)),
        source_rate: rate,
    })
}

/// The `data` chunk's declared size and the bytes actually after its header, when the file
/// states a real size (not a streaming placeholder).
fn wav_data_sizes(bytes: &[u8]) -> Option<(u64, u64)> {
    let mut at = 12usize;
    while at.checked_add(8)? <= bytes.len() {
        let size = u32::from_le_bytes(bytes.get(at + 4..at + 8)?.try_into().ok()?);
        if bytes.get(at..at + 4)? == b"data" {
            let present = (bytes.len() - at - 8) as u64;
            let placeholder = size == 0 || size >= 0x7FFF_0000;
            return (!placeholder).then_some((u64::from(size), present));
        }
        at = at.checked_add(8 + size as usize + (size as usize & 1))?;
    }
    None
}

fn decode_mp3(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, AudioDecodeError> {
    let mut decoder = Mp3StreamDecoder::new();
    let mut pcm: Option<MonoPcm> = None;
    let mut absorb = |blocks: Vec<koto_core::tts::PcmBlock>| -> Result<(), AudioDecodeError> {
        for block in blocks {
            let pcm = pcm.get_or_insert_with(|| MonoPcm::new(block.sample_rate, limits));
            if pcm.rate != block.sample_rate {
                return Err(AudioDecodeError::Unsupported(format!(
                    "an MP3 whose rate changes from {} to {} Hz",
                    pcm.rate, block.sample_rate
                )));
            }
            pcm.push_interleaved(&block.samples, 1)?;
        }
        Ok(())
    };
    let mp3_error = |error: super::mp3::DecodeError| AudioDecodeError::Malformed {
        format: "mp3",
        detail: error.to_string(),
    };
    for piece in bytes.chunks(64 * 1024) {
        absorb(decoder.push(piece).map_err(mp3_error)?)?;
    }
    absorb(decoder.finish().map_err(mp3_error)?)?;
    let rate = decoder.sample_rate().unwrap_or(0);
    match pcm {
        Some(pcm) if rate > 0 => Ok(Decoded {
            pcm,
            source_rate: rate,
        }),
        _ => Err(AudioDecodeError::NoAudio { format: "mp3" }),
    }
}

fn resample_to_asr(
    rate: u32,
    samples: &[i16],
    format: AudioFormat,
) -> Result<Vec<i16>, AudioDecodeError> {
    if rate == ASR_SAMPLE_RATE {
        return Ok(samples.to_vec());
    }
    let mut resampler = StreamResampler::new(rate, ASR_SAMPLE_RATE).map_err(|error| {
        AudioDecodeError::Malformed {
            format: format.as_str(),
            detail: error.to_string(),
        }
    })?;
    let mut out = resampler.push(samples);
    out.extend(resampler.finish());
    Ok(out)
}
