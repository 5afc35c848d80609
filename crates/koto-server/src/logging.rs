//! `tracing` set-up: `RUST_LOG` filter (default `info`), text or JSON lines. Turn spans carry
//! `correlationId`, so every line logged inside a turn shows it. Colour only on a terminal:
//! a log file or a pipe gets plain lines, and `NO_COLOR` (https://no-color.org) turns it off.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(use_colour(std::io::stderr().is_terminal(), no_color))
        .with_writer(std::io::stderr);
    // A second init (tests, the desktop shell re-using this) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
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
