//! Producers: the in-process engine or one `/ws/ingest` connection, sending §2 frames.
//!
//! Validates and admits frames (seq, fences, PCM shape, backpressure). It does not parse JSON
//! (`socket`) and does not decide when audio leaves (`session`'s pacer).

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use koto_core::{SessionId, TurnNo};
use koto_protocol::ErrorCode;
use koto_protocol::ingest::{Control, ControlAction, RelayFrame, SpeechChunk};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::client::LiveFrame;
use crate::session::{IngestTurn, Queued, stop_ack};
use crate::state::{Inner, State, session_entry};
use crate::stop::StopResolution;

/// Sample rates a SPEECH_CHUNK may declare.
const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// What became of an accepted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Queued for paced release (SPEECH_CHUNK; END behind its turn's last chunk).
    Queued,
    /// Sent to clients at once (USER_INPUT, TEXT_DELTA, STOP_ACK, END of a drained turn).
    Forwarded,
    /// Dropped by a fence: the session is stopping, or the turn was stopped. Not an error — a
    /// producer racing a STOP is normal; it will get (or got) the STOP and should ACK it.
    Fenced,
}

/// A frame the relay refused. It was not relayed; the producer may go on sending.
///
/// Seq policy: a duplicate (`seq` below the expected one) is dropped and changes nothing; a
/// gap (`seq` above it, including a new turn not starting at 0) is dropped and the expectation
/// moves to `seq + 1`, so a producer that lost one chunk loses one more, not the rest of its turn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("seq gap in turn {turn}: expected {expected}, got {got}; chunk dropped")]
    SeqGap {
        turn: TurnNo,
        expected: u64,
        got: u64,
    },
    #[error("duplicate seq in turn {turn}: expected {expected}, got {got}; chunk dropped")]
    SeqDuplicate {
        turn: TurnNo,
        expected: u64,
        got: u64,
    },
    #[error("turn {turn} is older than the session's current turn {current}")]
    StaleTurn { turn: TurnNo, current: TurnNo },
    #[error("turn {turn} already ended")]
    TurnEnded { turn: TurnNo },
    #[error("invalid pcm: {0}")]
    InvalidPcm(String),
    #[error("sampleRate {0} is outside 8000..=192000")]
    InvalidSampleRate(u32),
    #[error("CONTROL END needs a turn")]
    MissingTurn,
    #[error(
        "producers do not send CONTROL STOP, PAUSE or RESUME (they go relay → producer/clients)"
    )]
    UnexpectedStop,
    #[error(
        "MIC_LEVEL, ASR_PARTIAL and VOICE_DROPPED come from the app's microphone, not a producer"
    )]
    NotAProducerFrame,
    #[error("too many sessions with audio in flight")]
    TooManySessions,
    #[error("the relay is shutting down")]
    ShuttingDown,
}

impl IngestError {
    /// The wire code of this error (closed set, CONTRACTS).
    pub fn code(&self) -> ErrorCode {
        match self {
            IngestError::SeqGap { .. }
            | IngestError::SeqDuplicate { .. }
            | IngestError::InvalidPcm(_)
            | IngestError::InvalidSampleRate(_)
            | IngestError::MissingTurn
            | IngestError::UnexpectedStop
            | IngestError::NotAProducerFrame => ErrorCode::InvalidRequest,
            IngestError::StaleTurn { .. } | IngestError::TurnEnded { .. } => ErrorCode::InvalidTurn,
            IngestError::TooManySessions => ErrorCode::NotAvailable,
            IngestError::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }
}

/// What became of a turn's END: [`EndReceipt::played`] resolves when the turn's audio has all
/// left for clients (`true`), or when a STOP, a fence or shutdown dropped it first (`false`).
#[derive(Debug)]
pub struct EndReceipt(EndState);

#[derive(Debug)]
enum EndState {
    Played,
    Fenced,
    Waiting(oneshot::Receiver<()>),
}

impl EndReceipt {
    fn ingested(&self) -> Ingested {
        match self.0 {
            EndState::Played => Ingested::Forwarded,
            EndState::Fenced => Ingested::Fenced,
            EndState::Waiting(_) => Ingested::Queued,
        }
    }

