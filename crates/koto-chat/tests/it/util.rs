//! Helpers shared by the adapter tests: bounded waits on adapter health and on events.

use std::time::Duration;

use koto_chat::{AdapterStatus, ChatAdapters};
use koto_core::chat::{AdapterHealth, ChatEvent};
use tokio::sync::mpsc;

/// Wait (bounded) until adapter `index` reports a health matching `want`.
pub async fn until_health(
    adapters: &ChatAdapters,
    index: usize,
    want: impl Fn(&AdapterHealth) -> bool,
) -> AdapterStatus {
    let mut changes = adapters.changes();
    let waited = tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            if let Some(status) = adapters.statuses().get(index).filter(|s| want(&s.health)) {
                return status.clone();
            }
            if changes.changed().await.is_err() {
                // The adapters are gone; report what they last said.
                if let Some(status) = adapters.statuses().get(index) {
                    return status.clone();
                }
            }
        }
    })
    .await;
    match waited {
        Ok(status) => status,
        Err(_) => panic!(
            "adapter {index} never reached the wanted health; statuses: {:?}",
            adapters.statuses()
        ),
    }
}

/// The next event (bounded wait).
pub async fn next_event(rx: &mut mpsc::Receiver<ChatEvent>) -> ChatEvent {
    match tokio::time::timeout(Duration::from_secs(600), rx.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the event channel closed"),
        Err(_) => panic!("no event arrived"),
    }
}
