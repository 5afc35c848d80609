//! The fuzz targets' bodies, shared by `fuzz_targets/*` (libFuzzer) and koto-server's corpus
//! replay test (`crates/koto-server/tests/it/fuzz_corpus.rs`), so CI runs every committed input
//! through the same checks without cargo-fuzz. Each `run` takes any bytes and panics only when
//! an invariant breaks (or the code under test panics). Not a place for fixes: those go in the
//! crates, with a regression test there.

pub mod audio;
pub mod chat;
pub mod config;
pub mod segmenter;
pub mod sse;
pub mod upload;
pub mod ws;

mod split;

/// A target's body: any bytes in, a panic when an invariant breaks.
pub type Check = fn(&[u8]);

/// Every target by its `fuzz/corpus/<name>` folder.
pub const TARGETS: &[(&str, Check)] = &[
    ("audio", audio::run),
    ("chat", chat::run),
    ("config", config::run),
    ("segmenter", segmenter::run),
    ("sse", sse::run),
    ("upload", upload::run),
    ("ws", ws::run),
];
