//! Tauri's build step: embeds tauri.conf.json, the icons and the pages, and declares the app's
//! commands so that each needs an explicit permission (`allow-app-info`, `allow-stop-talking`);
//! without this manifest any local page could call every command.

/// Must list every command of `src/commands.rs` (a test there checks it).
const COMMANDS: &[&str] = &["app_info", "stop_talking"];

fn main() {
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    if let Err(error) =
        tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest))
    {
        panic!("tauri build step failed: {error:#}");
    }
}
