//! A setup that cannot lock itself out: `PUT /settings` refuses what the next start could not
//! use (bind syntax, a port taken by another program, a value hidden by an override), says so in
//! sentences naming the key, and keeps the app running on its settings when the file cannot be
//! written; a start that fails on its saved settings names the file and the key and offers two
//! ways back that work (`kotodama serve --reset-settings` / `--restore-settings`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::put_settings as put;
use crate::{TOKEN, TestServer, serve, settings_entry};

async fn view(app: &TestServer) -> Value {
    app.client
        .get(format!("{}/settings", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The one `{code, key, message}` of a refusal.
fn only_error(body: &Value) -> &Value {
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "one refusal: {body}");
    &errors[0]
}

/// Words of parsers and sockets that a streamer must never read.
fn assert_plain(message: &str) {
    for raw in [
        "invalid socket address syntax",
        "invalid digit",
        "TOML parse error",
        "os error",
    ] {
        assert!(!message.contains(raw), "a raw message leaked: {message}");
    }
    assert!(message.ends_with('.'), "a sentence: {message}");
}

#[tokio::test]
async fn a_bind_that_would_not_start_is_refused_even_while_an_override_hides_it() {
    // The harness sets KOTODAMA_BIND, as `--bind` would: the saved value is not in effect, and
    // still must be one the next start without the override can use.
    let app = serve(&[]).await;
    for (value, words) in [
        ("127.0.0.1:99999", "there is no port 99999"),
        ("", "such as 127.0.0.1:8000"),
        ("nonsense", "such as 127.0.0.1:8000"),
        ("localhost:8000", "instead of the name \"localhost\""),
    ] {
        let (status, body) = put(&app, json!({ "bind": value })).await;
        assert_eq!(status, 400, "{value:?}: {body}");
        let error = only_error(&body);
        assert_eq!(error["code"], "invalid_value", "{body}");
        assert_eq!(error["key"], "bind", "{body}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("bind cannot be") && message.contains(words),
            "{value:?}: a sentence about the setting: {message}"
        );
        assert_plain(message);
    }
    assert!(
        !app.dir.path().join("kotodama.toml").exists(),
        "nothing was saved"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_port_another_program_holds_is_refused_and_the_apps_own_port_is_fine() {
    let app = serve(&[]).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let (status, body) = put(&app, json!({ "bind": taken_addr })).await;
    assert_eq!(status, 400, "{body}");
    let error = only_error(&body);
    assert_eq!(error["code"], "port_in_use", "{body}");
    assert_eq!(error["key"], "bind");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("already used by another program"),
        "{message}"
    );
    assert_plain(message);
    drop(taken);

    let own = app.base.trim_start_matches("http://").to_owned();
    let (status, body) = put(&app, json!({ "bind": own })).await;
    assert_eq!(
        status, 200,
        "the port this app holds will be free for it: {body}"
    );

    // Which value is in effect, and why.
    let view = view(&app).await;
    let bind = settings_entry(&view, "bind");
    assert_eq!(bind["value"], "127.0.0.1:0", "the override runs");
    assert_eq!(bind["saved"], own.as_str(), "the saved value is shown");
    let why = bind["inEffect"].as_str().unwrap();
    assert!(
        why.contains("KOTODAMA_BIND") && why.contains(&own) && why.contains("starts without it"),
        "the form says the override wins and when the saved value applies: {why}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_settings_file_that_is_not_toml_is_named_with_its_line() {
    let app = serve(&[]).await;
    let file = app.dir.path().join("kotodama.toml");
    std::fs::write(&file, "llm_model = \"ok\"\nstm_context_turns = = 5\n").unwrap();
    let (status, body) = put(&app, json!({ "system_prompt": "Hi." })).await;
    assert_eq!(status, 409, "{body}");
    let error = only_error(&body);
    assert_eq!(error["code"], "file_invalid");
    assert_eq!(error["key"], Value::Null, "the file, not a key");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("at line 2"),
        "names the file and the line: {message}"
    );
    assert_plain(message);
    assert_eq!(body["error"]["message"], message, "one sentence everywhere");
    let view = view(&app).await;
    assert_eq!(
        view["fileError"], message,
        "the form shows the same sentence"
    );

    // The same file at start-up: the same sentence, and the way back is offered.
    let flags = [("data_dir", app.dir.path().to_string_lossy().into_owned())];
    let error = koto_server::config::Config::load_with(None, &flags, |_: &str| None).unwrap_err();
    let problem = koto_server::recovery::StartProblem::from_config(&error, Some(file.as_path()));
    assert!(
        problem.message.contains("at line 2") && problem.can_reset && problem.can_restore,
        "start-up names the line and offers both ways back (a last-good copy exists): {problem:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_unwritable_settings_folder_is_a_sentence_and_the_app_keeps_its_settings() {
    let app = serve(&[]).await;
    let engine = app.server.as_ref().unwrap().engine.clone();
    let before = engine.profile().config.system_prompt.clone();
    // What a read-only folder does to the save (the tests run as root, whom chmod does not
    // stop): the atomic write's temporary file cannot be created.
    std::fs::create_dir(app.dir.path().join("kotodama.toml.tmp")).unwrap();
    let (status, body) = put(&app, json!({ "system_prompt": "You are Hana." })).await;
    assert_eq!(status, 409, "{body}");
    let error = only_error(&body);
    assert_eq!(error["code"], "file_unwritable");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&app.dir.path().display().to_string())
            && message.contains("Nothing changed")
            && message.contains("writable"),
        "says where, that nothing changed and what to do: {message}"
    );
    assert_plain(message);
    assert_eq!(
        engine.profile().config.system_prompt,
        before,
        "the running app keeps its settings"
    );
    let ready = app
        .client
        .get(format!("{}/ready", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200, "and keeps running");
    app.shutdown().await;
}

// --- the binary: a start that fails on its saved settings, and the ways back ----------------

fn kotodama(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kotodama"));
    command
        .env_remove("KOTODAMA_TOKEN")
        .env_remove("KOTODAMA_BIND")
        .env("RUST_LOG", "warn")
        .env("SYNC_TTS_STREAMING", "false")
        .env("KOTODAMA_DATA_DIR", dir);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `serve` with `args`, waits for its ready line, stops it with SIGTERM.
fn start_and_stop(dir: &std::path::Path, args: &[&str]) -> String {
    let mut child = kotodama(dir)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        line.starts_with("kotodama ready: "),
        "started: {line:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    line
}

fn failed_start(dir: &std::path::Path) -> String {
    let output = kotodama(dir).arg("serve").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "the start fails");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_start_that_fails_on_its_settings_names_file_and_key_and_both_ways_back_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kotodama.toml");
    let port = free_port();
    let good = format!("bind = \"127.0.0.1:{port}\"\nllm_model = \"good-model\"\n");
    std::fs::write(&file, &good).unwrap();
    let line = start_and_stop(dir.path(), &[]);
    assert!(
        line.contains(&format!("127.0.0.1:{port}/?token=")),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kotodama.toml.last-good")).unwrap(),
        good,
        "a successful start keeps its settings as the last working ones"
    );

    // Saved by hand (the API would refuse it): a port that does not exist.
    let broken = "bind = \"127.0.0.1:99999\"\nllm_model = \"good-model\"\n";
    std::fs::write(&file, broken).unwrap();
    let stderr = failed_start(dir.path());
    for words in [
        file.display().to_string().as_str(),
        "bind",
        "there is no port 99999",
        "--reset-settings",
        "--restore-settings",
    ] {
        assert!(stderr.contains(words), "names {words:?}: {stderr}");
    }
    assert!(
        !stderr.contains("KOTODAMA_BIND"),
        "it blames the file, not an env var nobody set: {stderr}"
    );
    assert_plain(stderr.lines().next().unwrap_or_default());

    start_and_stop(dir.path(), &["--restore-settings"]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        good,
        "the last working settings are back"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kotodama.toml.bad")).unwrap(),
        broken,
        "the ones that failed are kept, not lost"
    );

    // A port taken by another program, saved in the file: named, and "defaults" works.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    std::fs::write(&file, format!("bind = \"{taken_addr}\"\n")).unwrap();
    let stderr = failed_start(dir.path());
    assert!(
        stderr.contains("already in use")
            && stderr.contains(&file.display().to_string())
            && stderr.contains("--reset-settings"),
        "{stderr}"
    );
    start_and_stop(dir.path(), &["--reset-settings", "--bind", "127.0.0.1:0"]);
    assert!(!file.exists(), "the defaults: no settings file");
    drop(taken);
}

#[test]
fn a_bad_value_from_the_environment_is_blamed_on_it_without_a_useless_way_back() {
    let dir = tempfile::tempdir().unwrap();
    let output = kotodama(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("LLM_TEMPERATURE", "hot")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the environment variable LLM_TEMPERATURE")
            && stderr.contains("expected 0 to 2")
            && stderr.contains("unset"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("--reset-settings"),
        "setting the file aside would not help: {stderr}"
    );
}

#[test]
fn a_data_folder_kotodama_cannot_write_is_a_sentence_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // What a read-only folder does to the database (root ignores chmod): it cannot be opened.
    std::fs::create_dir(dir.path().join("kotodama.sqlite3")).unwrap();
    let output = kotodama(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open its database")
            && stderr.contains(&dir.path().display().to_string())
            && stderr.contains("Make the data folder writable"),
        "where, and what to do: {stderr}"
    );
}
