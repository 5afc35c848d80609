//! Failover chains (`llm_chain`, `tts_chain`) end to end, against loopback fakes failing in
//! each way: the turn's text and voice come from the next provider, the breakers' states are on
//! `/health` and `/metrics`, and a chain whose every provider fails is a clear error event.

use koto_testkit::fake_edge::{EdgeBehaviour, EdgeScript, FakeEdge};
use koto_testkit::fake_openai::{FakeOpenAi, FakeResponse, FakeScript};
use serde_json::{Value, json};

use crate::{TestServer, read_sse, serve};

const FIXTURE_MP3: &[u8] =
    include_bytes!("../../../koto-providers/tests/fixtures/speech-24k-mono.mp3");

fn text_of(frames: &[crate::Frame]) -> String {
    frames
        .iter()
        .filter(|frame| frame.event == "text-delta")
        .filter_map(|frame| frame.data["content"].as_str())
        .collect()
}

fn llm_chain(urls: &[&str]) -> String {
    let entries: Vec<Value> = urls
        .iter()
        .enumerate()
        .map(|(n, url)| json!({"provider": "openai", "base_url": url, "model": format!("m{n}"), "label": format!("llm{n}")}))
        .collect();
    Value::Array(entries).to_string()
}

async fn turn(app: &TestServer, session: &str) -> Vec<crate::Frame> {
    read_sse(
        app.chat(json!({"sessionId": session, "content": "hello"}))
            .await,
    )
    .await
}

#[tokio::test]
async fn an_llm_that_fails_before_output_hands_the_turn_to_the_next() {
    for failing in [
        FakeResponse::error(503, "overloaded"),
        FakeResponse::rate_limited(30),
        FakeResponse::error(401, "bad key"),
    ] {
        let cloud = FakeOpenAi::start(FakeScript::always(failing)).await;
        let local = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens([
            "From ", "local.",
        ])))
        .await;
        let chain = llm_chain(&[&cloud.base_url(), &local.base_url()]);
        let app = serve(&[("LLM_CHAIN", chain.as_str())]).await;
        let frames = turn(&app, "fo").await;
        assert_eq!(
            text_of(&frames),
            "From local.",
            "only the next provider's text"
        );
        assert_eq!(frames.last().map(|f| f.event.as_str()), Some("done"));
        assert_eq!(cloud.requests().len(), 1, "no retries inside a chain");
        let health = app.health().await;
        let links = &health["llm"]["chain"];
        assert_eq!(links[0]["label"], "llm0", "{health}");
        assert_eq!(links[0]["failures"], 1, "{health}");
        assert_eq!(links[1]["current"], true, "{health}");
        assert_eq!(health["llm"]["provider"], "openai");
        assert_eq!(
            health["llm"]["model"], "m1",
            "the model that served the turn"
        );
        app.shutdown().await;
    }
}

