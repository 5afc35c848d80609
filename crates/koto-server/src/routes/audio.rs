//! Voice input from a file: `POST /chat/audio/stream` (audio in → an `asr-final` SSE event, then
//! the turn's usual `/chat/stream` events) and `POST /chat/audio` (the same, answered as one JSON
//! body once the turn has ended). The original front end's recordings (`/ws/input`) use
//! [`hear`] too.
//!
//! A request is either `multipart/form-data` (the audio in a `file` or `audio` part; text fields
//! `sessionId`, `turn`, `lang`) or the raw file as the body with those as query parameters.
//! The path: bounded body → [`decode_upload`] on a blocking thread (WAV, MP3, OGG/Opus,
//! WebM/Opus → 16 kHz mono) → the ASR → a turn of kind `ASR_FINAL` with
//! `meta {source:"mic", confidence, durationMs}`. When decoding or the ASR fails, or nothing was
//! heard, no turn is submitted and nothing is stored: the caller gets the error and may send the
//! audio again. The ASR lives here, not in the engine, which stays text-in.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;
use koto_core::asr::{AsrEvent, AsrProvider, AsrRequest, Transcript};
use koto_core::turn::{InputKind, InputMeta};
use koto_core::{ProviderError, SessionId};
use koto_engine::{Submission, TurnEvent, TurnHandle, TurnRequest};
use koto_protocol::chat::{AsrFinal, ChatAudioResponse, TurnStats, event, parse_turn};
use koto_protocol::{ErrorCode, WireError};
use koto_providers::audio::decode::{AudioDecodeError, DecodeLimits, decode_upload};
use tokio::time::Instant;

use crate::AppState;
use crate::error::AppError;
use crate::live_asr::LiveAsr;
use crate::routes::chat::{sse_frames, to_sse, turn_events};
use crate::routes::timed_out;

/// Room for a multipart form's boundaries and text fields on top of the audio's own limit.
const FORM_OVERHEAD_BYTES: usize = 64 * 1024;

/// The largest body the upload routes read (a form around the largest audio file): the guard
/// refuses a declared `Content-Length` past it before the handler runs.
pub fn upload_body_limit(max_audio_bytes: usize) -> usize {
    max_audio_bytes.saturating_add(FORM_OVERHEAD_BYTES)
}

/// Voice input's ASR and upload bounds. Cheap to clone; the desktop's microphone reaches the same
/// provider through `RunningServer::asr`.
#[derive(Clone)]
pub struct Asr {
    /// Swapped, and its bounds changed, when an ASR setting is saved (`crate::live_asr`).
    provider: Arc<LiveAsr>,
}

impl std::fmt::Debug for Asr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asr")
            .field("provider", &self.name())
            .field("limits", &self.limits())
            .finish()
    }
}

impl Asr {
    pub fn new(provider: Option<Arc<dyn AsrProvider>>, limits: DecodeLimits) -> Self {
        Self {
            provider: LiveAsr::new(provider, limits),
        }
    }

    /// `None` when `ASR_PROVIDER=off`.
    pub fn provider(&self) -> Option<Arc<dyn AsrProvider>> {
        self.provider.current()
    }

    /// The switch itself: what the microphone hears with, following every saved change.
    pub fn live(&self) -> Arc<LiveAsr> {
        Arc::clone(&self.provider)
    }

    /// The bounds now (a saved `ASR_MAX_*` changes them): read once per upload, at its start.
    pub fn limits(&self) -> DecodeLimits {
        self.provider.limits()
    }

    /// `off`, `mock`, `openai`.
    pub fn name(&self) -> &'static str {
        AsrProvider::name(&*self.provider)
    }
}

/// Why an utterance did not become a transcript.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("voice input is off: set ASR_PROVIDER to mock or openai (see the README)")]
    Off,
    #[error(transparent)]
    Decode(#[from] AudioDecodeError),
    #[error("speech recognition failed: {0}")]
    Asr(ProviderError),
    #[error("the ASR heard no words in the audio")]
    NothingHeard,
}

