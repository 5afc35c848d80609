//! `tracing` set-up: `RUST_LOG` filter (default `info`), text or JSON lines, to stderr *and*
//! to a rotating file in the log folder (`file.rs`; a Windows GUI app has no console, so the file
//! is where its logs are), and the last warnings and errors in memory for diagnostics
//! (`recent.rs`). Turn spans carry `correlationId`, so every line logged inside a turn shows it.
//! Colour only on a terminal: a log file or a pipe gets plain lines, and `NO_COLOR`
//! (https://no-color.org) turns it off.

mod file;
mod recent;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;
pub use file::{FILE_NAME, KEPT_FILES, MAX_FILE_BYTES};
pub use recent::Problem;

static LOG_FILE: LazyLock<file::FileSink> = LazyLock::new(file::FileSink::default);
static PROBLEMS: LazyLock<recent::RecentProblems> = LazyLock::new(Default::default);

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the process's subscriber. Lines go to the file only once [`open_file`] names its
/// folder (they wait in memory until then).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(use_colour(std::io::stderr().is_terminal(), no_color))
        .with_writer(std::io::stderr);
    let to_file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| file::LineWriter::new(&LOG_FILE));
    let mut layers: Vec<BoxedLayer> = match format {
        LogFormat::Text => vec![stderr.boxed(), to_file.boxed()],
        LogFormat::Json => vec![
            stderr
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .boxed(),
            to_file
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .boxed(),
        ],
    };
    layers.push(recent::ProblemsLayer(&PROBLEMS).boxed());
    // A second init (tests, the desktop shell re-using this) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
}

/// Starts writing `kotodama.log` in `dir` (created if missing), after the lines logged so far;
/// returns the file's path. A call with another folder moves the file there.
pub fn open_file(dir: &Path) -> std::io::Result<PathBuf> {
    LOG_FILE.open(dir)
}

/// The log file being written, if any.
pub fn file_path() -> Option<PathBuf> {
    LOG_FILE.path()
}

/// The last warnings and errors, oldest first (at most 50).
pub fn recent_problems() -> Vec<Problem> {
    PROBLEMS.snapshot()
}

fn use_colour(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, false));
        assert!(!use_colour(false, false), "a file or pipe gets plain lines");
        assert!(!use_colour(true, true), "NO_COLOR wins on a terminal too");
    }
}
