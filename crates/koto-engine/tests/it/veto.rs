//! `VETO_WINDOW_MS`: the reply's first line is shown (`VETO_PENDING`) and held for the window
//! before a sound of it is heard; a veto (a STOP with reason `vetoed`) in the window drops the
//! reply unheard and it is stored as vetoed.

use std::time::Duration;

use koto_core::TurnNo;
use koto_engine::{EngineConfig, TurnEvent};
use koto_protocol::ingest::RelayFrame;
use koto_relay::{ClientFilter, LiveClient};
use koto_testkit::scripted::ScriptedVoice;

use crate::{Rig, drain, session, speech_rig, start, text};

const WINDOW: Duration = Duration::from_millis(300);

fn rig() -> Rig {
    speech_rig(
        EngineConfig {
            veto_window: Some(WINDOW),
            ..EngineConfig::default()
        },
        ScriptedVoice::new(1, Duration::from_millis(1)),
    )
}

fn watch(rig: &Rig, id: &str) -> LiveClient {
    rig.relay.as_ref().expect("relay").subscribe(ClientFilter {
        session: Some(session(id)),
        ..ClientFilter::default()
    })
}

async fn until_pending(client: &mut LiveClient) -> koto_protocol::ingest::VetoPendingFrame {
    loop {
        let frame = client.recv().await.expect("client open");
        match frame.frame() {
            RelayFrame::VetoPending(pending) => return pending.clone(),
            RelayFrame::SpeechChunk(chunk) => panic!("audio before the veto window: {chunk:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn the_first_line_is_shown_then_held_for_the_window_before_it_is_heard() {
    let rig = rig();
    let mut client = watch(&rig, "held");
    rig.llm
        .push_tokens(Duration::from_millis(1), &["Hello there. ", "Bye now."]);
    let mut handle = start(&rig.engine, text("held", "hi")).await;
    let pending = until_pending(&mut client).await;
    assert_eq!(pending.turn, TurnNo(0));
    assert_eq!(pending.text, "Hello there. ");
    assert!(
        pending.window_ms <= WINDOW.as_millis() as u64,
        "{pending:?}"
    );
    let events = drain(&mut handle).await;
    let Some(TurnEvent::Done(stats)) = events.last() else {
        panic!("done is last")
    };
    let first_audio = stats.first_audio_ms.expect("spoken after the window");
    assert!(
        first_audio >= WINDOW.as_millis() as f64,
        "no audio before the window ended: {stats:?}"
    );
    let stored = rig.store.context(&session("held"), 5).expect("context");
    assert_eq!(stored[0].reply_text, "Hello there. Bye now.");
}

#[tokio::test]
async fn a_veto_in_the_window_drops_the_reply_unheard_and_stores_it_as_vetoed() {
    let rig = rig();
    let mut client = watch(&rig, "veto");
    rig.llm.push_tokens(
        Duration::from_millis(1),
        &["Something risky. ", "And more."],
    );
    let mut handle = start(&rig.engine, text("veto", "hi")).await;
    until_pending(&mut client).await;
    rig.engine
        .interrupt(&session("veto"), "vetoed")
        .await
        .expect("barge-in on");
    let events = drain(&mut handle).await;
    assert!(matches!(events.last(), Some(TurnEvent::Done(stats)) if stats.interrupted));
    let mut chunks = 0;
    while let Ok(Some(frame)) =
        tokio::time::timeout(Duration::from_millis(300), client.recv()).await
    {
        if matches!(frame.frame(), RelayFrame::SpeechChunk(_)) {
            chunks += 1;
        }
    }
    assert_eq!(chunks, 0, "not a sound of a vetoed line");
    let turn = &rig
        .store
        .history(&session("veto"), None, 5)
        .expect("history")[0];
    assert_eq!(turn.reason.as_deref(), Some("vetoed"));
    let stored = rig.store.context(&session("veto"), 5).expect("context");
    assert!(
        stored.is_empty() || stored[0].reply_text.is_empty(),
        "nothing was heard, so nothing was said: {stored:?}"
    );
}
