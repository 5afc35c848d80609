//! One turn, start to end: wait for the session's earlier turns, assemble the context, stream
//! the LLM, hand deltas to the caller, and record how the turn ended in one transaction.
//!
//! Cancellation (STOP, client gone, shutdown) is a normal ending: the turn is recorded as
//! interrupted with only what was delivered. `Done` is always the last event.

use std::sync::PoisonError;

use futures_util::StreamExt;
use koto_core::ProviderError;
use koto_core::llm::{LlmDelta, LlmRequest, LlmStream};
use koto_core::think::ThinkSplitter;
use koto_protocol::chat::{ControlEvent, TurnStats};
use koto_protocol::events::{
    AnalyticsChatStats, LtmPayload, LtmViewer, LtmWriteRequested, TurnFinished, event_type, stream,
};
use koto_protocol::{ErrorCode, WireError};
use koto_store::{FailedTurn, FinishedTurn, NewOutboxEvent};
use tokio::time::Instant;

use crate::TurnEvent;
use crate::context::{VIEWER_RECALL, build_messages, user_line, viewer_lines};
use crate::job::TurnJob;
use crate::speech::heard_text;
use crate::speech_turn::TurnSpeech;
use crate::store_calls::{blocking, now_ms};
use koto_protocol::ingest::{ReasoningDeltaFrame, RelayFrame, TextDeltaFrame, UserInputFrame};

enum Ending {
    Completed,
    Interrupted,
    Failed(WireError),
}

#[derive(Default)]
struct Progress {
    /// Text that reached the caller; for an interrupted turn with audio, what the listener heard.
    delivered: String,
    tokens: u64,
    ttft_ms: Option<f64>,
    first_audio_ms: Option<f64>,
    quick_ack_ms: Option<f64>,
    first_segment_ms: Option<f64>,
    tts_first_chunk_ms: Option<f64>,
    /// Why the turn did not simply complete (a STOP's reason, `tts_failed`, an error code).
    end_reason: Option<String>,
    llm_done_ms: Option<f64>,
    last_audio_ms: Option<f64>,
    speech: Option<TurnSpeech>,
    /// Which cap ended the reply, if one did.
    capped: Option<Cap>,
    /// What the output filter did to this reply's segments (`mask: 傻逼`, …).
    filtered: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cap {
    /// The LLM's `max_tokens` (`finish_reason: "length"`).
    Tokens,
    /// `MAX_REPLY_SECONDS` of speech.
    Duration,
    /// The output filter's `stop`: a segment hit a listed word.
    Filtered,
}

impl Cap {
    fn name(self) -> &'static str {
        match self {
            Cap::Tokens => "tokens",
            Cap::Duration => "duration",
            Cap::Filtered => "filtered",
        }
    }
}

