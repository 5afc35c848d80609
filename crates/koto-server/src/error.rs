//! `AppError`: every refusal as `{"error":{"code","message"}}` with the right status. Internal
//! details (SQL, paths) are logged, not sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use koto_engine::EngineError;
use koto_protocol::{ErrorBody, ErrorCode, WireError};

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub error: WireError,
    pub retry_after_secs: Option<u64>,
}

impl AppError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            status,
            error: WireError::new(code, message),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<EngineError> for AppError {
    fn from(error: EngineError) -> Self {
        let status = match &error {
            EngineError::InvalidInput { .. } | EngineError::UnknownCommand(_) => {
                StatusCode::BAD_REQUEST
            }
            EngineError::TurnExists { .. } | EngineError::BargeInDisabled => StatusCode::CONFLICT,
            EngineError::NotAvailable(_) => StatusCode::NOT_IMPLEMENTED,
            EngineError::SyncCoreDisabled | EngineError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            EngineError::Storage(koto_store::StoreError::DiskFull) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            EngineError::Storage(koto_store::StoreError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &error {
            // The two a streamer can fix, in words they can act on; nothing stored is lost.
            EngineError::Storage(koto_store::StoreError::DiskFull) => {
                tracing::error!("the disk holding the database is full");
                "The disk holding Kotodama's database is full, so this input was not taken. Free some space on it (or start with another --data-dir); everything stored before is kept.".to_owned()
            }
            EngineError::Storage(koto_store::StoreError::Busy) => {
                tracing::warn!("the database stayed locked");
                "Kotodama's database is locked by another program (a backup or a database viewer?), so this input was not taken. Close it and send again; everything stored is kept.".to_owned()
            }
            EngineError::Storage(inner) => {
                tracing::error!(error = %inner, "storage error");
                "the database refused the request; see the server log".to_owned()
            }
            other => other.to_string(),
        };
        AppError::new(status, error.code(), message)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.error };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_secs
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
