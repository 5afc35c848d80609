//! Tauri's build step: embeds tauri.conf.json, the icons and the pages, and declares the app's
//! commands so that each needs an explicit permission (`allow-app-info`, `allow-stop-talking`);
//! without this manifest any local page could call every command.
//!
//! The app has no capability files: its one capability is built at start-up for the exact port
//! (`window::panel_capability`). Left to itself tauri-build then watches a `capabilities/`
//! directory that does not exist, and cargo treats a missing watched path as changed on every
//! build: the crate was rebuilt (minutes) on every `scripts/run.sh`. So the pattern is given
//! here and the directory is watched only once it exists.

/// Must list every command of `src/commands.rs` (a test there checks it).
const COMMANDS: &[&str] = &["app_info", "stop_talking"];

/// Where capability files would live (none today; see above).
const CAPABILITIES: &str = "capabilities";

fn main() {
    if std::path::Path::new(CAPABILITIES).exists() {
        println!("cargo:rerun-if-changed={CAPABILITIES}");
    }
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    let attributes = tauri_build::Attributes::new()
        .app_manifest(manifest)
        .capabilities_path_pattern("./capabilities/**/*");
    if let Err(error) = tauri_build::try_build(attributes) {
        panic!("tauri build step failed: {error:#}");
    }
}
