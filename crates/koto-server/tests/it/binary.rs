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
    assert!(
        line.starts_with("kotodama ready: http://127.0.0.1:"),
        "ready line: {line:?}"
    );
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    assert!(
        line.contains(token.trim()),
        "the ready line shows the access token"
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