#[tokio::test]
async fn an_open_breaker_is_skipped_then_probed_and_closes_when_the_provider_recovers() {
    let cloud = FakeOpenAi::start(FakeScript::sequence(vec![
        FakeResponse::error(500, "down"),
        FakeResponse::tokens(["Cloud ", "is back."]),
    ]))
    .await;
    let local = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens(["Local."]))).await;
    let chain = llm_chain(&[&cloud.base_url(), &local.base_url()]);
    let app = serve(&[
        ("LLM_CHAIN", chain.as_str()),
        ("BREAKER_FAILURES", "1"),
        ("BREAKER_COOLDOWN_S", "0.2"),
    ])
    .await;
    assert_eq!(text_of(&turn(&app, "br").await), "Local.");
    let health = app.health().await;
    assert_eq!(health["llm"]["chain"][0]["state"], "open", "{health}");
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(crate::TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"koto_provider_breaker_state{kind="llm",provider="llm0"} 2"#),
        "{metrics}"
    );
    // Polls (no timing assertion): the breaker half-opens once its cooldown is over.
    let mut state = Value::Null;
    for _ in 0..200 {
        state = app.health().await["llm"]["chain"][0]["state"].clone();
        if state == "half_open" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state, "half_open");
    assert_eq!(
        text_of(&turn(&app, "br").await),
        "Cloud is back.",
        "the probe is a real turn, served by the recovered provider"
    );
    let health = app.health().await;
    assert_eq!(health["llm"]["chain"][0]["state"], "closed", "{health}");
    assert_eq!(health["llm"]["chain"][0]["current"], true, "{health}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_chain_whose_every_llm_fails_is_one_clear_error() {
    let a = FakeOpenAi::start(FakeScript::always(FakeResponse::error(503, "a is down"))).await;
    let b = FakeOpenAi::start(FakeScript::always(FakeResponse::error(502, "b is down"))).await;
    let chain = llm_chain(&[&a.base_url(), &b.base_url()]);
    let app = serve(&[("LLM_CHAIN", chain.as_str())]).await;
    let frames = turn(&app, "all").await;
    let error = frames
        .iter()
        .find(|frame| frame.event == "error")
        .expect("an error event, not silence");
    let message = error.data["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("every provider of the chain failed")
            && message.contains("llm0")
            && message.contains("llm1"),
        "names each provider: {error:?}"
    );
    assert_eq!(text_of(&frames), "");
    // The engine keeps going: the next turn is answered when a provider is back.
    app.shutdown().await;
}

#[tokio::test]
async fn a_chain_with_a_bad_entry_is_refused_at_start() {
    let mut raw = koto_server::config::RawConfig::default();
    raw.merge_env(|name| {
        (name == "LLM_CHAIN").then(|| r#"[{"provider":"openai","modle":"x"}]"#.to_owned())
    });
    let error = raw.build().expect_err("a typo in an entry").to_string();
    assert!(
        error.contains("llm_chain") && error.contains("modle"),
        "names the key and the field: {error}"
    );
}

#[tokio::test]
async fn a_cloud_voice_that_fails_mid_turn_hands_the_next_segment_to_espeak_ng() {
    if !std::path::Path::new("/usr/bin/espeak-ng").exists() {
        eprintln!("skipped: espeak-ng is not installed (apt-get install espeak-ng)");
        return;
    }
    // The cloud voice speaks the first segment, then refuses (403) every later one.
    let edge = FakeEdge::start(EdgeScript::sequence(vec![
        EdgeBehaviour::speak(FIXTURE_MP3),
        EdgeBehaviour::forbidden(),
    ]))
    .await;
    let llm = FakeOpenAi::start(FakeScript::always(FakeResponse::tokens([
        "Hello there. ",
        "This is the second sentence. ",
        "And a third one.",
    ])))
    .await;
    let chain = json!([
        {"provider": "edge", "base_url": edge.endpoint(), "label": "cloud voice"},
        {"provider": "espeak", "label": "espeak-ng"},
    ])
    .to_string();
    let base_url = llm.base_url();
    let app = serve(&[
        ("SYNC_TTS_STREAMING", "true"),
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("TTS_CHAIN", chain.as_str()),
        ("TTS_SAMPLE_RATE", "24000"),
    ])
    .await;
    let frames = turn(&app, "voice").await;
    assert!(
        frames.iter().all(|frame| frame.event != "error"),
        "the turn is not a TTS failure: {frames:?}"
    );
    let history = app
        .client
        .get(format!("{}/sessions/voice/history", app.base))
        .bearer_auth(crate::TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(history["turns"][0]["status"], "completed", "{history}");
    assert!(
        edge.handshakes().len() >= 2,
        "the cloud voice was asked again (and refused)"
    );
    let health = app.health().await;
    let links = &health["tts"]["chain"];
    assert!(links[0]["failures"].as_u64() >= Some(1), "{health}");
    assert_eq!(links[1]["current"], true, "espeak-ng spoke last: {health}");
    assert_eq!(health["tts"]["provider"], "espeak-ng", "{health}");
    app.shutdown().await;
}