    /// Cancel-safe: dropping the wait changes nothing in the relay.
    pub async fn played(self) -> bool {
        match self.0 {
            EndState::Played => true,
            EndState::Fenced => false,
            EndState::Waiting(receipt) => receipt.await.is_ok(),
        }
    }
}

/// A producer attached to the relay. Send with [`Producer::send`]; drop to detach.
pub struct Producer {
    inner: Arc<Inner>,
    id: u64,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer").field("id", &self.id).finish()
    }
}

/// The outcome of offering a chunk to its session's queue.
enum Offer {
    Done(Result<Ingested, IngestError>),
    Full,
}

impl Producer {
    pub(crate) fn new(inner: Arc<Inner>, id: u64) -> Self {
        Producer { inner, id }
    }

    /// Send one §2 frame. A SPEECH_CHUNK waits while its session already holds
    /// `session_queue_ms` of audio (backpressure); everything else returns at once. A STOP of
    /// the session releases a waiting send (the chunk is then `Fenced`). Cancel-safe: a send
    /// dropped while it waits for space has queued nothing (send the same seq again).
    pub async fn send(&self, frame: RelayFrame) -> Result<Ingested, IngestError> {
        match frame {
            RelayFrame::SpeechChunk(chunk) => self.send_chunk(chunk).await,
            RelayFrame::Control(control) => match control.action {
                ControlAction::End => self.end_turn(control).map(|receipt| receipt.ingested()),
                ControlAction::StopAck => self.stop_acked(control),
                ControlAction::Stop | ControlAction::Pause | ControlAction::Resume => {
                    self.inner.lock().metrics.frames_malformed += 1;
                    Err(IngestError::UnexpectedStop)
                }
            },
            other @ (RelayFrame::UserInput(_)
            | RelayFrame::TextDelta(_)
            | RelayFrame::ReasoningDelta(_)
            | RelayFrame::ChatDecision(_)
            | RelayFrame::VetoPending(_)) => self.forward(other),
            // The app's own microphone publishes these (`Relay::publish`); a producer that
            // sends them must not become the session's owner by it.
            RelayFrame::MicLevel(_) | RelayFrame::AsrPartial(_) | RelayFrame::VoiceDropped(_) => {
                self.inner.lock().metrics.frames_malformed += 1;
                Err(IngestError::NotAProducerFrame)
            }
        }
    }

    /// Send one SPEECH_CHUNK as samples, the in-process way: `chunk.pcm` is ignored and no
    /// base64 is made (clients that want JSON get it encoded once, at their socket). Waits,
    /// fences and errors exactly as [`Producer::send`].
    pub async fn send_speech(
        &self,
        chunk: SpeechChunk,
        samples: Arc<[i16]>,
    ) -> Result<Ingested, IngestError> {
        let checked = validate_rate(&chunk).map(|()| samples);
        self.send_checked(chunk, checked).await
    }

    async fn send_chunk(&self, chunk: SpeechChunk) -> Result<Ingested, IngestError> {
        let samples = validate_pcm(&chunk);
        self.send_checked(chunk, samples).await
    }

