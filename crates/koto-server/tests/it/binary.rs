//! The `kotodama` binary: ready line, clean shutdown on SIGTERM, clear start-up errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn kotodama() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kotodama"));
    command.env_remove("KOTODAMA_TOKEN").env("RUST_LOG", "warn");
    command
}

#[test]
fn serve_prints_a_ready_line_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = kotodama()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    // The README's example, with this run's port and token.
    let readme = include_str!("../../../../README.md");
    let documented = readme
        .lines()
        .find(|l| l.starts_with("kotodama ready: "))
        .expect("the README shows the ready line");
    let expected = documented
        .replace("8000", &port)
        .replace("3f9c…", token.trim());
    assert_eq!(
        line.trim_end(),
        expected,
        "the ready line is the README's, with the clickable panel URL and its token"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM is a clean shutdown, exit 0: {status:?}"
    );
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = kotodama()
        .args(["serve", "--bind", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "cannot serve on a busy port");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already in use") && stderr.contains(&addr),
        "names the problem: {stderr}"
    );
}

#[test]
fn invalid_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kotodama.toml");
    std::fs::write(&config, "stm_context_turns = \"lots\"\n").unwrap();
    let output = kotodama()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("stm_context_turns"),
        "names the key: {stderr}"
    );
    let output = kotodama()
        .args(["serve"])
        .env("LLM_PROVIDER", "gpt")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("LLM_PROVIDER"),
        "names the env var"
    );
}

#[test]
fn json_logs_carry_the_correlation_id_on_every_turn_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = kotodama()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env("KOTODAMA_LOG_FORMAT", "json")
        .env("SYNC_TTS_STREAMING", "false")
        .env("MOCK_LLM_TOKEN_MS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let panel = line.split_whitespace().nth(2).unwrap();
    let url = panel.split("/?").next().unwrap().to_owned();
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let body = serde_json::json!({"sessionId":"logged","content":"hi"});
        let response = reqwest::Client::new()
            .post(format!("{url}/chat/stream"))
            .bearer_auth(token.trim())
            .json(&body)
            .send()
            .await
            .unwrap();
        response.text().await.unwrap();
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    let turn_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("turn started") || l.contains("turn ended"))
        .collect();
    assert_eq!(turn_lines.len(), 2, "a start and an end line: {logs}");
    for line in turn_lines {
        let value: serde_json::Value = serde_json::from_str(line).expect("JSON log lines");
        assert_eq!(
            value["span"]["correlationId"], "logged#0",
            "the turn's lines carry sessionId#turn: {line}"
        );
    }
}

#[test]
fn log_lines_written_to_a_file_are_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("kotodama.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = kotodama()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env("SYNC_TTS_STREAMING", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("kotodama ready"), "ready line: {line:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("INFO") && logs.contains("shutting down"),
        "the file holds the run's info lines: {logs}"
    );
    assert!(
        !logs.contains("\x1b["),
        "no ANSI colour codes when stderr is not a terminal: {logs:?}"
    );
}
