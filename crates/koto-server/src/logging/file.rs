//! The log file: `kotodama.log` in the log folder, rotated by size and bounded in count, so a
//! stream that runs for days keeps its last ~40 MB of logs and never fills the disk.
//!
//! Lines logged before the folder is known (config loading, the first start-up lines) are
//! kept in memory (up to 256 KB) and written first when the file opens.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const FILE_NAME: &str = "kotodama.log";
/// One file's size before it is rotated.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Rotated files kept beside the current one (`kotodama.1.log` is the newest of them).
pub const KEPT_FILES: usize = 4;
const EARLY_LINES_MAX_BYTES: usize = 256 * 1024;

/// A size-rotated file set.
pub struct RotatingFile {
    dir: PathBuf,
    /// `None` only inside `rotate`, between closing the old file and opening the new one.
    file: Option<File>,
    written: u64,
    max_bytes: u64,
    kept: usize,
}

impl RotatingFile {
    pub fn open(dir: &Path, max_bytes: u64, kept: usize) -> io::Result<RotatingFile> {
        std::fs::create_dir_all(dir)?;
        let file = Self::append_to(&dir.join(FILE_NAME))?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            dir: dir.to_owned(),
            file: Some(file),
            written,
            max_bytes,
            kept,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn rotated(&self, n: usize) -> PathBuf {
        self.dir.join(format!("kotodama.{n}.log"))
    }

    /// Writes one whole line (or a batch of them): a line is never split across two files.
    pub fn write_line(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.written > 0 && self.written + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            // An earlier rotation failed half-way: try the file again.
            self.file = Some(Self::append_to(&self.path())?);
        }
        if let Some(file) = &mut self.file {
            file.write_all(bytes)?;
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn append_to(path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn rotate(&mut self) -> io::Result<()> {
        // Closed before the rename: Windows renames an open file only if every handle to it
        // allows it.
        drop(self.file.take());
        if self.kept == 0 {
            std::fs::remove_file(self.path())?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.kept));
            for n in (1..self.kept).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(self.path(), self.rotated(1))?;
        }
        self.file = Some(Self::append_to(&self.path())?);
        self.written = 0;
        Ok(())
    }
}

enum State {
    /// No folder yet: lines wait here (bounded; the rest are counted, not kept).
    Early {
        lines: Vec<u8>,
        dropped: usize,
    },
    Open(RotatingFile),
    /// The folder could not be used: logs go to stdout/stderr only.
    Off,
}

/// The file sink behind the `tracing` layer: one mutex, held for one write.
pub struct FileSink {
    state: Mutex<State>,
}

impl Default for FileSink {
    fn default() -> Self {
        FileSink {
            state: Mutex::new(State::Early {
                lines: Vec::new(),
                dropped: 0,
            }),
        }
    }
}

impl FileSink {
    /// Opens the file set in `dir` and writes the lines kept so far into it. Called again (the
    /// desktop restarting its server with another `log_dir`), it moves to the new folder; with
    /// the same folder it keeps its file.
    pub fn open(&self, dir: &Path) -> io::Result<PathBuf> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let State::Open(file) = &*state
            && file.dir == dir
        {
            return Ok(file.path());
        }
        let result = RotatingFile::open(dir, MAX_FILE_BYTES, KEPT_FILES).and_then(|mut file| {
            if let State::Early { lines, dropped } = &*state {
                file.write_line(lines)?;
                if *dropped > 0 {
                    let note = format!("({dropped} earlier log lines did not fit in memory)\n");
                    file.write_line(note.as_bytes())?;
                }
            }
            Ok(file)
        });
        match result {
            Ok(file) => {
                let path = file.path();
                *state = State::Open(file);
                Ok(path)
            }
            Err(error) => {
                *state = State::Off;
                Err(error)
            }
        }
    }

    pub fn path(&self) -> Option<PathBuf> {
        match &*self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
        {
            State::Open(file) => Some(file.path()),
            _ => None,
        }
    }

