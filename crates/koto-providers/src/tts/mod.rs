//! TTS providers: mock, espeak-ng, Piper, Edge read-aloud, OpenAI-compatible speech; the voice
//! per language they share (`voice_map`).
//!
//! Each implements `koto_core::tts::TtsProvider`: PCM blocks at the provider's own rate, streamed
//! as they are made; dropping the stream stops the work. Normalising to the stream rate is
//! `crate::audio`'s job, not theirs. The subprocess providers (espeak-ng, Piper) share the child
//! process guard below.

pub mod edge;
pub mod espeak;
pub mod mock;
pub mod openai;
pub mod piper;
pub mod voice;
pub mod voice_map;

use std::collections::VecDeque;
use std::process::ExitStatus;

use tokio::process::Child;

/// Owns a child process so that it cannot outlive its user: dropping the guard kills the child
/// (SIGKILL) and reaps it on the runtime (no zombie), and `kill_on_drop` on the `Command` covers
/// the case where no runtime is left to reap on (tokio's orphan queue then does it).
pub(crate) struct ChildGuard {
    /// `None` once the child has been waited for.
    child: Option<Child>,
}

impl ChildGuard {
    pub(crate) fn new(child: Child) -> Self {
        Self { child: Some(child) }
    }

    /// The pid while the child has not been reaped.
    pub(crate) fn id(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Waits for the child to exit (after it closed its output, normally) and reaps it.
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            return Err(std::io::Error::other("the child was already reaped"));
        };
        let status = child.wait().await?;
        self.child = None;
        Ok(status)
    }

    /// True if the child has exited (and it is then reaped).
    pub(crate) fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            None => true,
            Some(Ok(Some(_))) => {
                self.child = None;
                true
            }
            Some(Ok(None)) => false,
            Some(Err(_)) => true,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Err(error) = child.start_kill() {
            tracing::debug!(%error, "could not kill a child process (already gone?)");
        }
        // Reap at once rather than leave a zombie until tokio's orphan queue gets to it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
}

/// The last few KiB of a child's stderr, for error messages. Bounded: a chatty child cannot grow it.
#[derive(Debug, Default)]
pub(crate) struct StderrTail {
    bytes: VecDeque<u8>,
}

impl StderrTail {
    const CAPACITY: usize = 4 * 1024;

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let keep = bytes.len().min(Self::CAPACITY);
        self.bytes.extend(&bytes[bytes.len() - keep..]);
        let excess = self.bytes.len().saturating_sub(Self::CAPACITY);
        self.bytes.drain(..excess);
    }

    /// The tail as text, trimmed; `"(no stderr output)"` when empty.
    pub(crate) fn text(&self) -> String {
        let (front, back) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(self.bytes.len());
        all.extend_from_slice(front);
        all.extend_from_slice(back);
        let text = String::from_utf8_lossy(&all).trim().to_owned();
        if text.is_empty() {
            "(no stderr output)".to_owned()
        } else {
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_only_the_end() {
        let mut tail = StderrTail::default();
        assert_eq!(tail.text(), "(no stderr output)");
        tail.push(&vec![b'a'; 5000]);
        tail.push(b"\nError: the last words\n");
        let text = tail.text();
        assert!(text.ends_with("Error: the last words"), "the end survives");
        assert!(
            text.len() <= StderrTail::CAPACITY,
            "bounded: {} bytes",
            text.len()
        );
    }
}
