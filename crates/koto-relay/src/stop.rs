//! The answer to a STOP. The STOP itself takes effect synchronously in `Relay::begin_stop`; this
//! module only carries the outcome back, and dropping it changes nothing.

use std::time::Duration;

use koto_core::TurnNo;
use tokio::sync::oneshot;

/// How the relay's STOP ended (the engine's `StopOutcome` says which turns it cancelled). In
/// every case the session's audio is fenced and clients got STOP_ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopResolution {
    /// The session's producer answered STOP_ACK (for `turn`, or for "nothing running" when
    /// `None`) after `latency`.
    Acked {
        turn: Option<TurnNo>,
        latency: Duration,
    },
    /// No STOP_ACK within `stop_ack_timeout`: the relay fenced every turn it had seen
    /// (up to `fence`) by itself.
    TimedOut { fence: Option<TurnNo> },
    /// No producer could take the STOP (none attached, or the owner detached while stopping):
    /// the relay fenced every turn it had seen (up to `fence`) by itself.
    NoProducer { fence: Option<TurnNo> },
    /// The relay shut down before the STOP was answered.
    ShuttingDown,
}

/// A STOP in flight. Await [`PendingStop::outcome`] for the answer, or drop it: the STOP's
/// effect (fence, routing, timeout) does not depend on anyone waiting.
#[derive(Debug)]
pub struct PendingStop {
    answer: Answer,
}

#[derive(Debug)]
enum Answer {
    Ready(StopResolution),
    Waiting(oneshot::Receiver<StopResolution>),
}

impl PendingStop {
    pub(crate) fn ready(outcome: StopResolution) -> Self {
        PendingStop {
            answer: Answer::Ready(outcome),
        }
    }

    pub(crate) fn waiting(receiver: oneshot::Receiver<StopResolution>) -> Self {
        PendingStop {
            answer: Answer::Waiting(receiver),
        }
    }

    /// The outcome; at most `stop_ack_timeout` away (the relay's pacer resolves it).
    pub async fn outcome(self) -> StopResolution {
        match self.answer {
            Answer::Ready(outcome) => outcome,
            // The sender is only dropped without an answer when the relay goes away.
            Answer::Waiting(receiver) => receiver.await.unwrap_or(StopResolution::ShuttingDown),
        }
    }
}