    pub fn write_line(&self, bytes: &[u8]) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match &mut *state {
            State::Early { lines, dropped } => {
                if lines.len() + bytes.len() <= EARLY_LINES_MAX_BYTES {
                    lines.extend_from_slice(bytes);
                } else {
                    *dropped += 1;
                }
            }
            // A full disk must not take the stream down: the line still went to stderr.
            State::Open(file) => {
                let _ = file.write_line(bytes);
            }
            State::Off => {}
        }
    }
}

/// `tracing_subscriber`'s writer for one event: the formatter writes a whole line, then drops
/// it, which hands the line to the sink in one piece.
pub struct LineWriter<'a> {
    sink: &'a FileSink,
    line: Vec<u8>,
}

impl<'a> LineWriter<'a> {
    pub fn new(sink: &'a FileSink) -> Self {
        LineWriter {
            sink,
            line: Vec::with_capacity(256),
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.sink.write_line(&self.line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("test setup")
            .map(|entry| {
                entry
                    .expect("test setup")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_rotate_by_size_and_their_count_is_bounded() {
        let dir = tempfile::tempdir().expect("test setup");
        let mut file = RotatingFile::open(dir.path(), 100, 2).expect("test setup");
        for n in 0..40 {
            file.write_line(format!("line {n:02} of forty...\n").as_bytes())
                .expect("test setup");
        }
        assert_eq!(
            names(dir.path()),
            ["kotodama.1.log", "kotodama.2.log", "kotodama.log"],
            "two rotated files and the current one, no more"
        );
        for name in names(dir.path()) {
            let text = std::fs::read_to_string(dir.path().join(&name)).expect("test setup");
            assert!(text.len() <= 100, "{name}: {} bytes", text.len());
            assert!(
                text.lines().all(|line| line.starts_with("line ")),
                "whole lines: {text:?}"
            );
        }
        let newest = std::fs::read_to_string(dir.path().join(FILE_NAME)).expect("test setup");
        assert!(newest.ends_with("line 39 of forty...\n"), "{newest:?}");
        let older = std::fs::read_to_string(dir.path().join("kotodama.1.log")).expect("test setup");
        let last_older: u32 = older.lines().last().expect("test setup")[5..7]
            .parse()
            .expect("test setup");
        let first_newest: u32 = newest.lines().next().expect("test setup")[5..7]
            .parse()
            .expect("test setup");
        assert_eq!(last_older + 1, first_newest, "nothing lost between files");
    }

    #[test]
    fn a_reopened_file_appends_and_counts_what_it_held() {
        let dir = tempfile::tempdir().expect("test setup");
        std::fs::write(dir.path().join(FILE_NAME), "x".repeat(90)).expect("test setup");
        let mut file = RotatingFile::open(dir.path(), 100, 1).expect("test setup");
        file.write_line(b"0123456789abcdef\n").expect("test setup");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kotodama.1.log")).expect("test setup"),
            "x".repeat(90),
            "the earlier run's file was rotated, not overwritten"
        );
    }

    #[test]
    fn early_lines_wait_for_the_folder_then_come_first() {
        let dir = tempfile::tempdir().expect("test setup");
        let sink = FileSink::default();
        {
            let mut writer = LineWriter::new(&sink);
            writer.write_all(b"before the folder").expect("test setup");
            writer.write_all(b" was known\n").expect("test setup");
        }
        assert_eq!(sink.path(), None);
        let path = sink.open(&dir.path().join("logs")).expect("test setup");
        LineWriter::new(&sink)
            .write_all(b"after\n")
            .expect("test setup");
        assert_eq!(
            std::fs::read_to_string(path).expect("test setup"),
            "before the folder was known\nafter\n"
        );
    }

    #[test]
    fn a_folder_that_cannot_be_made_turns_the_file_off_without_failing_writes() {
        let dir = tempfile::tempdir().expect("test setup");
        let blocker = dir.path().join("not-a-folder");
        std::fs::write(&blocker, "").expect("test setup");
        let sink = FileSink::default();
        assert!(sink.open(&blocker.join("logs")).is_err());
        LineWriter::new(&sink)
            .write_all(b"still fine\n")
            .expect("test setup");
        assert_eq!(sink.path(), None);
    }
}
