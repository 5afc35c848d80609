//! How many WebSockets may be open at once (`MAX_LIVE_CLIENTS` for `/ws/live`, `MAX_SOCKETS`
//! for the others): a slot is taken before the upgrade and given back when the socket's task
//! ends, so a flood of connections costs a counter, not a task and queues each.
//!
//! One past the limit is still upgraded, then closed with 1013 (Try Again Later) and a reason:
//! a browser's WebSocket cannot read an HTTP status, but it sees the close code and reason.
//! It decides nothing about who may connect (`security` does).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::response::Response;

/// The close code of a refused socket: RFC 6455's "Try Again Later".
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// A count of open sockets with its ceiling. Cheap to clone (shared count).
#[derive(Debug, Clone)]
pub struct SocketLimit {
    open: Arc<AtomicUsize>,
    max: usize,
    /// The config key, for the refusal's reason.
    key: &'static str,
}

/// One open socket's place; dropping it frees the place.
#[derive(Debug)]
pub struct SocketSlot {
    open: Arc<AtomicUsize>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SocketLimit {
    pub fn new(max: usize, key: &'static str) -> Self {
        SocketLimit {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            key,
        }
    }

    /// A slot, or `None` when `max` sockets are open.
    pub fn try_open(&self) -> Option<SocketSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| SocketSlot {
                open: Arc::clone(&self.open),
            })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Upgrades and closes at once with 1013 and why.
    pub fn refuse(&self, upgrade: WebSocketUpgrade) -> Response {
        let reason = format!(
            "too many sockets open ({} = {}); try again later",
            self.key, self.max
        );
        tracing::warn!(
            limit = self.key,
            max = self.max,
            "a WebSocket refused: the limit is reached"
        );
        upgrade.on_upgrade(move |mut socket| async move {
            let refusal = Message::Close(Some(CloseFrame {
                code: CLOSE_TRY_AGAIN_LATER,
                reason: reason.into(),
            }));
            let _ = socket.send(refusal).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back() {
        let limit = SocketLimit::new(2, "MAX_SOCKETS");
        let first = limit.try_open().expect("one free");
        let second = limit.try_open().expect("two free");
        assert!(limit.try_open().is_none(), "the third is over the limit");
        drop(first);
        assert_eq!(limit.open(), 1, "a closed socket gives its place back");
        let third = limit.try_open().expect("a place again");
        drop((second, third));
        assert_eq!(limit.open(), 0);
    }
}
