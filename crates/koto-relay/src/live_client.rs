//! A `/ws/live` subscriber's handle: it takes its frames out of its queue in the relay's state.
//!
//! Apart from `client.rs` (the frames and the registry, which the state holds) so that the
//! state depends on the registry and the handle on the state, never the other way round.

use std::fmt;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::client::{ClientFilter, Delivery, DisconnectReason, LiveFrame};
use crate::state::Inner;

/// A subscription to the relay's fan-out. Dropping it unsubscribes.
pub struct LiveClient {
    pub(crate) inner: Arc<Inner>,
    pub(crate) id: u64,
    pub(crate) wake: Arc<Notify>,
    pub(crate) filter: ClientFilter,
}

impl fmt::Debug for LiveClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveClient")
            .field("id", &self.id)
            .field("filter", &self.filter)
            .finish()
    }
}

impl LiveClient {
    /// The next frame, in fan-out order; `None` once the relay disconnected this client (see
    /// [`LiveClient::disconnect_reason`]). Cancel-safe: a frame is only taken when returned.
    pub async fn recv(&mut self) -> Option<LiveFrame> {
        loop {
            // The guard must be gone before waiting: bind the result first.
            let delivery = self.inner.lock().clients.pop(self.id);
            match delivery {
                Delivery::Frame(frame) => return Some(frame),
                Delivery::Closed => return None,
                // `notify_one` stores a permit, so a frame queued between the check above and
                // this wait still wakes us.
                Delivery::Empty => self.wake.notified().await,
            }
        }
    }

    /// The next frame if one is queued, without waiting. `Err` once disconnected.
    pub fn try_recv(&mut self) -> Result<Option<LiveFrame>, DisconnectReason> {
        let mut state = self.inner.lock();
        match state.clients.pop(self.id) {
            Delivery::Frame(frame) => Ok(Some(frame)),
            Delivery::Empty => Ok(None),
            Delivery::Closed => Err(state
                .clients
                .disconnect_reason(self.id)
                .unwrap_or(DisconnectReason::ShuttingDown)),
        }
    }

    /// Why the relay disconnected this client, if it did.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.inner.lock().clients.disconnect_reason(self.id)
    }

    pub fn filter(&self) -> &ClientFilter {
        &self.filter
    }
}

impl Drop for LiveClient {
    fn drop(&mut self) {
        self.inner.lock().clients.remove(self.id);
    }
}