pub(crate) async fn run_turn(mut job: TurnJob) {
    tracing::info!(chars = job.user_text.chars().count(), "turn started");
    job.publish(RelayFrame::UserInput(UserInputFrame {
        session_id: job.slot.id.clone(),
        turn: job.turn,
        content: job.user_text.clone(),
    }))
    .await;
    let mut progress = Progress::default();
    let mut ending = drive(&job, &mut progress).await;
    let mut user_row_stored = true;
    if let Some(user_row) = job.user_row.as_mut() {
        let stored = match user_row.await {
            Ok(result) => result.map_err(|error| error.not_saved()),
            Err(join_error) => Err(format!("the turn was not saved: {join_error}")),
        };
        if let Err(message) = stored {
            tracing::error!(error = %message, "the user row was not stored");
            user_row_stored = false;
            ending = Ending::Failed(WireError::new(ErrorCode::StorageError, message));
        }
    }
    // One fence for every way a turn is stopped — a STOP from any entry point (the relay fenced
    // it already), the caller gone, shutdown: nothing of the turn is released after this line,
    // so what was heard is read after it and matches what listeners got.
    let interrupted = matches!(ending, Ending::Interrupted);
    let reason = interrupted.then(|| job.interrupt_reason());
    let reason = reason.as_deref();
    if let (Some(reason), Some(_)) = (reason, &progress.speech) {
        job.services.fence_turn(&job.slot.id, job.turn, reason);
    }
    let speech = match progress.speech.take() {
        Some(speech) => {
            let spoken = speech.spoken.clone();
            progress.filtered = speech.filtered.clone();
            Some((speech.finish().await, spoken))
        }
        None => None,
    };
    let mut flag = reason.map(str::to_owned);
    if let Some((report, spoken)) = &speech {
        progress.first_audio_ms = report
            .first_audio_at
            .map(|at| ms_between(job.received_at, at));
        progress.last_audio_ms = report
            .last_audio_at
            .map(|at| ms_between(job.received_at, at));
        progress.quick_ack_ms = report
            .quick_ack_at
            .map(|at| ms_between(job.received_at, at));
        progress.first_segment_ms = report
            .first_segment_at
            .map(|at| ms_between(job.received_at, at));
        progress.tts_first_chunk_ms = report.first_synth.map(ms_of);
        if let Some(crash) = &report.crashed
            && !interrupted
        {
            ending = Ending::Failed(WireError::new(ErrorCode::TtsFailed, crash.clone()));
            flag = Some("speech_crashed".to_owned());
        }
        if !report.completed
            || report.capped
            || progress.capped == Some(Cap::Filtered)
            || matches!(ending, Ending::Failed(_))
        {
            // What the listener heard, not what the LLM wrote: cut where the audio stopped.
            let released = job.services.released_seq(&job.slot.id, job.turn);
            let segments = spoken.lock().unwrap_or_else(PoisonError::into_inner);
            progress.delivered = heard_text(&segments, released);
        }
        if report.error.is_some() && !interrupted && flag.is_none() {
            flag = Some("tts_failed".to_owned());
        }
    }
    match &ending {
        Ending::Completed => {}
        Ending::Interrupted => {
            job.emit(TurnEvent::Control(ControlEvent::stopped_after(
                reason.unwrap_or("user_interrupt"),
                progress.delivered.clone(),
            )))
            .await
        }
        Ending::Failed(error) => {
            if flag.is_none() {
                flag = Some(error.code.as_str().to_owned());
            }
            job.emit(TurnEvent::Error(error.clone())).await
        }
    }
    if let Some(error) = speech
        .as_ref()
        .and_then(|(report, _)| report.error.as_ref())
        && !interrupted
    {
        let message = format!("speech failed, the rest of the reply was text only: {error}");
        job.emit(TurnEvent::Error(WireError::new(
            ErrorCode::TtsFailed,
            message,
        )))
        .await;
    }
    if flag.is_none() && !progress.filtered.is_empty() {
        // The transcript and the outbox say what the filter did.
        flag = Some(format!("filtered ({})", progress.filtered.join("; ")));
    }
    progress.end_reason = flag;
    let stats = TurnStats {
        ttft_ms: progress.ttft_ms,
        tokens: progress.tokens,
        first_audio_ms: progress.first_audio_ms,
        interrupted,
        llm_done_ms: progress.llm_done_ms,
        last_audio_ms: progress.last_audio_ms,
        capped: progress.capped.map(|cap| cap.name().to_owned()),
        quick_ack_ms: progress.quick_ack_ms,
        first_segment_ms: progress.first_segment_ms,
        tts_first_chunk_ms: progress.tts_first_chunk_ms,
    };
    if !user_row_stored {
        // Nothing of this turn is in the store; there is nothing to finish.
    } else if let Err(error) = record(&job, &ending, &progress, &stats).await {
        tracing::error!(%error, "could not record the turn");
        job.emit(TurnEvent::Error(WireError::new(
            ErrorCode::StorageError,
            error.not_saved(),
        )))
        .await;
    }
    job.services.metrics.observe_turn(ending.name(), &stats);
    tracing::info!(
        outcome = ending.name(),
        ttft_ms = stats.ttft_ms,
        first_audio_ms = stats.first_audio_ms,
        quick_ack_ms = stats.quick_ack_ms,
        tokens = stats.tokens,
        reason = progress.end_reason.as_deref(),
        "turn ended"
    );
    job.emit(TurnEvent::Done(stats)).await;
    if user_row_stored {
        crate::prompt_cache::warm_next_window(&job);
    }

    // A turn cancelled while queued ends early; it still hands over in order, so the next turn
    // never starts before every earlier one has recorded its reply.
    if let Some(previous) = &job.queue_place.previous {
        previous.cancelled().await;
    }
    job.slot.release(job.turn);
    let TurnJob { services, slot, .. } = job;
    services.forget_if_idle(slot);
}