    async fn send_checked(
        &self,
        chunk: SpeechChunk,
        samples: Result<Arc<[i16]>, IngestError>,
    ) -> Result<Ingested, IngestError> {
        let samples = match samples {
            Ok(samples) => samples,
            Err(error) => {
                let mut state = self.inner.lock();
                state.metrics.chunks_in += 1;
                state.metrics.frames_malformed += 1;
                return Err(error);
            }
        };
        let space = self.admit(&chunk.session_id)?;
        let duration = pcm_duration(samples.len(), chunk.sample_rate());
        let (session, turn, seq) = (chunk.session_id.clone(), chunk.turn, chunk.seq);
        let frame = LiveFrame::speech(chunk, samples);
        loop {
            // Registered before looking, so space freed right after the look still wakes us.
            let mut space_freed = pin!(space.notified());
            space_freed.as_mut().enable();
            match self.offer_chunk(&session, &frame, turn, seq, duration) {
                Offer::Done(result) => return result,
                Offer::Full => {}
            }
            tokio::select! {
                () = space_freed => {}
                () = self.inner.shutdown.cancelled() => return Err(IngestError::ShuttingDown),
            }
        }
    }

    /// Count the chunk, claim the session for this producer, and hand out the session's
    /// space notifier (held while waiting, which also keeps the session from being forgotten).
    fn admit(&self, session_id: &SessionId) -> Result<Arc<Notify>, IngestError> {
        let mut state = self.inner.lock();
        state.metrics.chunks_in += 1;
        if state.shutting_down {
            return Err(IngestError::ShuttingDown);
        }
        let max_sessions = self.inner.config.max_sessions;
        let session = session_entry(
            &mut state.sessions,
            session_id,
            Instant::now(),
            max_sessions,
        )
        .ok_or(IngestError::TooManySessions)?;
        session.owner = Some(self.id);
        Ok(Arc::clone(&session.space))
    }

    fn offer_chunk(
        &self,
        session_id: &SessionId,
        frame: &LiveFrame,
        turn: TurnNo,
        seq: u64,
        duration: Duration,
    ) -> Offer {
        let config = &self.inner.config;
        let mut state = self.inner.lock();
        if state.shutting_down {
            return Offer::Done(Err(IngestError::ShuttingDown));
        }
        let State {
            sessions, metrics, ..
        } = &mut *state;
        let Some(session) =
            session_entry(sessions, session_id, Instant::now(), config.max_sessions)
        else {
            return Offer::Done(Err(IngestError::TooManySessions));
        };
        session.owner = Some(self.id);
        if session.is_fenced(turn) {
            metrics.dropped_fenced += 1;
            return Offer::Done(Ok(Ingested::Fenced));
        }
        let expected = match session.ingest {
            Some(current) if turn < current.turn => {
                metrics.dropped_stale_turn += 1;
                return Offer::Done(Err(IngestError::StaleTurn {
                    turn,
                    current: current.turn,
                }));
            }
            Some(current) if turn == current.turn && current.ended => {
                metrics.dropped_stale_turn += 1;
                return Offer::Done(Err(IngestError::TurnEnded { turn }));
            }
            Some(current) if turn == current.turn => current.next_seq,
            _ => 0,
        };
        if seq < expected {
            metrics.dropped_bad_seq += 1;
            return Offer::Done(Err(IngestError::SeqDuplicate {
                turn,
                expected,
                got: seq,
            }));
        }
        if seq > expected {
            metrics.dropped_bad_seq += 1;
            session.ingest = Some(IngestTurn {
                turn,
                next_seq: seq.saturating_add(1),
                ended: false,
            });
            return Offer::Done(Err(IngestError::SeqGap {
                turn,
                expected,
                got: seq,
            }));
        }
        let limit = Duration::from_millis(u64::from(config.session_queue_ms));
        if !session.queue.is_empty() && session.queued_audio + duration > limit {
            return Offer::Full;
        }
        session.ingest = Some(IngestTurn {
            turn,
            next_seq: seq.saturating_add(1),
            ended: false,
        });
        session.queue.push_back(Queued::Chunk {
            frame: frame.clone(),
            turn,
            seq,
            duration,
        });
        session.queued_audio += duration;
        let spawn = session.claim_pacer().then(|| Arc::clone(&session.wake));
        drop(state);
        if let Some(wake) = spawn {
            self.inner.spawn_pacer(session_id.clone(), wake);
        }
        Offer::Done(Ok(Ingested::Queued))
    }

