//! One upload on `/ws/input`, with no IO: chunk ids, metadata and binary frames in order, the
//! text joined from them, the bounds of [`LegacyLimits`], and the idle and total timers.

use koto_protocol::{ErrorCode, WireError};
use serde_json::Value;
use tokio::time::Instant;

use super::{LegacyLimits, too_large};

const FILE_CHUNK_RECEIVED: &str = "File chunk received";
const INVALID_JSON: &str = "Invalid JSON format";
const NO_METADATA: &str = "Error: No metadata received before binary data";

/// What the input socket does with one client frame.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Accepted, nothing to answer (the original did not answer metadata).
    Silent,
    /// Answer with this plain text.
    Reply(String),
    /// `upload_complete`.
    Complete,
    /// A bound was exceeded: answer `upload_processed` with this error and close.
    Abort(WireError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum UploadKind {
    Text,
    Audio,
    Image,
    Other(String),
}

impl UploadKind {
    fn parse(raw: &str) -> Self {
        match raw.trim().to_ascii_lowercase().as_str() {
            "text" => UploadKind::Text,
            "audio" => UploadKind::Audio,
            "image" => UploadKind::Image,
            other => UploadKind::Other(other.to_owned()),
        }
    }

    fn name(&self) -> &str {
        match self {
            UploadKind::Text => "text",
            UploadKind::Audio => "audio",
            UploadKind::Image => "image",
            UploadKind::Other(name) => name,
        }
    }
}

#[derive(Debug, PartialEq)]
pub(super) struct UploadedText {
    pub(super) content: String,
    pub(super) lang: Option<String>,
}

/// A recording, its binary chunks joined in order; decoding and ASR come after (`routes::audio`).
#[derive(Debug, PartialEq)]
pub(super) struct UploadedAudio {
    pub(super) bytes: Vec<u8>,
    pub(super) lang: Option<String>,
}

/// What a completed upload carries.
#[derive(Debug, PartialEq)]
pub(super) enum Uploaded {
    Text(UploadedText),
    Audio(UploadedAudio),
}

pub(super) struct Upload {
    max_chunks: u64,
    max_bytes: usize,
    max_text_bytes: usize,
    /// Set by the first accepted metadata; one upload carries one type.
    kind: Option<UploadKind>,
    /// The `chunk_id` the next metadata must carry (= binary chunks received).
    expected_chunk: u64,
    /// Metadata for `expected_chunk` was accepted; its binary frame may come.
    announced: bool,
    inline_text: Option<String>,
    lang: Option<String>,
    text_bytes: Vec<u8>,
    audio_bytes: Vec<u8>,
    received_bytes: usize,
}

impl Upload {
    pub(super) fn new(limits: &LegacyLimits) -> Self {
        Upload {
            max_chunks: limits.max_chunks,
            max_bytes: limits.max_upload_bytes,
            max_text_bytes: limits.max_text_bytes,
            kind: None,
            expected_chunk: 0,
            announced: false,
            inline_text: None,
            lang: None,
            text_bytes: Vec::new(),
            audio_bytes: Vec::new(),
            received_bytes: 0,
        }
    }

    pub(super) fn on_text(&mut self, raw: &str) -> Step {
        let Ok(value) = serde_json::from_str::<Value>(raw) else {
            return Step::Reply(INVALID_JSON.to_owned());
        };
        let Some(object) = value.as_object() else {
            return Step::Reply("Error: expected a JSON object".to_owned());
        };
        match object.get("action").and_then(Value::as_str) {
            Some("upload_complete") => Step::Complete,
            Some("data_chunk") => self.on_metadata(object),
            Some(other) => Step::Reply(format!(
                "Error: unknown action {other:?}; expected data_chunk or upload_complete"
            )),
            None => Step::Reply(
                "Error: missing action; expected data_chunk or upload_complete".to_owned(),
            ),
        }
    }

    fn on_metadata(&mut self, object: &serde_json::Map<String, Value>) -> Step {
        let Some(chunk_id) = object.get("chunk_id").and_then(Value::as_u64) else {
            return Step::Reply("Error: chunk_id must be an integer >= 0".to_owned());
        };
        let Some(kind) = object
            .get("type")
            .and_then(Value::as_str)
            .map(UploadKind::parse)
        else {
            return Step::Reply("Error: type must be \"text\" or \"audio\"".to_owned());
        };
        if chunk_id != self.expected_chunk {
            self.announced = false;
            return Step::Reply(format!(
                "Chunk ID mismatch: expected {}, got {chunk_id}",
                self.expected_chunk
            ));
        }
        if let Some(earlier) = &self.kind
            && *earlier != kind
        {
            return Step::Reply(format!(
                "Error: this upload is {}; one upload carries one type",
                earlier.name()
            ));
        }
        let inline = ["content", "text", "prompt"]
            .iter()
            .filter_map(|key| object.get(*key).and_then(Value::as_str))
            .map(str::trim)
            .find(|text| !text.is_empty());
        if let Some(text) = inline {
            if text.len() > self.max_text_bytes {
                return Step::Abort(too_large(format!(
                    "the text is larger than {} bytes",
                    self.max_text_bytes
                )));
            }
            self.inline_text = Some(text.to_owned());
        }
        if let Some(lang) = object
            .get("meta")
            .and_then(|meta| meta.get("lang"))
            .and_then(Value::as_str)
        {
            self.lang = Some(lang.to_owned());
        }
        self.kind = Some(kind);
        self.announced = true;
        Step::Silent
    }

    pub(super) fn on_binary(&mut self, bytes: &[u8]) -> Step {
        if !self.announced {
            return Step::Reply(NO_METADATA.to_owned());
        }
        if self.expected_chunk >= self.max_chunks {
            return Step::Abort(too_large(format!(
                "an upload has at most {} chunks",
                self.max_chunks
            )));
        }
        self.received_bytes = self.received_bytes.saturating_add(bytes.len());
        if self.received_bytes > self.max_bytes {
            return Step::Abort(too_large(format!(
                "an upload has at most {} bytes",
                self.max_bytes
            )));
        }
        if self.kind == Some(UploadKind::Text) {
            if self.text_bytes.len() + bytes.len() > self.max_text_bytes {
                return Step::Abort(too_large(format!(
                    "the text is larger than {} bytes",
                    self.max_text_bytes
                )));
            }
            self.text_bytes.extend_from_slice(bytes);
        }
        if self.kind == Some(UploadKind::Audio) {
            // Bounded by `max_bytes` above; the decoder applies the ASR's own limits later.
            self.audio_bytes.extend_from_slice(bytes);
        }
        self.expected_chunk += 1;
        self.announced = false;
        Step::Reply(FILE_CHUNK_RECEIVED.to_owned())
    }

    pub(super) fn finish(self) -> Result<Uploaded, WireError> {
        match self.kind {
            None => Err(WireError::new(
                ErrorCode::InvalidRequest,
                "nothing was uploaded: send a data_chunk before upload_complete",
            )),
            Some(UploadKind::Text) => {
                let content = if self.text_bytes.is_empty() {
                    self.inline_text.unwrap_or_default()
                } else {
                    String::from_utf8(self.text_bytes)
                        .map_err(|_| {
                            WireError::new(ErrorCode::InvalidRequest, "the text is not UTF-8")
                        })?
                        .trim()
                        .to_owned()
                };
                if content.is_empty() {
                    return Err(WireError::new(ErrorCode::EmptyContent, "the text is empty"));
                }
                Ok(Uploaded::Text(UploadedText {
                    content,
                    lang: self.lang,
                }))
            }
            Some(UploadKind::Audio) if self.audio_bytes.is_empty() => Err(WireError::new(
                ErrorCode::UnsupportedAudio,
                "unsupported audio: the upload has no audio bytes (send the recording in binary frames)",
            )),
            Some(UploadKind::Audio) => Ok(Uploaded::Audio(UploadedAudio {
                bytes: self.audio_bytes,
                lang: self.lang,
            })),
            Some(UploadKind::Image) => Err(WireError::new(
                ErrorCode::UnsupportedMediaType,
                "image input is not supported; send text instead",
            )),
            Some(UploadKind::Other(name)) => Err(WireError::new(
                ErrorCode::InvalidType,
                format!("unsupported upload type {name:?}; send text"),
            )),
        }
    }
}

/// The upload's idle and total bounds; unarmed until the first data frame.
#[derive(Default)]
pub(super) struct UploadTimer {
    idle_until: Option<Instant>,
    deadline: Option<Instant>,
}

impl UploadTimer {
    /// A data frame arrived: the upload has begun (or goes on).
    pub(super) fn frame(&mut self, limits: &LegacyLimits) {
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + limits.upload_deadline);
        self.idle_until = Some((now + limits.upload_idle).min(deadline));
    }

    /// Completes when a bound has passed; never before the first frame.
    pub(super) async fn expired(&self) {
        match self.idle_until {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn limits() -> LegacyLimits {
        LegacyLimits {
            max_chunks: 3,
            max_upload_bytes: 10,
            max_text_bytes: 8,
            ..LegacyLimits::default()
        }
    }

    fn text_of(uploaded: Uploaded) -> String {
        match uploaded {
            Uploaded::Text(text) => text.content,
            Uploaded::Audio(audio) => {
                panic!("expected text, got {} audio bytes", audio.bytes.len())
            }
        }
    }

    fn reply(text: &str) -> Step {
        Step::Reply(text.to_owned())
    }

    #[test]
    fn inline_text_and_binary_text_are_both_inputs() {
        let mut inline = Upload::new(&LegacyLimits::default());
        let meta = r#"{"type":"text","chunk_id":0,"action":"data_chunk","content":" hi ","meta":{"lang":"en"}}"#;
        assert_eq!(
            inline.on_text(meta),
            Step::Silent,
            "metadata is not answered"
        );
        assert_eq!(
            inline.on_text(r#"{"action":"upload_complete"}"#),
            Step::Complete
        );
        assert_eq!(
            inline.finish(),
            Ok(Uploaded::Text(UploadedText {
                content: "hi".into(),
                lang: Some("en".into())
            })),
            "inline text, trimmed, with its language"
        );

        let mut binary = Upload::new(&LegacyLimits::default());
        binary.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk"}"#);
        assert_eq!(
            binary.on_binary("今晚".as_bytes()),
            reply(FILE_CHUNK_RECEIVED)
        );
        binary.on_text(r#"{"type":"text","chunk_id":1,"action":"data_chunk"}"#);
        assert_eq!(
            binary.on_binary("玩什么".as_bytes()),
            reply(FILE_CHUNK_RECEIVED)
        );
        assert_eq!(
            binary.finish().map(text_of),
            Ok("今晚玩什么".to_owned()),
            "chunks are joined in order"
        );
    }

    #[test]
    fn chunk_gaps_and_orphan_binaries_are_answered_like_the_original() {
        let mut upload = Upload::new(&LegacyLimits::default());
        assert_eq!(
            upload.on_text(r#"{"type":"text","chunk_id":1,"action":"data_chunk"}"#),
            reply("Chunk ID mismatch: expected 0, got 1")
        );
        assert_eq!(
            upload.on_binary(b"x"),
            reply(NO_METADATA),
            "the mismatched metadata announced nothing"
        );
        upload.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk"}"#);
        assert_eq!(upload.on_binary(b"ok"), reply(FILE_CHUNK_RECEIVED));
        assert_eq!(
            upload.on_binary(b"again"),
            reply(NO_METADATA),
            "every binary needs its own metadata"
        );
        assert_eq!(upload.finish().map(text_of), Ok("ok".to_owned()));
    }

    #[test]
    fn malformed_frames_get_answers_not_panics() {
        let mut upload = Upload::new(&LegacyLimits::default());
        assert_eq!(upload.on_text("{not json"), reply(INVALID_JSON));
        for bad in [
            "[1,2]",
            "42",
            r#"{"type":"text"}"#,
            r#"{"action":"dance"}"#,
            r#"{"action":"data_chunk","type":"text","chunk_id":-1}"#,
            r#"{"action":"data_chunk","type":"text","chunk_id":"0"}"#,
            r#"{"action":"data_chunk","chunk_id":0}"#,
        ] {
            let step = upload.on_text(bad);
            assert!(
                matches!(&step, Step::Reply(text) if text.starts_with("Error: ")),
                "{bad} gets an error reply, got {step:?}"
            );
        }
        assert_eq!(
            upload.finish().unwrap_err().code,
            ErrorCode::InvalidRequest,
            "nothing valid was uploaded"
        );
    }

    #[test]
    fn audio_chunks_are_joined_in_order_for_the_asr() {
        let mut upload = Upload::new(&LegacyLimits::default());
        upload
            .on_text(r#"{"type":"audio","chunk_id":0,"action":"data_chunk","meta":{"lang":"ja"}}"#);
        assert_eq!(upload.on_binary(&[0x1a, 0x45]), reply(FILE_CHUNK_RECEIVED));
        assert!(
            matches!(
                upload.on_text(r#"{"type":"text","chunk_id":1,"action":"data_chunk"}"#),
                Step::Reply(text) if text.contains("one type")
            ),
            "types do not mix"
        );
        upload.on_text(r#"{"type":"audio","chunk_id":1,"action":"data_chunk"}"#);
        assert_eq!(upload.on_binary(&[0xdf, 0xa3]), reply(FILE_CHUNK_RECEIVED));
        assert_eq!(
            upload.finish().unwrap(),
            Uploaded::Audio(UploadedAudio {
                bytes: vec![0x1a, 0x45, 0xdf, 0xa3],
                lang: Some("ja".into()),
            }),
            "the recording in chunk order, with its language"
        );
        let mut no_bytes = Upload::new(&LegacyLimits::default());
        no_bytes.on_text(r#"{"type":"audio","chunk_id":0,"action":"data_chunk"}"#);
        assert_eq!(
            no_bytes.finish().unwrap_err().code,
            ErrorCode::UnsupportedAudio,
            "metadata without its binary frame is no audio"
        );
    }

    #[test]
    fn bounds_abort_the_upload() {
        let mut chunks = Upload::new(&limits());
        for id in 0..3 {
            chunks.on_text(&format!(
                r#"{{"type":"audio","chunk_id":{id},"action":"data_chunk"}}"#
            ));
            assert_eq!(chunks.on_binary(b"a"), reply(FILE_CHUNK_RECEIVED));
        }
        chunks.on_text(r#"{"type":"audio","chunk_id":3,"action":"data_chunk"}"#);
        assert!(
            matches!(chunks.on_binary(b"a"), Step::Abort(e) if e.code == ErrorCode::PayloadTooLarge),
            "a fourth chunk is over max_chunks"
        );

        let mut bytes = Upload::new(&limits());
        bytes.on_text(r#"{"type":"audio","chunk_id":0,"action":"data_chunk"}"#);
        assert!(
            matches!(bytes.on_binary(&[0; 11]), Step::Abort(_)),
            "over max_upload_bytes"
        );

        let mut text = Upload::new(&limits());
        text.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk"}"#);
        assert!(
            matches!(text.on_binary(&[b'a'; 9]), Step::Abort(_)),
            "over max_text_bytes"
        );
        let mut inline = Upload::new(&limits());
        assert!(
            matches!(
                inline.on_text(
                    r#"{"type":"text","chunk_id":0,"action":"data_chunk","content":"123456789"}"#
                ),
                Step::Abort(_)
            ),
            "inline text has the same bound"
        );
    }

    #[test]
    fn empty_or_broken_text_is_refused() {
        let mut blank = Upload::new(&LegacyLimits::default());
        blank.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk","content":"   "}"#);
        assert_eq!(blank.finish().unwrap_err().code, ErrorCode::EmptyContent);
        let mut broken = Upload::new(&LegacyLimits::default());
        broken.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk"}"#);
        broken.on_binary(&[0xff, 0xfe]);
        assert_eq!(broken.finish().unwrap_err().code, ErrorCode::InvalidRequest);
    }
}
