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

async fn post(app: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = app.post(path).json(&body).send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// A loopback server that answers every request with `response` (raw HTTP/1.1), or never
/// answers when it is `None`.
async fn canned(response: Option<&'static str>) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            match response {
                Some(text) => {
                    let _ = socket.write_all(text.as_bytes()).await;
                }
                // Keep the connection open, answer nothing.
                None => held.push(socket),
            }
        }
    });
    (base, task)
}

#[tokio::test]
async fn test_connection_lists_the_models_or_says_what_is_wrong() {
    let app = serve(&[]).await;
    let fake = koto_testkit::fake_openai::FakeOpenAi::start(
        koto_testkit::fake_openai::FakeScript::always(
            koto_testkit::fake_openai::FakeResponse::reply("unused"),
        ),
    )
    .await;
    let (status, ok) = post(
        &app,
        "/settings/test/llm",
        serde_json::json!({ "baseUrl": fake.base_url(), "model": "fake-model" }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["models"], serde_json::json!(["fake-model"]));
    assert_eq!(ok["modelListed"], true);

    let (_, other) = post(
        &app,
        "/settings/test/llm",
        serde_json::json!({ "baseUrl": fake.base_url(), "model": "llama3" }),
    )
    .await;
    assert_eq!(other["modelListed"], false);
    assert!(
        other["message"].as_str().unwrap().contains("not llama3"),
        "{other}"
    );

    // Unreachable: a port nobody listens on any more.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("http://{closed}/v1"),
            "unreachable",
            "Nothing answers at",
        ),
        ("not a url".to_owned(), "bad_url", "is not a web address"),
    ];
    for (base, problem, sentence) in cases {
        let (_, answer) = post(
            &app,
            "/settings/test/llm",
            serde_json::json!({ "baseUrl": base }),
        )
        .await;
        assert_eq!(answer["ok"], false, "{answer}");
        assert_eq!(answer["problem"], problem, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(sentence),
            "{answer}"
        );
    }

    let canned_cases = [
        (
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
            "unauthorized",
            "refused the API key",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\nconnection: close\r\n\r\n<html></html>",
            "not_openai",
            "not an OpenAI-compatible API",
        ),
        (
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "not_openai",
            "ends in /v1",
        ),
    ];
    for (response, problem, sentence) in canned_cases {
        let (base, task) = canned(Some(response)).await;
        let (_, answer) = post(
            &app,
            "/settings/test/llm",
            serde_json::json!({ "baseUrl": base, "apiKey": "sk-wrong" }),
        )
        .await;
        assert_eq!(answer["problem"], problem, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(sentence),
            "{answer}"
        );
        task.abort();
    }

    let (base, task) = canned(None).await;
    let (_, slow) = post(
        &app,
        "/settings/test/llm",
        serde_json::json!({ "baseUrl": base, "timeoutSecs": 1 }),
    )
    .await;
    assert_eq!(slow["problem"], "timeout", "{slow}");
    assert!(
        slow["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within 1 s"),
        "{slow}"
    );
    task.abort();
    app.shutdown().await;
}

#[tokio::test]
async fn voices_are_listed_per_provider() {
    let app = serve(&[("TTS_PROVIDER", "mock")]).await;
    let mock = get(&app, "/voices").await;
    assert_eq!(mock["provider"], "mock");
    assert_eq!(mock["voices"].as_array().map(Vec::len), Some(1), "{mock}");
    assert!(mock["note"].as_str().unwrap().contains("tone"), "{mock}");
    let openai = get(&app, "/voices?provider=openai").await;
    assert!(
        openai["voices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == "alloy")
    );
    // Piper: models found in <data_dir>/voices.
    let voices_dir = app.dir.path().join("voices");
    std::fs::create_dir_all(&voices_dir).unwrap();
    std::fs::write(
        voices_dir.join("en_US-amy-medium.onnx"),
        b"not a real model",
    )
    .unwrap();
    let piper = get(&app, "/voices?provider=piper").await;
    let found = piper["voices"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{piper}");
    assert_eq!(found[0]["label"], "en_US-amy-medium");
    assert_eq!(found[0]["lang"], "en");
    if std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok()
    {
        let espeak = get(&app, "/voices?provider=espeak").await;
        assert!(
            espeak["voices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["id"] == "en-us"),
            "{espeak}"
        );
        assert!(
            espeak["note"].as_str().unwrap().contains("kana only"),
            "the espeak voices say Japanese with kanji needs another engine: {espeak}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn personas_are_presets_and_files_and_a_broken_file_is_named_with_its_line() {
    let app = serve(&[]).await;
    let list = get(&app, "/personas").await;
    let presets = list["presets"].as_array().unwrap();
    assert!(presets.len() >= 3, "{list}");
    let langs: Vec<&str> = presets.iter().filter_map(|p| p["lang"].as_str()).collect();
    assert!(langs.contains(&"zh") && langs.contains(&"ja") && langs.contains(&"en"));
    assert!(
        presets
            .iter()
            .all(|p| !p["systemPrompt"].as_str().unwrap().is_empty())
    );

    let response = app
        .client
        .put(format!("{}/personas/kira", app.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "name": "Kira", "lang": "en", "style": "Upbeat." }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let file = app.dir.path().join("personas/kira.toml");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("name = \"Kira\"")
    );
    std::fs::write(
        app.dir.path().join("personas/broken.toml"),
        "name = \"X\"\nlang = en\n",
    )
    .unwrap();
    let list = get(&app, "/personas").await;
    let saved = list["saved"].as_array().unwrap();
    let broken = saved.iter().find(|p| p["id"] == "broken").expect("listed");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .starts_with("personas/broken.toml, line 2:"),
        "{broken}"
    );
    let kira = saved.iter().find(|p| p["id"] == "kira").expect("listed");
    assert!(kira["systemPrompt"].as_str().unwrap().contains("Kira"));

    let bad_id = app
        .client
        .put(format!("{}/personas/..%2Fescape", app.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "name": "X" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad_id.status().as_u16(),
        400,
        "an id cannot leave the folder"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_personas_folder_that_cannot_be_written_is_a_sentence_and_the_app_keeps_running() {
    let app = serve(&[]).await;
    // A file where the folder should be: unwritable for any user, root included (a
    // permission bit would not stop root, who runs these tests in CI containers).
    std::fs::write(app.dir.path().join("personas"), b"in the way").unwrap();
    let response = app
        .client
        .put(format!("{}/personas/kira", app.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "name": "Kira" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 507);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The persona was not saved:")
            && message.contains("cannot be written")
            && message.contains("--data-dir"),
        "{message}"
    );
    let health = get(&app, "/health").await;
    assert_eq!(health["status"], "ok", "still running");
    app.shutdown().await;
}
