//! `GET /stats` (analytics aggregates as JSON) and `GET /metrics` (Prometheus text: events,
//! relay and engine histograms).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
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
    let mut text = state.events.metrics_text().await;
    if let Some(relay) = state.engine.relay() {
        text.push_str(&relay_metrics(&relay.metrics()));
    }
    let llm_chain = state.engine.llm().chain().unwrap_or_default();
    let tts_chain = state
        .engine
        .voice()
        .and_then(|voice| voice.chain())
        .unwrap_or_default();
    text.push_str(&breaker_metrics(&llm_chain, &tts_chain));
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(koto_core::metrics::CONTENT_TYPE),
    );
    response
}

/// A failover chain's breakers: state (0 closed, 1 half-open, 2 open) and times opened.
fn breaker_metrics(
    llm: &[koto_core::chain_status::ChainLinkStatus],
    tts: &[koto_core::chain_status::ChainLinkStatus],
) -> String {
    use std::fmt::Write as _;
    if llm.is_empty() && tts.is_empty() {
        return String::new();
    }
    let label = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let mut text = String::from(
        "# HELP koto_provider_breaker_state A chain provider's circuit breaker: 0 closed, 1 half-open, 2 open.\n# TYPE koto_provider_breaker_state gauge\n",
    );
    for (kind, links) in [("llm", llm), ("tts", tts)] {
        for link in links {
            let state = match link.state {
                "open" => 2,
                "half_open" => 1,
                _ => 0,
            };
            let _ = writeln!(
                text,
                "koto_provider_breaker_state{{kind=\"{kind}\",provider=\"{}\"}} {state}",
                label(&link.label)
            );
        }
    }
    text.push_str("# HELP koto_provider_breaker_opened_total Times a chain provider's breaker opened.\n# TYPE koto_provider_breaker_opened_total counter\n");
    for (kind, links) in [("llm", llm), ("tts", tts)] {
        for link in links {
            let _ = writeln!(
                text,
                "koto_provider_breaker_opened_total{{kind=\"{kind}\",provider=\"{}\"}} {}",
                label(&link.label),
                link.opened_count
            );
        }
    }
    text
}

/// The relay keeps plain counters; they are rendered here in the exposition format.
fn relay_metrics(metrics: &koto_relay::RelayMetrics) -> String {
    let counters: [(&str, &str, u64); 8] = [
        (
            "koto_relay_chunks_in_total",
            "SPEECH_CHUNKs accepted from producers.",
            metrics.chunks_in,
        ),
        (
            "koto_relay_chunks_released_total",
            "SPEECH_CHUNKs released to clients.",
            metrics.chunks_released,
        ),
        (
            "koto_relay_dropped_fenced_total",
            "Chunks dropped by a STOP fence.",
            metrics.dropped_fenced,
        ),
        (
            "koto_relay_dropped_bad_seq_total",
            "Chunks refused for a seq gap or duplicate.",
            metrics.dropped_bad_seq,
        ),
        (
            "koto_relay_frames_malformed_total",
            "Ingest frames that could not be parsed.",
            metrics.frames_malformed,
        ),
        (
            "koto_relay_client_frames_dropped_total",
            "Frames dropped for slow clients.",
            metrics.client_frames_dropped,
        ),
        ("koto_relay_stops_total", "STOPs handled.", metrics.stops),
        (
            "koto_relay_stop_timeouts_total",
            "STOPs not acknowledged in time.",
            metrics.stop_timeouts,
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in counters {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    text.push_str(&format!(
        "# HELP koto_relay_clients_connected Live clients connected.\n# TYPE koto_relay_clients_connected gauge\nkoto_relay_clients_connected {}\n",
        metrics.clients_connected
    ));
    text
}
