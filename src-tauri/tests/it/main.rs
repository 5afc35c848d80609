//! Integration tests of the desktop shell on Tauri's mock runtime (no display needed): the
//! commands over a real server on 127.0.0.1:0 with a real SQLite file in a temp dir, through
//! the app's real ACL (`kotodama_desktop::context`). The window itself is tested by
//! `tests/desktop/smoke.sh` under Xvfb.

#![allow(clippy::unwrap_used)]

mod commands;
mod harness;
mod playback;
mod settings;
