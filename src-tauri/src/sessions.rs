//! Which sessions "Stop talking" (tray, hotkey) should stop: the sessions most recently seen on
//! the relay's fan-out. It only watches; it never stops anything itself and never touches audio.
//!
//! Why watch the relay: the engine keeps its sessions private, and every turn announces itself on
//! the relay (`UserInput`, text deltas, speech), whichever route started it (HTTP, WebSocket, a
//! remote producer on `/ws/ingest`). A STOP for a session that is idle is harmless (the engine
//! answers STOP_ACK with no turn), so stopping a few recent idle sessions costs a round trip each.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use koto_core::SessionId;
use koto_relay::{ClientFilter, DisconnectReason, Relay};
use tokio_util::sync::CancellationToken;

/// How many sessions are remembered; a live show has one or two.
pub const RECENT_SESSIONS: usize = 16;

/// The sessions seen last, most recent first, at most [`RECENT_SESSIONS`]. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RecentSessions {
    /// Written by the `follow_relay` task only; read by stop requests.
    list: Arc<Mutex<VecDeque<SessionId>>>,
}

impl RecentSessions {
    pub fn record(&self, session: &SessionId) {
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        if list.front() == Some(session) {
            // The common case (every chunk of a turn): nothing to reorder.
            return;
        }
        list.retain(|known| known != session);
        list.push_front(session.clone());
        list.truncate(RECENT_SESSIONS);
    }

    pub fn snapshot(&self) -> Vec<SessionId> {
        let list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.iter().cloned().collect()
    }
}

/// Records the session of every frame the relay fans out, until `shutdown` or the relay shuts
/// down. A subscription the relay drops as too slow is renewed.
pub async fn follow_relay(relay: Relay, recent: RecentSessions, shutdown: CancellationToken) {
    // No audio: only the session ids matter, and PCM would make this client the slowest one.
    let filter = ClientFilter {
        session: None,
        audio: false,
        binary_audio: false,
        ..ClientFilter::default()
    };
    loop {
        let mut client = relay.subscribe(filter.clone());
        loop {
            let frame = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                frame = client.recv() => frame,
            };
            match frame {
                Some(frame) => recent.record(frame.frame().session_id()),
                None => break,
            }
        }
        match client.disconnect_reason() {
            Some(DisconnectReason::TooSlow { dropped }) => {
                tracing::warn!(
                    dropped,
                    "session watcher fell behind the relay; resubscribing"
                );
            }
            Some(DisconnectReason::ShuttingDown) | None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> SessionId {
        SessionId::parse(raw).expect("valid session id")
    }

    #[test]
    fn most_recent_first_without_duplicates() {
        let recent = RecentSessions::default();
        for raw in ["a", "b", "a", "c", "c"] {
            recent.record(&id(raw));
        }
        assert_eq!(
            recent.snapshot(),
            vec![id("c"), id("a"), id("b")],
            "a session seen again moves to the front and is listed once"
        );
    }

    #[test]
    fn bounded() {
        let recent = RecentSessions::default();
        for n in 0..(RECENT_SESSIONS + 5) {
            recent.record(&id(&format!("s{n}")));
        }
        let seen = recent.snapshot();
        assert_eq!(
            seen.len(),
            RECENT_SESSIONS,
            "old sessions are forgotten, so a STOP stays a few round trips"
        );
        assert_eq!(
            seen.first(),
            Some(&id(&format!("s{}", RECENT_SESSIONS + 4))),
            "the newest is kept"
        );
    }
}
