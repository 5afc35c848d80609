//! What the control panel relies on: settings described in a streamer's words, and an
//! overlay count that counts only overlays.

use std::time::Duration;

use serde_json::Value;

use crate::{TOKEN, TestServer, serve};

async fn get(app: &TestServer, path: &str) -> Value {
    app.client
        .get(format!("{}{path}", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("JSON body")
}

#[tokio::test]
async fn every_setting_has_a_group_and_a_plain_label() {
    let app = serve(&[]).await;
    let view = get(&app, "/settings").await;
    let keys = view["keys"].as_array().expect("keys");
    let groups = ["voice", "brain", "character", "stream", "advanced"];
    for entry in keys {
        let group = entry["group"].as_str().expect("a group");
        assert!(groups.contains(&group), "{entry}");
        let label = entry["label"].as_str().expect("a label");
        assert!(!label.is_empty() && label != entry["env"], "{entry}");
    }
    let group_of = |key: &str| {
        keys.iter()
            .find(|entry| entry["key"] == key)
            .map(|entry| entry["group"].clone())
    };
    assert_eq!(group_of("tts_voice"), Some("voice".into()));
    assert_eq!(group_of("llm_model"), Some("brain".into()));
    assert_eq!(group_of("system_prompt"), Some("character".into()));
    assert_eq!(group_of("redis_url"), Some("advanced".into()));
    assert_eq!(group_of("outbox_batch"), Some("advanced".into()));
    app.shutdown().await;
}

async fn overlays(app: &TestServer) -> (u64, u64) {
    let health = get(app, "/health").await;
    let relay = &health["relay"];
    (
        relay["overlaysConnected"]
            .as_u64()
            .expect("overlaysConnected"),
        relay["clientsConnected"]
            .as_u64()
            .expect("clientsConnected"),
    )
}

/// Polls `/health` until `want` holds (bounded).
async fn until_counts(app: &TestServer, want: impl Fn((u64, u64)) -> bool) -> (u64, u64) {
    for _ in 0..200 {
        let counts = overlays(app).await;
        if want(counts) {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    overlays(app).await
}

#[tokio::test]
async fn the_overlay_count_counts_only_clients_that_say_they_are_overlays() {
    let app = serve(&[("SYNC_TTS_STREAMING", "true"), ("TTS_PROVIDER", "mock")]).await;
    let ws = app.base.replace("http://", "ws://");
    let (_panel, _) =
        tokio_tungstenite::connect_async(format!("{ws}/ws/live?token={TOKEN}&role=panel"))
            .await
            .expect("panel socket");
    let (_plain, _) = tokio_tungstenite::connect_async(format!("{ws}/ws/live?token={TOKEN}"))
        .await
        .expect("a client without a role");
    let counts = until_counts(&app, |(_, clients)| clients >= 2).await;
    assert_eq!(counts.0, 0, "no overlay open: {counts:?}");
    let (overlay, _) =
        tokio_tungstenite::connect_async(format!("{ws}/ws/live?token={TOKEN}&role=overlay"))
            .await
            .expect("overlay socket");
    let counts = until_counts(&app, |(overlays, _)| overlays == 1).await;
    assert_eq!(counts.0, 1, "the overlay: {counts:?}");
    drop(overlay);
    let counts = until_counts(&app, |(overlays, _)| overlays == 0).await;
    assert_eq!(counts.0, 0, "a closed overlay is not counted: {counts:?}");
    app.shutdown().await;
}
