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

/// `serve` with `path` as its whole `PATH`, at info level; returns the child, its base URL and
/// token.
#[cfg(target_os = "linux")]
fn serve_with_path(
    dir: &std::path::Path,
    path: &std::ffi::OsStr,
    env: &[(&str, &str)],
) -> (std::process::Child, String, String) {
    let mut command = kotodama();
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .env("PATH", path)
        .env("SYNC_TTS_STREAMING", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let panel = line.split_whitespace().nth(2).expect("a ready line");
    let url = panel.split("/?").next().unwrap().to_owned();
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    (child, url, token.trim().to_owned())
}

#[cfg(target_os = "linux")]
fn request(method: reqwest::Method, url: &str, token: &str) -> (u16, serde_json::Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    })
}

#[cfg(target_os = "linux")]
#[test]
fn serve_keeps_a_log_file_and_hands_out_diagnostics_without_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A data dir with a space and non-ASCII characters, as in `C:\Users\配信者\…`.
    let data = dir.path().join("配信者 data");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = dir.path().join("opened");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths([bin.as_path(), "/usr/bin".as_ref(), "/bin".as_ref()]).unwrap();
    let (mut child, url, token) = serve_with_path(
        &data,
        &path,
        &[
            ("OPENAI_API_KEY", "sk-secret-123"),
            ("REDIS_URL", "redis://:hunter2@127.0.0.1:9/0"),
        ],
    );
    let logs = data.join("logs");

    let (status, report) = request(reqwest::Method::GET, &format!("{url}/diagnostics"), &token);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["kotodama"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["os"], "linux");
    assert_eq!(
        report["logFile"],
        logs.join("kotodama.log").to_str().unwrap(),
        "a data dir given on the command line keeps its logs beside it"
    );
    assert_eq!(report["health"]["status"], "ok", "{report}");
    assert!(report["recentProblems"].is_array(), "{report}");
    let changed = &report["changedSettings"];
    assert_eq!(changed["openai_api_key"], "(set)", "{changed}");
    assert_eq!(
        changed["redis_url"], "redis://***@127.0.0.1:9/0",
        "{changed}"
    );
    let text = report.to_string();
    assert!(
        !text.contains("sk-secret-123") && !text.contains("hunter2") && !text.contains(&token),
        "no secret in a bug report: {text}"
    );

    let (status, answer) = request(
        reqwest::Method::POST,
        &format!("{url}/diagnostics/open-logs"),
        &token,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["folder"], logs.to_str().unwrap());
    let mut asked = String::new();
    for _ in 0..200 {
        asked = std::fs::read_to_string(&opened).unwrap_or_default();
        if !asked.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        asked,
        logs.to_str().unwrap(),
        "the file manager got the log folder"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let written = std::fs::read_to_string(logs.join("kotodama.log")).unwrap();
    assert!(
        written.contains("logging to a file") && written.contains("shutting down"),
        "the run's lines, start to end, are in the file: {written}"
    );
    assert!(!written.contains("\x1b["), "plain text: {written:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn without_a_file_manager_open_logs_says_where_the_logs_are() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let data = dir.path().join("data");
    let (mut child, url, token) = serve_with_path(&data, empty.as_os_str(), &[]);
    let (status, answer) = request(
        reqwest::Method::POST,
        &format!("{url}/diagnostics/open-logs"),
        &token,
    );
    assert_eq!(status, 503, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("xdg-open") && message.contains(data.join("logs").to_str().unwrap()),
        "names the missing program and the folder: {message}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
