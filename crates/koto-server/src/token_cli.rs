//! `kotodama token rotate [--data-dir D]`: a new access token in `<data_dir>/token`, written
//! atomically and owner-only. A running server that reads that file takes the new token on its
//! next request (`security` re-reads it); one whose token is set by `KOTODAMA_TOKEN` does not.
//! It does not touch a running server otherwise, and never prints the token itself.

use std::path::PathBuf;

use clap::Subcommand;
use koto_server::config::Config;

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Replace the token with a new random one (old panel and overlay URLs stop working).
    Rotate {
        /// Where the token lives (KOTODAMA_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Rotate { data_dir } => rotate(data_dir),
    }
}

fn rotate(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let flags: Vec<(&'static str, String)> = data_dir
        .map(|dir| ("data_dir", dir.to_string_lossy().into_owned()))
        .into_iter()
        .collect();
    let env = |name: &str| std::env::var(name).ok();
    // The data dir as `serve` finds it: flag, env, config file, the platform's default.
    let Some(dir) = Config::settings_file_for(None, &flags, env)
        .as_deref()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
    else {
        anyhow::bail!("the data folder cannot be found: pass --data-dir or set KOTODAMA_DATA_DIR");
    };
    let path = koto_server::security::rotate_token(&dir).map_err(|error| {
        anyhow::anyhow!("cannot write a new token in {}: {error}", dir.display())
    })?;
    println!("kotodama: a new token is in {}", path.display());
    println!(
        "  A running Kotodama using this folder accepts only the new token from its next request;"
    );
    println!(
        "  reopen the panel and update the OBS overlay URL (copy them from the panel or the ready line)."
    );
    if std::env::var_os("KOTODAMA_TOKEN").is_some() {
        println!(
            "  Note: KOTODAMA_TOKEN is set here; a server started with it keeps that token and ignores the file."
        );
    }
    Ok(())
}
