//! The `kotodama-desktop` binary: parses flags, starts the one tokio runtime and hands it to
//! Tauri, then runs the app (`kotodama_desktop::run`). Nothing else happens here.

// No console window on Windows release builds; logs still go to stderr when there is one.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kotodama_desktop::launch::{DesktopArgs, Launch};

fn main() -> ExitCode {
    let launch = Launch::from_args(DesktopArgs::parse());
    let log_format = match &launch.config {
        Ok(config) => config.log_format,
        Err(_) => koto_server::config::LogFormat::Text,
    };
    koto_server::logging::init(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kotodama")
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kotodama-desktop: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The server, the shell's tasks and Tauri's async commands all share this runtime.
    tauri::async_runtime::set(runtime.handle().clone());
    let code = kotodama_desktop::run(launch);
    // Quit already waited for every task; anything left (a stuck connection) is dropped here.
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