impl VoiceError {
    pub fn status(&self) -> StatusCode {
        match self {
            VoiceError::Off => StatusCode::SERVICE_UNAVAILABLE,
            VoiceError::Decode(error) if error.is_too_big() => StatusCode::PAYLOAD_TOO_LARGE,
            VoiceError::Decode(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            VoiceError::Asr(ProviderError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            VoiceError::Asr(_) => StatusCode::BAD_GATEWAY,
            VoiceError::NothingHeard => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    pub fn wire(&self) -> WireError {
        let code = match self {
            VoiceError::Off => ErrorCode::NotAvailable,
            VoiceError::Decode(error) if error.is_too_big() => ErrorCode::PayloadTooLarge,
            VoiceError::Decode(_) => ErrorCode::UnsupportedAudio,
            VoiceError::Asr(_) => ErrorCode::AsrFailed,
            VoiceError::NothingHeard => ErrorCode::EmptyContent,
        };
        let message = self.to_string();
        // The original system answered every undecodable upload "unsupported audio"; its clients
        // may look for those words, so every such message starts with them.
        let message = match code {
            ErrorCode::UnsupportedAudio if !message.starts_with("unsupported audio") => {
                format!("unsupported audio: {message}")
            }
            _ => message,
        };
        WireError::new(code, message)
    }
}

impl From<VoiceError> for AppError {
    fn from(error: VoiceError) -> Self {
        let wire = error.wire();
        AppError::new(error.status(), wire.code, wire.message)
    }
}

/// Decodes an uploaded file within `limits` (the bounds read when the upload began) and
/// transcribes it: the shared path of every file-based voice input.
pub async fn hear(
    asr: &Asr,
    limits: DecodeLimits,
    audio: Bytes,
    language: Option<String>,
    correlation_id: String,
) -> Result<Transcript, VoiceError> {
    let provider = asr.provider().ok_or(VoiceError::Off)?;
    let decoded = tokio::task::spawn_blocking(move || decode_upload(&audio, &limits))
        .await
        .map_err(|_join_error| {
            VoiceError::Decode(AudioDecodeError::Malformed {
                format: "audio",
                detail: "the decoder stopped".into(),
            })
        })??;
    tracing::debug!(format = decoded.format.as_str(), duration_ms = decoded.duration_ms(), %correlation_id, "upload decoded");
    let mut events = provider.transcribe(AsrRequest {
        samples: Arc::from(decoded.samples),
        language,
        correlation_id,
    });
    while let Some(event) = events.next().await {
        match event.map_err(VoiceError::Asr)? {
            // A file is answered as a whole; partials are for the live microphone.
            AsrEvent::Partial { .. } => {}
            AsrEvent::Final(transcript) if transcript.text.trim().is_empty() => {
                return Err(VoiceError::NothingHeard);
            }
            AsrEvent::Final(transcript) => return Ok(transcript),
        }
    }
    Err(VoiceError::Asr(ProviderError::Protocol(
        "the ASR ended without a transcript".into(),
    )))
}

/// The turn a transcript becomes: `ASR_FINAL`, from the microphone, with its confidence and length.
pub fn speech_turn(
    session: SessionId,
    turn: Option<u64>,
    transcript: &Transcript,
    lang: Option<String>,
    received_at: Instant,
) -> TurnRequest {
    TurnRequest {
        session,
        turn,
        kind: InputKind::AsrFinal,
        content: transcript.text.clone(),
        lang: lang.or_else(|| transcript.language.clone()),
        meta: InputMeta {
            confidence: transcript.confidence,
            duration_ms: Some(transcript.duration_ms),
            ..InputMeta::from_source(InputMeta::MIC)
        },
        received_at,
    }
}

/// An upload as the routes receive it.
struct AudioUpload {
    audio: Bytes,
    session_id: Option<String>,
    turn: Option<String>,
    lang: Option<String>,
}

/// The heard, submitted turn of one request.
struct HeardTurn {
    handle: TurnHandle,
    heard: AsrFinal,
}

pub async fn chat_audio_stream(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    let HeardTurn { handle, heard } = hear_and_submit(&state, request).await?;
    let first = Event::default()
        .event(event::ASR_FINAL)
        .data(serde_json::to_string(&heard).unwrap_or_else(|_| "{}".to_owned()));
    let frames = stream::once(async move { first }).chain(turn_events(handle).map(to_sse));
    Ok(sse_frames(frames))
}

pub async fn chat_audio(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    let HeardTurn { mut handle, heard } = hear_and_submit(&state, request).await?;
    let mut reply = String::new();
    let mut error = None;
    let mut stats = TurnStats::default();
    // Holding the handle keeps the turn alive; a client that goes away drops it (a STOP).
    while let Some(turn_event) = handle.events.recv().await {
        match turn_event {
            TurnEvent::TextDelta { content, .. } => reply.push_str(&content),
            TurnEvent::Error(wire) => error = Some(wire),
            TurnEvent::Control(_) => {}
            TurnEvent::Done(done) => {
                stats = done;
                break;
            }
        }
    }
    let body = ChatAudioResponse {
        session_id: heard.session_id.clone(),
        turn: heard.turn,
        interrupted: stats.interrupted,
        transcript: heard,
        reply,
        error,
        stats,
    };
    Ok(axum::Json(body).into_response())
}

async fn hear_and_submit(state: &AppState, request: Request) -> Result<HeardTurn, AppError> {
    let received_at = Instant::now();
    if state.asr.provider.is_off() {
        return Err(VoiceError::Off.into());
    }
    // Once per request: a bound saved meanwhile applies to the next upload.
    let limits = state.asr.limits();
    let upload = read_upload(request, limits.max_bytes).await?;
    let session_id = upload.session_id.ok_or_else(|| {
        AppError::bad_request(
            ErrorCode::InvalidSessionId,
            "sessionId is required (a form field or a query parameter)",
        )
    })?;
    let session = SessionId::parse(&session_id)
        .map_err(|error| AppError::bad_request(ErrorCode::InvalidSessionId, error.to_string()))?;
    let turn_value = upload.turn.as_deref().map(|raw| {
        raw.trim().parse::<u64>().map_or_else(
            |_| serde_json::Value::String(raw.to_owned()),
            serde_json::Value::from,
        )
    });
    let turn = parse_turn(turn_value.as_ref())
        .map_err(|message| AppError::bad_request(ErrorCode::InvalidTurn, message))?;
    state.check_rate(&session)?;
    let correlation_id = format!("{session}#audio");
    let transcript = hear(
        &state.asr,
        limits,
        upload.audio,
        upload.lang.clone(),
        correlation_id,
    )
    .await?;
    tracing::info!(session = %session, chars = transcript.text.chars().count(), duration_ms = transcript.duration_ms, "voice input heard");
    let submission = state
        .engine
        .submit(speech_turn(
            session.clone(),
            turn,
            &transcript,
            upload.lang,
            received_at,
        ))
        .await?;
    let Submission::Turn(handle) = submission else {
        // Only COMMAND inputs end without a turn; a transcript is never one.
        return Err(AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the transcript did not start a turn",
        ));
    };
    let heard = AsrFinal {
        session_id: session.to_string(),
        turn: handle.turn.0,
        text: transcript.text,
        language: transcript.language,
        confidence: transcript.confidence,
        duration_ms: transcript.duration_ms,
    };
    Ok(HeardTurn { handle, heard })
}

/// Reads the body within the audio limit and splits a multipart form, or takes a raw file with
/// the fields in the query string.
async fn read_upload(request: Request, max_audio_bytes: usize) -> Result<AudioUpload, AppError> {
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .and_then(|query| serde_urlencoded_pairs(query).ok())
        .unwrap_or_default();
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(multipart_boundary);
    let limit = max_audio_bytes.saturating_add(if boundary.is_some() {
        FORM_OVERHEAD_BYTES
    } else {
        0
    });
    let body = read_body(request.into_body(), limit, max_audio_bytes).await?;
    let field = |fields: &HashMap<String, String>, names: &[&str]| {
        names
            .iter()
            .find_map(|name| fields.get(*name))
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    let (audio, fields) = match boundary {
        Some(boundary) => {
            let form = parse_form(&body, &boundary)
                .map_err(|message| AppError::bad_request(ErrorCode::InvalidRequest, message))?;
            let mut fields = query;
            fields.extend(form.fields);
            let audio = form.file.ok_or_else(|| {
                AppError::bad_request(
                    ErrorCode::InvalidRequest,
                    "the form has no audio: send it in a part named \"file\" or \"audio\"",
                )
            })?;
            (audio, fields)
        }
        None => (body, query),
    };
    if audio.len() > max_audio_bytes {
        return Err(too_large(max_audio_bytes));
    }
    Ok(AudioUpload {
        session_id: field(&fields, &["sessionId", "session_id"]),
        turn: field(&fields, &["turn"]),
        lang: field(&fields, &["lang", "language"]),
        audio,
    })
}

fn too_large(limit: usize) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("the audio is larger than {limit} bytes (ASR_MAX_UPLOAD_BYTES)"),
    )
}

async fn read_body(body: Body, limit: usize, audio_limit: usize) -> Result<Bytes, AppError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|error| match timed_out(&error) {
            Some(timeout) => AppError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                format!("{timeout}; send it at once (BODY_READ_TIMEOUT)"),
            ),
            None => too_large(audio_limit),
        })
}

