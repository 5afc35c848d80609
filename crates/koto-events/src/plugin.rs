//! In-process plugins: the consumers of `events.plugins` (turn finished, user input). A plugin's
//! side effects are its own, so they are at-least-once: an event is marked handled only after
//! every plugin returned `Ok`, and a failure retries the event for all plugins. Plugins that need
//! exactly-once dedupe by `PluginEvent::outbox_id`.

use std::future::Future;
use std::pin::Pin;

use koto_protocol::events::{TurnFinished, UserInput, event_type};

/// An event as plugins see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginEvent {
    /// Unique and increasing per database: the idempotency key.
    pub outbox_id: i64,
    /// `sessionId#turn`.
    pub correlation_id: String,
    pub body: PluginBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PluginBody {
    TurnCompleted(TurnFinished),
    TurnInterrupted(TurnFinished),
    TurnFailed(TurnFinished),
    UserInput(UserInput),
}

/// A plugin's failure: the event is retried, then dead-lettered after `DLQ_AFTER_ATTEMPTS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

pub type PluginFuture = Pin<Box<dyn Future<Output = Result<(), PluginError>> + Send + 'static>>;

pub trait Plugin: Send + Sync + 'static {
    /// For logs and dead letters.
    fn name(&self) -> &str;
    fn handle(&self, event: PluginEvent) -> PluginFuture;
}

/// Why a row of `events.plugins` is not a plugin event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PluginParse {
    /// A type plugins do not receive (skipped and counted as ignored).
    OtherType,
    /// The payload does not have the type's shape.
    Invalid(String),
}

pub(crate) fn parse_plugin_event(
    outbox_id: i64,
    event_type_name: &str,
    correlation_id: &str,
    payload: &str,
) -> Result<PluginEvent, PluginParse> {
    let finished = |payload: &str| {
        serde_json::from_str::<TurnFinished>(payload)
            .map_err(|error| PluginParse::Invalid(error.to_string()))
    };
    let body = match event_type_name {
        event_type::TURN_COMPLETED => PluginBody::TurnCompleted(finished(payload)?),
        event_type::TURN_INTERRUPTED => PluginBody::TurnInterrupted(finished(payload)?),
        event_type::TURN_FAILED => PluginBody::TurnFailed(finished(payload)?),
        event_type::USER_INPUT => PluginBody::UserInput(
            serde_json::from_str(payload)
                .map_err(|error| PluginParse::Invalid(error.to_string()))?,
        ),
        _ => return Err(PluginParse::OtherType),
    };
    Ok(PluginEvent {
        outbox_id,
        correlation_id: correlation_id.to_owned(),
        body,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plugin_events_parse_by_type() {
        let input = r#"{"correlationId":"s#1","sessionId":"s","turn":1,"kind":"TEXT","content":"hi","ts":5}"#;
        let event = parse_plugin_event(7, event_type::USER_INPUT, "s#1", input).unwrap();
        assert!(
            matches!(event.body, PluginBody::UserInput(ref user) if user.content == "hi"),
            "UserInput parses"
        );
        assert_eq!(event.outbox_id, 7, "the outbox id is the idempotency key");
        let finished = r#"{"correlationId":"s#1","sessionId":"s","turn":1,"input":"q","reply":"half","interrupted":true,"ts":5}"#;
        assert!(
            matches!(
                parse_plugin_event(8, event_type::TURN_INTERRUPTED, "s#1", finished).unwrap().body,
                PluginBody::TurnInterrupted(ref turn) if turn.reply == "half"
            ),
            "TurnInterrupted carries what was heard"
        );
        assert_eq!(
            parse_plugin_event(9, "SomethingNew", "s#1", "{}"),
            Err(PluginParse::OtherType),
            "unknown types are not plugin events (skipped, not dead-lettered)"
        );
        assert!(
            matches!(
                parse_plugin_event(10, event_type::TURN_COMPLETED, "s#1", "{"),
                Err(PluginParse::Invalid(_))
            ),
            "a broken payload is invalid (dead-lettered)"
        );
    }
}
