//! What a machine without the usual set-up meets: no local voice (said on `/health`, where the
//! status bar and the panel show it), espeak-ng found through `ESPEAK_BINARY` or refused
//! clearly, a data dir that cannot be made.

use koto_server::config::RawConfig;

use crate::serve;

#[tokio::test]
async fn a_test_tone_instead_of_a_voice_is_said_on_health() {
    let app = serve(&[("SYNC_TTS_STREAMING", "true"), ("TTS_PROVIDER", "mock")]).await;
    let health = app.health().await;
    assert_eq!(health["tts"]["provider"], "mock", "{health}");
    let warning = health["tts"]["warning"].as_str().expect("a warning");
    assert!(
        warning.contains("test tone") && warning.contains("espeak-ng"),
        "says what is wrong and what to install: {warning}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn espeak_ng_at_a_configured_path_is_a_voice_without_a_warning() {
    if !std::path::Path::new("/usr/bin/espeak-ng").exists() {
        eprintln!("skipped: /usr/bin/espeak-ng is not installed (apt-get install espeak-ng)");
        return;
    }
    let app = serve(&[
        ("SYNC_TTS_STREAMING", "true"),
        ("TTS_PROVIDER", "espeak"),
        ("ESPEAK_BINARY", "/usr/bin/espeak-ng"),
    ])
    .await;
    let health = app.health().await;
    assert_eq!(health["tts"]["provider"], "espeak-ng", "{health}");
    assert!(health["tts"]["warning"].is_null(), "{health}");
    app.shutdown().await;
}

fn config(env: &[(&str, &str)], data_dir: &std::path::Path) -> koto_server::config::Config {
    let mut raw = RawConfig::default();
    let data_dir = data_dir.to_string_lossy().into_owned();
    raw.merge_env(|name| match name {
        "KOTODAMA_BIND" => Some("127.0.0.1:0".into()),
        "KOTODAMA_DATA_DIR" => Some(data_dir.clone()),
        _ => env
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string()),
    });
    raw.build().expect("valid config")
}

#[tokio::test]
async fn an_espeak_binary_that_does_not_run_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        &[
            ("TTS_PROVIDER", "espeak"),
            ("ESPEAK_BINARY", "/nonexistent/espeak-ng"),
        ],
        dir.path(),
    );
    let error = match koto_server::start(config).await {
        Ok(_) => panic!("no start without the voice asked for"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("ESPEAK_BINARY") && error.contains("/nonexistent/espeak-ng"),
        "names the key and the path: {error}"
    );
}

#[tokio::test]
async fn a_data_dir_that_cannot_be_made_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    // A file where a folder must go: refused for root too (a read-only folder is not).
    let blocker = dir.path().join("not a folder");
    std::fs::write(&blocker, "").unwrap();
    let data = blocker.join("配信者");
    let error = match koto_server::start(config(&[], &data)).await {
        Ok(_) => panic!("no start without a usable data dir"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("cannot use data directory") && error.contains(data.to_str().unwrap()),
        "names the folder: {error}"
    );
}