fn serde_urlencoded_pairs(query: &str) -> Result<HashMap<String, String>, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|error: axum::http::uri::InvalidUri| error.to_string())?,
    )
    .map(|axum::extract::Query(map)| map)
    .map_err(|error| error.to_string())
}

/// The boundary of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts
        .find_map(|part| {
            let (name, value) = part.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| value.trim().trim_matches('"').to_owned())
        })
        .filter(|boundary| !boundary.is_empty() && boundary.len() <= 70)
}

/// A parsed form: text fields and the audio part.
#[derive(Debug, Default)]
struct Form {
    fields: HashMap<String, String>,
    file: Option<Bytes>,
}

/// `multipart/form-data` (RFC 7578) over a whole, bounded body: parts split at the boundary,
/// `Content-Disposition` names read; the audio is the part named `file` or `audio` (else the
/// first part with a filename). Small on purpose: the body is already in memory and bounded.
fn parse_form(body: &Bytes, boundary: &str) -> Result<Form, String> {
    let delimiter = format!("--{boundary}");
    let separator = format!("\r\n--{boundary}");
    let start = find(body, delimiter.as_bytes())
        .ok_or("the multipart body does not contain its boundary")?;
    let mut at = start + delimiter.len();
    let mut form = Form::default();
    let mut unnamed_file: Option<Bytes> = None;
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(finish_form(form, unnamed_file));
        }
        if !rest.starts_with(b"\r\n") {
            return Err("a multipart boundary is not followed by a line break".into());
        }
        let head_start = at + 2;
        let head_len = find(&body[head_start..], b"\r\n\r\n")
            .ok_or("a multipart part has no end of headers")?;
        let head = String::from_utf8_lossy(&body[head_start..head_start + head_len]).into_owned();
        let content_start = head_start + head_len + 4;
        let content_len = find(&body[content_start..], separator.as_bytes())
            .ok_or("the multipart body ends without its closing boundary")?;
        let content = body.slice(content_start..content_start + content_len);
        let (name, filename) = disposition(&head);
        match name.as_deref() {
            Some("file" | "audio") => form.file = Some(content),
            _ if filename.is_some() => {
                unnamed_file.get_or_insert(content);
            }
            Some(name) => {
                let value = String::from_utf8(content.to_vec())
                    .map_err(|_| format!("the form field {name:?} is not UTF-8"))?;
                form.fields.insert(name.to_owned(), value);
            }
            None => {}
        }
        at = content_start + content_len + separator.len();
    }
}

