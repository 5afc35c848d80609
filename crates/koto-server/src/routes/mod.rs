//! HTTP routes; each handler is a thin adapter over `koto_engine::Engine`.

pub mod chat;
pub mod control;
pub mod desktop;
pub mod health;
pub mod history;
pub mod legacy;
pub mod settings;
pub mod speak;
pub mod stats;
pub mod ui;
pub mod ws;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use koto_protocol::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// Reads a JSON body with our own limit and error codes (axum's extractors answer in plain text).
pub async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, AppError> {
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => {
            AppError::bad_request(ErrorCode::InvalidRequest, error.to_string())
        }
        _ => AppError::bad_request(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {error}"),
        ),
    })
}
