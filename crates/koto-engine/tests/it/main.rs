//! Engine behaviour as event timelines: scripted LLM, real SQLite file, no HTTP.

#![allow(clippy::unwrap_used)]

mod caps;
mod concurrency;
mod module_graph;
mod output_filter;
mod quick_ack;
mod speech;
mod turns;
mod veto;

use std::sync::Arc;

use koto_core::SessionId;
use koto_core::turn::InputKind;
use koto_engine::{
    Engine, EngineConfig, EngineParts, Submission, TurnEvent, TurnHandle, TurnRequest,
};
use koto_relay::{Relay, RelayConfig};
use koto_store::Store;
use koto_testkit::scripted::{ScriptedLlm, ScriptedVoice};

pub struct Rig {
    pub engine: Engine,
    pub llm: ScriptedLlm,
    pub store: Store,
    pub relay: Option<Relay>,
    pub voice: Option<ScriptedVoice>,
    _dir: tempfile::TempDir,
}

/// Text only: no voice, no relay.
pub fn rig(config: EngineConfig) -> Rig {
    build_rig(config, None, ScriptedLlm::new())
}

/// Text only, against this scripted LLM.
pub fn rig_with_llm(config: EngineConfig, llm: ScriptedLlm) -> Rig {
    build_rig(config, None, llm)
}

/// With a relay and a scripted voice (real pacing, real fences).
pub fn speech_rig(config: EngineConfig, voice: ScriptedVoice) -> Rig {
    build_rig(config, Some(voice), ScriptedLlm::new())
}

fn build_rig(config: EngineConfig, voice: Option<ScriptedVoice>, llm: ScriptedLlm) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("kotodama.sqlite3")).expect("open store");
    let relay = voice.as_ref().map(|_| Relay::new(RelayConfig::default()));
    let parts = EngineParts {
        llm: Arc::new(llm.clone()),
        store: store.clone(),
        voice: voice
            .clone()
            .map(|voice| Arc::new(voice) as Arc<dyn koto_core::tts::Voice>),
        relay: relay.clone(),
        recall: None,
        metrics: None,
    };
    let engine = Engine::new(config, parts);
    Rig {
        engine,
        llm,
        store,
        relay,
        voice,
        _dir: dir,
    }
}

pub fn session(id: &str) -> SessionId {
    SessionId::parse(id).expect("valid session id")
}

pub fn text(session_id: &str, content: &str) -> TurnRequest {
    TurnRequest {
        session: session(session_id),
        turn: None,
        kind: InputKind::Text,
        content: content.into(),
        lang: None,
        meta: koto_core::turn::InputMeta::typed(),
        received_at: tokio::time::Instant::now(),
    }
}

pub async fn start(engine: &Engine, request: TurnRequest) -> TurnHandle {
    match engine.submit(request).await.expect("accepted") {
        Submission::Turn(handle) => handle,
        other => panic!("expected a turn, got {other:?}"),
    }
}

/// Every event until the channel closes (after `Done`).
pub async fn drain(handle: &mut TurnHandle) -> Vec<TurnEvent> {
    let mut events = Vec::new();
    while let Some(event) = handle.events.recv().await {
        events.push(event);
    }
    events
}

/// Events with the timing-dependent stats blanked, for exact comparison.
pub fn shape(events: &[TurnEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event {
            TurnEvent::TextDelta { content, eos } => format!("delta {content:?} eos={eos}"),
            TurnEvent::Control(control) => {
                format!("control {} {:?}", control.action, control.reason)
            }
            TurnEvent::Error(error) => format!("error {}", error.code.as_str()),
            TurnEvent::Done(stats) => format!(
                "done tokens={} interrupted={}",
                stats.tokens, stats.interrupted
            ),
        })
        .collect()
}

/// What `client` sees after a STOP: whether `STOP_ACK` came, and every frame after it (until
/// the relay has been quiet for 500 ms).
pub async fn frames_after_stop_ack(
    client: &mut koto_relay::LiveClient,
) -> (bool, Vec<koto_protocol::ingest::RelayFrame>) {
    use koto_protocol::ingest::{ControlAction, RelayFrame};
    let mut after_ack = Vec::new();
    let mut acked = false;
    while let Ok(Some(frame)) =
        tokio::time::timeout(std::time::Duration::from_millis(500), client.recv()).await
    {
        let frame = frame.frame().clone();
        if acked {
            after_ack.push(frame);
        } else if matches!(&frame, RelayFrame::Control(c) if c.action == ControlAction::StopAck) {
            acked = true;
        }
    }
    (acked, after_ack)
}