async fn drive(job: &TurnJob, progress: &mut Progress) -> Ending {
    // Earlier turns of this session finish first, so this one's context holds their replies.
    if let Some(previous) = &job.queue_place.previous {
        tokio::select! {
            biased;
            _ = job.token.cancelled() => return Ending::Interrupted,
            _ = previous.cancelled() => {}
        }
    }

    let mut deltas = match &job.script {
        Some(text) => Box::pin(futures_util::stream::iter([Ok(LlmDelta::text(
            text.clone(),
        ))])) as LlmStream,
        None => {
            let request = match prompt(job).await {
                Ok(request) => request,
                Err(error) => return Ending::Failed(error),
            };
            job.profile.llm.stream_chat(request)
        }
    };
    progress.speech = job.start_speech();
    let spoken_cap = progress.speech.as_ref().map(TurnSpeech::capped);
    let filter_stop = progress.speech.as_ref().map(TurnSpeech::filter_stopped);
    // Inline `<think>…</think>` in the reply text is reasoning too: never shown, said or kept.
    let mut think = ThinkSplitter::new();
    let mut pieces = Vec::new();
    let mut reasoning_chars = 0usize;

    // The first segment goes to TTS at the first clause, or after this long at the latest.
    let mut first_clause_deadline: Option<Instant> = None;
    loop {
        let waiting_for_first_clause = first_clause_deadline.is_some()
            && progress.speech.as_ref().is_some_and(|s| !s.started());
        let deadline = first_clause_deadline.unwrap_or_else(Instant::now);
        let next = tokio::select! {
            biased;
            _ = job.token.cancelled() => return Ending::Interrupted,
            _ = async { spoken_cap.as_ref()?.cancelled().await; Some(()) }, if spoken_cap.is_some() => {
                // MAX_REPLY_SECONDS: the speaker said enough; the LLM request ends here.
                progress.capped = Some(Cap::Duration);
                break;
            }
            _ = async { filter_stop.as_ref()?.cancelled().await; Some(()) }, if filter_stop.is_some() => {
                // OUTPUT_FILTER_ACTION=stop: what was said before the hit stands; no more.
                progress.capped = Some(Cap::Filtered);
                break;
            }
            _ = tokio::time::sleep_until(deadline), if waiting_for_first_clause => {
                if let Some(speech) = &mut progress.speech {
                    speech.flush_first_clause().await;
                }
                first_clause_deadline = None;
                continue;
            }
            next = deltas.next() => next,
        };
        let ended = match next {
            None => {
                think.finish(&mut pieces);
                true
            }
            Some(Err(error)) => return Ending::Failed(llm_error(&error)),
            Some(Ok(LlmDelta::Text(text))) => {
                think.push(&text, &mut pieces);
                false
            }
            Some(Ok(LlmDelta::Reasoning(thought))) => {
                pieces.push(LlmDelta::Reasoning(thought));
                false
            }
            Some(Ok(LlmDelta::Capped)) => {
                progress.capped = Some(Cap::Tokens);
                false
            }
        };
        for piece in pieces.drain(..) {
            let delta = match piece {
                LlmDelta::Text(delta) if !delta.is_empty() => delta,
                LlmDelta::Reasoning(thought) => {
                    reasoning_chars += thought.chars().count();
                    if job.profile.config.show_reasoning && !thought.is_empty() {
                        job.publish(RelayFrame::ReasoningDelta(ReasoningDeltaFrame {
                            session_id: job.slot.id.clone(),
                            turn: job.turn,
                            content: thought,
                        }))
                        .await;
                    }
                    continue;
                }
                LlmDelta::Text(_) | LlmDelta::Capped => continue,
            };
            progress.tokens += 1;
            if progress.ttft_ms.is_none() {
                progress.ttft_ms = Some(ms_since(job.received_at));
                first_clause_deadline = Some(Instant::now() + job.profile.config.first_clause_wait);
            }
            let event = TurnEvent::TextDelta {
                content: delta.clone(),
                eos: false,
            };
            tokio::select! {
                biased;
                _ = job.token.cancelled() => return Ending::Interrupted,
                _ = job.events.send(event) => progress.delivered.push_str(&delta),
            }
            job.publish(RelayFrame::TextDelta(TextDeltaFrame {
                session_id: job.slot.id.clone(),
                turn: job.turn,
                content: delta.clone(),
                eos: false,
            }))
            .await;
            if let Some(speech) = &mut progress.speech {
                speech.push(&delta).await;
            }
        }
        if ended {
            break;
        }
    }
    if reasoning_chars > 0 {
        tracing::debug!(
            reasoning_chars,
            "the model reasoned; not spoken, shown or kept"
        );
    }
    // The reply text is complete: the upstream request ends now, not when the audio has
    // played (a one-slot local LLM is free for the next turn at once), and the caller learns
    // that the text is whole (`eos`) while the audio goes on.
    drop(deltas);
    progress.llm_done_ms = Some(ms_since(job.received_at));
    if progress.delivered.is_empty() && reasoning_chars > 0 {
        return Ending::Failed(WireError::new(
            ErrorCode::LlmProtocol,
            format!(
                "the model only reasoned ({reasoning_chars} characters) and gave no reply; raise llm_max_tokens or use a model that answers"
            ),
        ));
    }
    job.emit(TurnEvent::TextDelta {
        content: String::new(),
        eos: true,
    })
    .await;
    job.publish(RelayFrame::TextDelta(TextDeltaFrame {
        session_id: job.slot.id.clone(),
        turn: job.turn,
        content: String::new(),
        eos: true,
    }))
    .await;
    // A token cap keeps the reply up to its last complete sentence (spoken and stored alike).
    if progress.capped == Some(Cap::Tokens) {
        let dropped = match &mut progress.speech {
            Some(speech) => speech.finish_text_at_cap().await,
            None => {
                let keep = koto_core::segmenter::end_of_last_sentence(&progress.delivered);
                if keep == 0 {
                    0
                } else {
                    progress.delivered.len() - keep
                }
            }
        };
        let keep = progress.delivered.len() - dropped;
        progress.delivered.truncate(keep);
        let kept = progress.delivered.trim_end().len();
        progress.delivered.truncate(kept);
    }
    // The turn is complete once its audio has played (the relay released its END).
    if let Some(speech) = &mut progress.speech {
        speech.finish_text().await;
        if !speech.wait_played(&job.token).await {
            // Cancelled, or a STOP dropped the END before its cancel reached this turn.
            return Ending::Interrupted;
        }
    }
    Ending::Completed
}

