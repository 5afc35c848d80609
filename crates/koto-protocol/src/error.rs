//! Wire errors: `{"error":{"code":"…","message":"…"}}` with a closed set of codes.

use serde::{Deserialize, Serialize};

/// Every error code a client can see. Closed set: adding one is a contract change (additive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    InvalidRequest,
    InvalidSessionId,
    InvalidTurn,
    InvalidType,
    EmptyContent,
    ContentTooLong,
    UnknownCommand,
    TurnExists,
    Unauthorized,
    ForbiddenOrigin,
    ForbiddenHost,
    PayloadTooLarge,
    /// The request body did not arrive within the read timeout (408).
    RequestTimeout,
    UnsupportedMediaType,
    RateLimited,
    NotFound,
    NotAvailable,
    BargeInDisabled,
    SyncCoreDisabled,
    ShuttingDown,
    LlmTimeout,
    LlmRateLimited,
    LlmAuth,
    LlmTransport,
    LlmProtocol,
    LlmUnavailable,
    TtsFailed,
    /// An uploaded audio file that cannot be decoded (format, codec, truncated or broken) (415).
    UnsupportedAudio,
    /// The ASR provider failed, timed out or could not be reached (502).
    AsrFailed,
    StorageError,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidSessionId => "invalid_session_id",
            ErrorCode::InvalidTurn => "invalid_turn",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::EmptyContent => "empty_content",
            ErrorCode::ContentTooLong => "content_too_long",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::TurnExists => "turn_exists",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ForbiddenOrigin => "forbidden_origin",
            ErrorCode::ForbiddenHost => "forbidden_host",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotAvailable => "not_available",
            ErrorCode::BargeInDisabled => "barge_in_disabled",
            ErrorCode::SyncCoreDisabled => "sync_core_disabled",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::LlmTimeout => "llm_timeout",
            ErrorCode::LlmRateLimited => "llm_rate_limited",
            ErrorCode::LlmAuth => "llm_auth",
            ErrorCode::LlmTransport => "llm_transport",
            ErrorCode::LlmProtocol => "llm_protocol",
            ErrorCode::LlmUnavailable => "llm_unavailable",
            ErrorCode::TtsFailed => "tts_failed",
            ErrorCode::UnsupportedAudio => "unsupported_audio",
            ErrorCode::AsrFailed => "asr_failed",
            ErrorCode::StorageError => "storage_error",
            ErrorCode::Internal => "internal",
        }
    }
}

/// `{"code":"…","message":"…"}`: the SSE `error` payload and the inner part of an error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}

/// `{"error":{"code":"…","message":"…"}}`: the body of every non-2xx HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: WireError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_documented_names() {
        let all = [
            ErrorCode::InvalidJson,
            ErrorCode::InvalidSessionId,
            ErrorCode::TurnExists,
            ErrorCode::LlmTimeout,
            ErrorCode::BargeInDisabled,
            ErrorCode::UnsupportedAudio,
            ErrorCode::AsrFailed,
            ErrorCode::Internal,
        ];
        for code in all {
            let json = serde_json::to_string(&code).expect("serialise code");
            assert_eq!(
                json,
                format!("\"{}\"", code.as_str()),
                "serde name and as_str agree"
            );
        }
    }
}