    /// Sends a turn's END and hands back a receipt that tells when its audio has all been
    /// released to clients — the moment the in-process engine counts the turn as spoken.
    pub fn send_end(&self, session: &SessionId, turn: TurnNo) -> Result<EndReceipt, IngestError> {
        self.end_turn(Control {
            action: ControlAction::End,
            session_id: session.clone(),
            turn: Some(turn),
            reason: None,
        })
    }

    /// END goes out right behind its turn's last chunk.
    fn end_turn(&self, control: Control) -> Result<EndReceipt, IngestError> {
        let limits = self.inner.limits();
        let mut state = self.inner.lock();
        if state.shutting_down {
            return Err(IngestError::ShuttingDown);
        }
        let Some(turn) = control.turn else {
            state.metrics.frames_malformed += 1;
            return Err(IngestError::MissingTurn);
        };
        let State {
            sessions,
            clients,
            metrics,
            ..
        } = &mut *state;
        let session_id = control.session_id.clone();
        let session = session_entry(
            sessions,
            &session_id,
            Instant::now(),
            self.inner.config.max_sessions,
        )
        .ok_or(IngestError::TooManySessions)?;
        session.owner = Some(self.id);
        if session.is_fenced(turn) {
            metrics.dropped_fenced += 1;
            return Ok(EndReceipt(EndState::Fenced));
        }
        let next_seq = match session.ingest {
            Some(current) if turn < current.turn => {
                metrics.dropped_stale_turn += 1;
                return Err(IngestError::StaleTurn {
                    turn,
                    current: current.turn,
                });
            }
            Some(current) if turn == current.turn && current.ended => {
                metrics.dropped_stale_turn += 1;
                return Err(IngestError::TurnEnded { turn });
            }
            Some(current) if turn == current.turn => current.next_seq,
            _ => 0,
        };
        session.ingest = Some(IngestTurn {
            turn,
            next_seq,
            ended: true,
        });
        let frame = LiveFrame::new(RelayFrame::Control(control));
        if session.queue.is_empty() {
            clients.fan_out(&frame, limits, metrics);
            return Ok(EndReceipt(EndState::Played));
        }
        let (played, receipt) = oneshot::channel();
        session.queue.push_back(Queued::End {
            frame,
            turn,
            played: Some(played),
        });
        let spawn = session.claim_pacer().then(|| Arc::clone(&session.wake));
        drop(state);
        if let Some(wake) = spawn {
            self.inner.spawn_pacer(session_id, wake);
        }
        Ok(EndReceipt(EndState::Waiting(receipt)))
    }

    /// STOP_ACK: fence the acknowledged turn (or, without a turn, every turn seen), end the
    /// STOP in flight, and tell clients. Accepted unsolicited too (the engine stopped by itself):
    /// the fence is what matters.
    fn stop_acked(&self, control: Control) -> Result<Ingested, IngestError> {
        let limits = self.inner.limits();
        let now = Instant::now();
        let mut state = self.inner.lock();
        let State {
            sessions,
            clients,
            metrics,
            ..
        } = &mut *state;
        let session = session_entry(
            sessions,
            &control.session_id,
            now,
            self.inner.config.max_sessions,
        )
        .ok_or(IngestError::TooManySessions)?;
        session.owner = Some(self.id);
        metrics.stop_acks += 1;
        let turn = control.turn.or(session.ingest.map(|ingest| ingest.turn));
        if let Some(turn) = turn {
            session.raise_fence(turn, clients, metrics);
        }
        let latency = session
            .stopping
            .as_ref()
            .map(|stopping| now.saturating_duration_since(stopping.started));
        if let Some(latency) = latency {
            metrics.stop_ack_latency.record(latency);
            tracing::info!(session = %control.session_id, ?turn, ?latency, "STOP_ACK");
        }
        let ack = stop_ack(&control.session_id, turn, control.reason.as_deref());
        let outcome = StopResolution::Acked {
            turn,
            latency: latency.unwrap_or_default(),
        };
        session.finish_stop(&outcome, ack, clients, limits, metrics);
        Ok(Ingested::Forwarded)
    }

