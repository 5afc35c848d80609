//! The glue between the relay and the player: subscribe like any `/ws/live` client and turn its
//! frames into player calls (SPEECH_CHUNK → push, STOP/STOP_ACK → stop, END → drain,
//! PAUSE/RESUME → hold/play on).
//!
//! The relay already paces audio and fences stopped turns; the player fences again on its own
//! side, so a STOP silences what the player has queued even though the relay can no longer
//! take it back. This task decides nothing about audio itself.

use koto_core::CorrelationId;
use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_relay::{ClientFilter, DisconnectReason, LiveFrame, Relay};
use tokio_util::sync::CancellationToken;

use crate::playback::Pushed;
use crate::player::Player;

/// Play what `relay` fans out to a client with `filter` (normally one session) on `player`,
/// until `shutdown` is cancelled or the relay shuts down; then the player is flushed. A slow
/// subscription the relay drops is renewed (after a flush: a STOP may have been missed).
pub async fn play_relay(
    relay: Relay,
    player: Player,
    filter: ClientFilter,
    shutdown: CancellationToken,
) {
    loop {
        let mut client = relay.subscribe(filter.clone());
        loop {
            let frame = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    player.flush();
                    return;
                }
                frame = client.recv() => frame,
            };
            match frame {
                Some(frame) => apply(&player, &frame),
                None => break,
            }
        }
        // The relay ended the subscription.
        player.flush();
        match client.disconnect_reason() {
            Some(DisconnectReason::TooSlow { dropped }) => {
                tracing::warn!(
                    dropped,
                    "local playback fell behind the relay; resubscribing"
                );
            }
            Some(DisconnectReason::ShuttingDown) | None => return,
        }
    }
}

/// One relay frame's effect on the player.
fn apply(player: &Player, frame: &LiveFrame) {
    match frame.frame() {
        RelayFrame::SpeechChunk(chunk) => {
            let Some(samples) = frame.samples() else {
                return;
            };
            let pushed = player.push(
                &chunk.session_id,
                chunk.turn,
                chunk.seq,
                chunk.sample_rate(),
                samples,
            );
            match pushed {
                Ok(Pushed::Queued) => {}
                Ok(dropped) => tracing::debug!(
                    correlationId = %CorrelationId::new(&chunk.session_id, chunk.turn),
                    seq = chunk.seq,
                    ?dropped,
                    "chunk not played"
                ),
                Err(error) => tracing::warn!(
                    correlationId = %CorrelationId::new(&chunk.session_id, chunk.turn),
                    %error,
                    "chunk refused"
                ),
            }
        }
        RelayFrame::Control(control) => {
            let session = &control.session_id;
            match (control.action, control.turn) {
                // Control beats data: silence first, the ACK only confirms the turn.
                (ControlAction::Stop, _) | (ControlAction::StopAck, None) => {
                    player.stop_session(session);
                }
                (ControlAction::StopAck, Some(turn)) => {
                    player.stop_turn(session, turn);
                }
                (ControlAction::End, Some(turn)) => player.end_turn(session, turn),
                (ControlAction::End, None) => {}
                (ControlAction::Pause, _) => player.set_paused(session, true),
                (ControlAction::Resume, _) => player.set_paused(session, false),
            }
        }
        RelayFrame::UserInput(_)
        | RelayFrame::TextDelta(_)
        | RelayFrame::ReasoningDelta(_)
        | RelayFrame::MicLevel(_)
        | RelayFrame::AsrPartial(_)
        | RelayFrame::VoiceDropped(_)
        | RelayFrame::ChatDecision(_)
        | RelayFrame::VetoPending(_) => {}
    }
}
