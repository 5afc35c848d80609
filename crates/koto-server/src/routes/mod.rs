//! HTTP routes; each handler is a thin adapter over `koto_engine::Engine`.

pub mod audio;
pub mod chat;
pub mod chat_in;
pub mod control;
pub mod desktop;
pub mod diagnostics;
pub mod health;
pub mod history;
pub mod legacy;
pub mod settings;
pub mod setup;
pub mod speak;
pub mod stats;
pub mod ui;
pub mod voice;
pub mod ws;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use futures_util::StreamExt;
use koto_protocol::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// A request body that did not arrive in time (`BODY_READ_TIMEOUT`): the reader sees this error.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);

/// Gives the request's whole body `timeout` from now to arrive; a read past it fails with
/// [`BodyTimedOut`] (a client trickling bytes cannot hold a connection open). GET, HEAD and
/// OPTIONS requests carry no body worth a deadline and are left as they are.
pub fn with_read_deadline(request: Request, timeout: Duration) -> Request {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return request;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    request.map(|body| {
        let chunks = body.into_data_stream();
        let timed = futures_util::stream::unfold(Some(chunks), move |chunks| async move {
            let mut chunks = chunks?;
            match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(chunks))),
                Ok(Some(Err(error))) => Some((Err(axum::BoxError::from(error)), None)),
                Ok(None) => None,
                // Then the stream ends: nothing more is read from this body.
                Err(_elapsed) => Some((Err(BodyTimedOut(timeout).into()), None)),
            }
        });
        Body::from_stream(timed)
    })
}

/// Whether `error` (or anything it wraps) is a [`BodyTimedOut`].
fn timed_out<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e BodyTimedOut> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(timeout) = error.downcast_ref::<BodyTimedOut>() {
            return Some(timeout);
        }
        current = error.source();
    }
    None
}

/// Reads a JSON body with our own limit and error codes (axum's extractors answer in plain text).
pub async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, AppError> {
    let bytes: Bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|error| match timed_out(&error) {
            Some(timeout) => AppError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                format!("{timeout}; send it at once (BODY_READ_TIMEOUT)"),
            ),
            None => AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than {limit} bytes"),
            ),
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