    /// USER_INPUT, TEXT_DELTA: unpaced, straight to clients.
    fn forward(&self, frame: RelayFrame) -> Result<Ingested, IngestError> {
        let limits = self.inner.limits();
        let mut state = self.inner.lock();
        if state.shutting_down {
            return Err(IngestError::ShuttingDown);
        }
        let State {
            sessions,
            clients,
            metrics,
            ..
        } = &mut *state;
        let session = session_entry(
            sessions,
            frame.session_id(),
            Instant::now(),
            self.inner.config.max_sessions,
        )
        .ok_or(IngestError::TooManySessions)?;
        session.owner = Some(self.id);
        clients.fan_out(&LiveFrame::new(frame), limits, metrics);
        Ok(Ingested::Forwarded)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.inner.detach_producer(self.id);
    }
}

/// The chunk's PCM bytes, if they are whole s16le samples at a sane rate.
/// The samples of a chunk that came as JSON (`/ws/ingest`): base64 decoded once, here.
fn validate_pcm(chunk: &SpeechChunk) -> Result<Arc<[i16]>, IngestError> {
    validate_rate(chunk)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&chunk.pcm)
        .map_err(|error| IngestError::InvalidPcm(format!("not base64: {error}")))?;
    if bytes.len() % 2 != 0 {
        return Err(IngestError::InvalidPcm(format!(
            "{} bytes is not a whole number of 16-bit samples",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect())
}

fn validate_rate(chunk: &SpeechChunk) -> Result<(), IngestError> {
    let rate = chunk.sample_rate();
    if SAMPLE_RATES.contains(&rate) {
        Ok(())
    } else {
        Err(IngestError::InvalidSampleRate(rate))
    }
}

/// Playing time of `samples` s16le mono samples at `sample_rate`.
pub(crate) fn pcm_duration(samples: usize, sample_rate: u32) -> Duration {
    let samples = samples as u128;
    let nanos = samples * 1_000_000_000 / u128::from(sample_rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_follows_length_and_rate() {
        assert_eq!(
            pcm_duration(480, 24_000),
            Duration::from_millis(20),
            "480 samples at 24 kHz are 20 ms"
        );
        assert_eq!(
            pcm_duration(882, 22_050),
            Duration::from_millis(40),
            "882 samples at 22.05 kHz are 40 ms"
        );
        assert_eq!(
            pcm_duration(0, 24_000),
            Duration::ZERO,
            "empty pcm plays for no time"
        );
    }

    #[test]
    fn pcm_must_be_base64_of_whole_samples_at_a_sane_rate() {
        let session_id = SessionId::parse("s").expect("valid id");
        let chunk = |pcm: &str, sample_rate| SpeechChunk {
            session_id: session_id.clone(),
            turn: TurnNo(0),
            seq: 0,
            pcm: pcm.into(),
            sample_rate,
            viseme: koto_protocol::ingest::Viseme { mouth_open: 0.0 },
            segment: None,
        };
        assert!(
            matches!(
                validate_pcm(&chunk("!!!", None)),
                Err(IngestError::InvalidPcm(_))
            ),
            "not base64"
        );
        assert!(
            matches!(
                validate_pcm(&chunk("AAEC", None)),
                Err(IngestError::InvalidPcm(_))
            ),
            "3 bytes is half a sample too many"
        );
        assert_eq!(
            validate_pcm(&chunk("AAEC", Some(4_000))),
            Err(IngestError::InvalidSampleRate(4_000)),
            "the rate is checked first"
        );
        assert_eq!(
            validate_pcm(&chunk(&SpeechChunk::encode_pcm(&[1, -1]), Some(48_000))),
            Ok(Arc::from([1, -1])),
            "two s16le samples"
        );
    }
}
