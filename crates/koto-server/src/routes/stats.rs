//! `GET /stats` (analytics aggregates as JSON) and `GET /metrics` (Prometheus text: events,
//! relay and engine histograms).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use koto_core::chain_status::ChainLinkStatus;
use koto_core::metrics::{self, Registry};
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
    text.push_str(&sampled_metrics(&state).encode());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

/// The values other owners keep by themselves (the relay's counters under its lock, the chains'
/// breakers), read now into a registry of this scrape. The text format has no end marker, so it
/// follows the shared registry's text as one exposition.
fn sampled_metrics(state: &AppState) -> Registry {
    let registry = Registry::new();
    if let Some(relay) = state.engine.relay() {
        relay_metrics(&registry, &relay.metrics());
    }
    let llm_chain = state.engine.llm().chain().unwrap_or_default();
    let tts_chain = state
        .engine
        .voice()
        .and_then(|voice| voice.chain())
        .unwrap_or_default();
    breaker_metrics(&registry, &llm_chain, &tts_chain);
    registry
}

/// A failover chain's breakers: state (0 closed, 1 half-open, 2 open) and times opened.
fn breaker_metrics(registry: &Registry, llm: &[ChainLinkStatus], tts: &[ChainLinkStatus]) {
    if llm.is_empty() && tts.is_empty() {
        return;
    }
    let states = registry.gauge_vec(
        "koto_provider_breaker_state",
        "A chain provider's circuit breaker: 0 closed, 1 half-open, 2 open.",
        &["kind", "provider"],
    );
    let opened = registry.counter_vec(
        "koto_provider_breaker_opened_total",
        "Times a chain provider's breaker opened.",
        &["kind", "provider"],
    );
    let (Ok(states), Ok(opened)) = (states, opened) else {
        // Constant, valid names in a fresh registry: registration cannot fail.
        return;
    };
    for (kind, links) in [("llm", llm), ("tts", tts)] {
        for link in links {
            let state = match link.state {
                "open" => 2.0,
                "half_open" => 1.0,
                _ => 0.0,
            };
            states.with(&[kind, &link.label]).set(state);
            opened.with(&[kind, &link.label]).inc_by(link.opened_count);
        }
    }
}

/// The relay's counters (monotonic in the relay; a fresh counter here is set to the count).
fn relay_metrics(registry: &Registry, metrics: &koto_relay::RelayMetrics) {
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
    for (name, help, value) in counters {
        if let Ok(counter) = registry.counter(name, help) {
            counter.inc_by(value);
        }
    }
    if let Ok(clients) = registry.gauge("koto_relay_clients_connected", "Live clients connected.") {
        clients.set(metrics.clients_connected as f64);
    }
}