async fn prompt(job: &TurnJob) -> Result<LlmRequest, WireError> {
    let services = &job.services;
    let config = &job.profile.config;
    let store = services.store.clone();
    let session = job.slot.id.clone();
    let max_turns = config.context_turns;
    let mut history = blocking(move || store.context(&session, max_turns))
        .await
        .map_err(|error| WireError::new(ErrorCode::StorageError, error.to_string()))?;
    let start = crate::context::window_start(job.turn.0, max_turns);
    history.retain(|earlier| earlier.turn.0 >= start);
    let mut memories = services.recall(config, &job.slot.id, &job.user_text).await;
    if let Some(viewer) = &job.viewer {
        let store = services.store.clone();
        let (platform, id) = (viewer.platform.clone(), viewer.id.clone());
        // Per-viewer memory is a point lookup by (platform, user id); a failure only costs it.
        match blocking(move || store.viewer_recall(&platform, &id, VIEWER_RECALL)).await {
            Ok(Some(recall)) => {
                memories.extend(viewer_lines(viewer, &recall, crate::store_calls::now_ms()))
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "answering without the viewer's memory"),
        }
    }
    let input = user_line(&job.user_text, job.viewer.as_ref());
    Ok(LlmRequest {
        messages: build_messages(&config.system_prompt, &memories, &history, &input),
        lang: job.lang.clone(),
        correlation_id: job.correlation_id.to_string(),
    })
}

/// Stores the reply (or the failure) and the turn's outbox events in one transaction.
async fn record(
    job: &TurnJob,
    ending: &Ending,
    progress: &Progress,
    stats: &TurnStats,
) -> Result<(), crate::EngineError> {
    let ts = now_ms();
    let async_ext = job.profile.config.flags.async_ext;
    let events = if async_ext {
        outbox_events(job, ending, progress, stats, ts)
    } else {
        Vec::new()
    };
    let store = job.services.store.clone();
    let session = job.slot.id.clone();
    let turn = job.turn;
    match ending {
        Ending::Failed(error) => {
            let failed = FailedTurn {
                session,
                turn,
                heard_text: progress.delivered.clone(),
                reason: progress
                    .end_reason
                    .clone()
                    .unwrap_or_else(|| error.code.as_str().to_owned()),
                ts_ms: ts,
                events,
            };
            blocking(move || store.fail_turn(&failed)).await?;
        }
        Ending::Completed | Ending::Interrupted => {
            let finished = FinishedTurn {
                session,
                turn,
                reply_text: progress.delivered.clone(),
                interrupted: matches!(ending, Ending::Interrupted),
                reason: progress.end_reason.clone(),
                ts_ms: ts,
                events,
            };
            blocking(move || store.finish_turn(&finished)).await?;
        }
    }
    Ok(())
}

