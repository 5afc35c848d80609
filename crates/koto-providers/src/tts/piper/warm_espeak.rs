//! One warm `espeak-ng` per voice that phonemizes clause after clause from its stdin.
//!
//! Starting the program costs ~15 ms a clause on Linux (more on Windows), and the first clause
//! of a turn waits for it; a clause written to a warm process comes back in ~1.5 ms. espeak-ng
//! reads its stdin a line at a time and prints each line's IPA at once, but a line may print
//! several lines of its own clauses, so each clause is followed by a *mark*: a made-up word whose
//! IPA is read once at start. The clause's IPA is everything before the mark's line. Two marks
//! take turns, so a reply out of step (the other mark first) is seen, and the process is dropped.
//!
//! Any failure — the program cannot start, prints nothing for a mark, times out, is out of step
//! — ends the warm process for good and the clause goes to a process of its own (the caller's
//! fallback), so a platform where this cannot work costs one failed start, not a turn.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The marks: made-up words no clause says (a clause that does goes to a process of its own).
const MARKS: [&str; 2] = ["zyquoxa", "zyquoxe"];

/// A clause takes ~1.5 ms; a machine that stalls longer than this gets the per-clause process.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// The warm process of one espeak-ng voice; cheap to clone (clones share it). The process is
/// owned by a task of its own that finishes every exchange it begins, so a caller dropped
/// mid-clause (a STOP) never leaves half an answer in the pipe for the next clause to read.
#[derive(Clone)]
pub(crate) struct WarmEspeak {
    program: PathBuf,
    voice: String,
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    /// Set for good once the warm process failed: every clause gets a process of its own.
    off: Arc<AtomicBool>,
}

/// A clause's line, and where its IPA goes (`None`: phonemize it another way).
type Request = (String, tokio::sync::oneshot::Sender<Option<String>>);

struct Process {
    /// Held so the process lives (and is killed on drop) with the handle.
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// The IPA line of each mark.
    marks: [String; 2],
    /// The mark the next clause is followed by.
    next: usize,
}

impl std::fmt::Debug for WarmEspeak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmEspeak")
            .field("program", &self.program)
            .field("voice", &self.voice)
            .field("off", &self.off.load(Ordering::Relaxed))
            .finish()
    }
}

impl WarmEspeak {
    /// The handle, and the task that will start the process at the first clause. Needs a
    /// tokio runtime; the task ends, killing the process, when every clone is dropped.
    pub(crate) fn new(program: &Path, voice: &str) -> Self {
        let (requests, queue) = tokio::sync::mpsc::unbounded_channel();
        let warm = WarmEspeak {
            program: program.to_path_buf(),
            voice: voice.to_owned(),
            requests,
            off: Arc::new(AtomicBool::new(false)),
        };
        tokio::spawn(warm.clone_for_task().serve(queue));
        warm
    }

    /// What the task needs: everything but a sender (which would keep its queue open forever).
    fn clone_for_task(&self) -> Server {
        Server {
            program: self.program.clone(),
            voice: self.voice.clone(),
            off: self.off.clone(),
        }
    }

    /// The IPA of `text` (one line per espeak-ng clause), or `None`: phonemize it another way.
    pub(crate) async fn ipa(&self, text: &str) -> Option<String> {
        if self.off.load(Ordering::Relaxed) {
            return None;
        }
        let line = text.replace(['\n', '\r'], " ");
        let lower = line.to_lowercase();
        if MARKS.iter().any(|mark| lower.contains(&mark[..6])) {
            return None;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests.send((line, reply)).ok()?;
        answer.await.ok().flatten()
    }

    #[cfg(test)]
    fn is_off(&self) -> bool {
        self.off.load(Ordering::Relaxed)
    }
}

/// The task that owns the process.
struct Server {
    program: PathBuf,
    voice: String,
    off: Arc<AtomicBool>,
}

impl Server {
    async fn serve(self, mut queue: tokio::sync::mpsc::UnboundedReceiver<Request>) {
        let mut process: Option<Process> = None;
        while let Some((line, reply)) = queue.recv().await {
            if self.off.load(Ordering::Relaxed) {
                let _ = reply.send(None);
                continue;
            }
            if process.is_none() {
                match tokio::time::timeout(EXCHANGE_TIMEOUT, self.start()).await {
                    Ok(Ok(started)) => process = Some(started),
                    Ok(Err(why)) => self.turn_off(&why),
                    Err(_) => self.turn_off("it did not answer its marks in time"),
                }
            }
            let Some(running) = &mut process else {
                let _ = reply.send(None);
                continue;
            };
            let answer = match tokio::time::timeout(EXCHANGE_TIMEOUT, running.exchange(&line)).await
            {
                Ok(Ok(ipa)) => Some(ipa),
                Ok(Err(why)) => {
                    self.turn_off(&why);
                    None
                }
                Err(_) => {
                    self.turn_off(&format!("no answer within {EXCHANGE_TIMEOUT:?}"));
                    None
                }
            };
            if answer.is_none() {
                process = None;
            }
            let _ = reply.send(answer);
        }
    }

    fn turn_off(&self, why: &str) {
        self.off.store(true, Ordering::Relaxed);
        tracing::warn!(
            program = %self.program.display(),
            voice = %self.voice,
            why,
            "the warm espeak-ng process is off: each clause starts its own (~15 ms more)"
        );
    }

