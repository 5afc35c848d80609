//! The axum app and its wiring.