fn outbox_events(
    job: &TurnJob,
    ending: &Ending,
    progress: &Progress,
    stats: &TurnStats,
    ts: i64,
) -> Vec<NewOutboxEvent> {
    let correlation_id = job.correlation_id.to_string();
    let session_id = job.slot.id.clone();
    let turn = job.turn;
    let event = |event_type: &str, stream: &str, payload: serde_json::Value| NewOutboxEvent {
        event_type: event_type.to_owned(),
        stream: stream.to_owned(),
        correlation_id: correlation_id.clone(),
        payload,
        ts_ms: ts,
    };
    let mut events = Vec::with_capacity(3);
    let reply = progress.delivered.clone();
    if !matches!(ending, Ending::Failed(_)) && !reply.trim().is_empty() {
        let ltm = LtmWriteRequested {
            correlation_id: correlation_id.clone(),
            session_id: session_id.clone(),
            turn,
            payload: LtmPayload {
                text: job.user_text.clone(),
                reply: reply.clone(),
                vectorize: true,
                viewer: job.viewer.as_ref().map(|viewer| LtmViewer {
                    platform: viewer.platform.clone(),
                    id: viewer.id.clone(),
                    name: viewer.name.clone(),
                }),
            },
            ts,
        };
        events.push(event(
            event_type::LTM_WRITE_REQUESTED,
            stream::LTM,
            to_json(&ltm),
        ));
    }
    let analytics = AnalyticsChatStats {
        correlation_id: correlation_id.clone(),
        session_id: session_id.clone(),
        turn,
        ttft_ms: stats.ttft_ms,
        first_audio_ms: stats.first_audio_ms,
        tokens: stats.tokens,
        interrupted: stats.interrupted,
        outcome: ending.name().to_owned(),
        ts,
    };
    events.push(event(
        event_type::ANALYTICS_CHAT_STATS,
        stream::ANALYTICS,
        to_json(&analytics),
    ));
    let plugin_type = match ending {
        Ending::Completed => event_type::TURN_COMPLETED,
        Ending::Interrupted => event_type::TURN_INTERRUPTED,
        Ending::Failed(_) => event_type::TURN_FAILED,
    };
    let finished = TurnFinished {
        correlation_id: correlation_id.clone(),
        session_id,
        turn,
        input: job.user_text.clone(),
        reply,
        interrupted: stats.interrupted,
        error_code: match ending {
            Ending::Failed(error) => Some(error.code.as_str().to_owned()),
            _ => None,
        },
        filtered: (!progress.filtered.is_empty()).then(|| progress.filtered.clone()),
        ts,
    };
    events.push(event(plugin_type, stream::PLUGINS, to_json(&finished)));
    events
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    // Our own plain structs always serialise; Null would only hide a bug, so log it.
    serde_json::to_value(value).unwrap_or_else(|error| {
        tracing::error!(%error, "event payload did not serialise");
        serde_json::Value::Null
    })
}

impl Ending {
    fn name(&self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Interrupted => "interrupted",
            Ending::Failed(_) => "failed",
        }
    }
}

fn llm_error(error: &ProviderError) -> WireError {
    let code = match error {
        ProviderError::Timeout(_) => ErrorCode::LlmTimeout,
        ProviderError::RateLimited { .. } => ErrorCode::LlmRateLimited,
        ProviderError::Auth(_) => ErrorCode::LlmAuth,
        ProviderError::Transport(_) => ErrorCode::LlmTransport,
        ProviderError::Protocol(_) => ErrorCode::LlmProtocol,
        ProviderError::Unavailable(_) => ErrorCode::LlmUnavailable,
    };
    WireError::new(code, format!("the LLM failed: {error}"))
}

fn ms_since(start: Instant) -> f64 {
    ms_between(start, Instant::now())
}

fn ms_between(start: Instant, end: Instant) -> f64 {
    ms_of(end.saturating_duration_since(start))
}

/// Milliseconds to 0.1 ms, as every stat is written.
fn ms_of(duration: std::time::Duration) -> f64 {
    (duration.as_micros() as f64 / 100.0).round() / 10.0
}