    async fn start(&self) -> Result<Process, String> {
        let mut child = Command::new(&self.program)
            .args(["-q", "--ipa", "-v", &self.voice])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("cannot start it: {error}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("it has no pipes".into());
        };
        let mut process = Process {
            _child: child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            marks: [String::new(), String::new()],
            next: 0,
        };
        for (at, mark) in MARKS.iter().enumerate() {
            process.write(&format!("{mark}\n")).await?;
            let said = loop {
                match process.lines.next_line().await {
                    Ok(Some(said)) if said.trim().is_empty() => continue,
                    Ok(Some(said)) => break said.trim().to_owned(),
                    Ok(None) => return Err("it ended".into()),
                    Err(error) => return Err(format!("cannot read it: {error}")),
                }
            };
            process.marks[at] = said;
        }
        if process.marks[0] == process.marks[1] {
            return Err(format!("its marks sound the same ({:?})", process.marks[0]));
        }
        Ok(process)
    }
}

impl Process {
    async fn write(&mut self, text: &str) -> Result<(), String> {
        self.stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|error| format!("cannot write to it: {error}"))?;
        self.stdin
            .flush()
            .await
            .map_err(|error| format!("cannot write to it: {error}"))
    }

    /// One clause, then the next mark; what comes before the mark is the clause's.
    async fn exchange(&mut self, line: &str) -> Result<String, String> {
        let (mark, other) = (self.next, 1 - self.next);
        self.write(&format!("{line}\n{}\n", MARKS[mark])).await?;
        let mut ipa = String::new();
        loop {
            let said = match self.lines.next_line().await {
                Ok(Some(said)) => said,
                Ok(None) => return Err("it ended".into()),
                Err(error) => return Err(format!("cannot read it: {error}")),
            };
            let trimmed = said.trim();
            if trimmed == self.marks[mark] {
                self.next = other;
                return Ok(ipa);
            }
            if trimmed == self.marks[other] {
                return Err("its answers are out of step".into());
            }
            if !ipa.is_empty() {
                ipa.push('\n');
            }
            ipa.push_str(&said);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a process of its own prints for `text` (the path the warm one replaces).
    async fn alone(voice: &str, text: &str) -> String {
        let output = Command::new("espeak-ng")
            .args(["-q", "--ipa", "-v", voice, "--", text])
            .output()
            .await
            .expect("espeak-ng runs");
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned()
    }

    #[tokio::test]
    async fn the_warm_process_says_what_a_process_per_clause_says() {
        if Command::new("espeak-ng")
            .arg("--version")
            .output()
            .await
            .is_err()
        {
            println!("SKIP: espeak-ng is not installed (scripts/test.sh installs it)");
            return;
        }
        let cases = [
            ("en-us", "Welcome back"),
            ("en-us", "Dr. Smith is here"),
            ("en-us", "3.5 apples and a,b"),
            ("en-us", "😀"),
            ("en-us", "你好 hello"),
            ("en-us", "two\nlines"),
            ("cmn", "你好，欢迎回来"),
            ("ja", "こんにちは"),
        ];
        for voice in ["en-us", "cmn", "ja"] {
            let warm = WarmEspeak::new(Path::new("espeak-ng"), voice);
            for (_, text) in cases.iter().filter(|(v, _)| *v == voice) {
                let heard = warm.ipa(text).await.expect("the warm process answers");
                let expected = alone(voice, &text.replace('\n', " ")).await;
                assert_eq!(heard.trim_end(), expected, "{voice} {text:?}");
            }
            // Twice round the marks, still in step.
            for _ in 0..3 {
                assert_eq!(
                    warm.ipa("Welcome back").await.map(|ipa| ipa.is_empty()),
                    Some(false)
                );
            }
        }
        // Callers dropped mid-clause (a STOP) leave nothing behind for the next clause.
        let warm = WarmEspeak::new(Path::new("espeak-ng"), "en-us");
        for round in 0..5 {
            let dropped = format!("the dropped clause number {round}");
            let _ = tokio::time::timeout(Duration::from_micros(50), warm.ipa(&dropped)).await;
            let heard = warm.ipa("Welcome back").await;
            assert_eq!(
                heard.as_deref().map(str::trim_end),
                Some(alone("en-us", "Welcome back").await.as_str()),
                "round {round}: the next clause gets its own IPA"
            );
        }
        assert!(!warm.is_off(), "still warm");
        assert_eq!(
            warm.ipa("say ZYQUOXA twice").await,
            None,
            "a clause with a mark in it goes to a process of its own"
        );
        assert!(warm.ipa("and this is fine").await.is_some());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_program_that_cannot_be_warm_is_left_to_the_process_per_clause() {
        let dir = std::env::temp_dir().join(format!("kotodama-warm-espeak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            path
        };
        let cases = [
            ("ends", script("ends", "exit 0")),
            // Every line twice: the marks sound the same.
            (
                "echoes twice",
                script("twice", "while read l; do echo \"$l\"; echo \"$l\"; done"),
            ),
            ("missing", dir.join("not-there")),
            // Never answers: given up after the exchange's timeout.
            ("silent", script("silent", "exec sleep 30")),
        ];
        for (what, program) in cases {
            let warm = WarmEspeak::new(&program, "en-us");
            assert_eq!(warm.ipa("hello").await, None, "{what}");
            assert!(warm.is_off(), "{what}: off for good");
            assert_eq!(warm.ipa("hello").await, None, "{what}: and stays off");
        }
        // A program that answers in step is used (cat says each line back: its "IPA").
        let warm = WarmEspeak::new(&script("cat", "exec cat"), "en-us");
        assert_eq!(
            warm.ipa("hello there").await.as_deref(),
            Some("hello there")
        );
        assert_eq!(warm.ipa("again").await.as_deref(), Some("again"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