fn finish_form(mut form: Form, unnamed_file: Option<Bytes>) -> Form {
    if form.file.is_none() {
        form.file = unnamed_file;
    }
    form
}

/// `name` and `filename` of a part's `Content-Disposition`.
fn disposition(head: &str) -> (Option<String>, Option<String>) {
    let mut name = None;
    let mut filename = None;
    for line in head.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        for attribute in value.split(';').map(str::trim) {
            if let Some((key, raw)) = attribute.split_once('=') {
                let raw = raw.trim().trim_matches('"').to_owned();
                match key.trim().to_ascii_lowercase().as_str() {
                    "name" => name = Some(raw),
                    "filename" => filename = Some(raw),
                    _ => {}
                }
            }
        }
    }
    (name, filename)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn forms_give_their_fields_and_the_audio_part() {
        let body = Bytes::from_static(
            b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"sessionId\"\r\n\r\nlive-001\r\n\
              --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.webm\"\r\nContent-Type: audio/webm\r\n\r\n\x1a\x45\r\n--X\x00\r\n\
              --XyZ--\r\n",
        );
        let form = parse_form(&body, "XyZ").unwrap();
        assert_eq!(
            form.fields.get("sessionId").map(String::as_str),
            Some("live-001"),
            "a text field"
        );
        assert_eq!(
            form.file.as_deref(),
            Some(&b"\x1a\x45\r\n--X\x00"[..]),
            "binary content, even with CRLF and a near-boundary inside"
        );
        assert!(
            parse_form(
                &Bytes::from_static(
                    b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"
                ),
                "XyZ"
            )
            .is_err(),
            "an unterminated form is an error"
        );
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"abc\""),
            Some("abc".into()),
            "quoted boundary"
        );
        assert_eq!(
            multipart_boundary("audio/webm"),
            None,
            "a raw file is not a form"
        );
    }
}
