//! `GET /stats` (analytics aggregates as JSON) and `GET /metrics` (Prometheus text of the
//! process's one registry: engine, relay, events, live chat, breakers).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use koto_core::metrics;
use koto_protocol::ErrorCode;

use crate::AppState;
use crate::error::AppError;

pub async fn stats(State(state): State<AppState>) -> Result<Response, AppError> {
    let report = state.events.stats().await.map_err(|error| {
        tracing::error!(%error, "stats unavailable");
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::StorageError,
            "stats are unavailable; see the server log",
        )
    })?;
    Ok(Json(report).into_response())
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    state.scraped_metrics.refresh(&state.engine);
    // The events' gauges need queries; it refreshes them and encodes the one shared registry.
    let text = state.events.metrics_text().await;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}
