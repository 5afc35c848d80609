//! `QUICK_ACK_MS`: a filler plays when the first clause is late, comes first in the turn's
//! audio, is never heard text, is reported apart from first audio, and is fenced by a STOP.

use std::time::Duration;

use koto_core::TurnNo;
use koto_engine::{EngineConfig, TurnEvent};
use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_relay::{ClientFilter, LiveClient};
use koto_testkit::scripted::{ScriptedVoice, Step};

use crate::{Rig, drain, session, speech_rig, start, text};

fn rig(after: Duration) -> Rig {
    speech_rig(
        EngineConfig {
            quick_ack_after: Some(after),
            ..EngineConfig::default()
        },
        ScriptedVoice::new(1, Duration::from_millis(1)),
    )
}

async fn fillers_ready(rig: &Rig) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !rig.engine.quick_acks_ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the fillers are made at start");
}

fn watch(rig: &Rig, id: &str) -> LiveClient {
    rig.relay.as_ref().expect("relay").subscribe(ClientFilter {
        session: Some(session(id)),
        ..ClientFilter::default()
    })
}

async fn frames_until_end(client: &mut LiveClient) -> Vec<RelayFrame> {
    let mut frames = Vec::new();
    while let Some(frame) = client.recv().await {
        let frame = frame.frame().clone();
        let end = matches!(&frame, RelayFrame::Control(c)
            if c.turn == Some(TurnNo(0)) && matches!(c.action, ControlAction::End | ControlAction::StopAck));
        frames.push(frame);
        if end {
            break;
        }
    }
    frames
}

fn stats(events: &[TurnEvent]) -> &koto_protocol::chat::TurnStats {
    match events.last() {
        Some(TurnEvent::Done(stats)) => stats,
        other => panic!("done is last, got {other:?}"),
    }
}

#[tokio::test]
async fn a_late_first_clause_gets_the_filler_first_and_it_is_never_heard_text() {
    let rig = rig(Duration::from_millis(30));
    fillers_ready(&rig).await;
    let spoken_before = rig.voice.as_ref().expect("voice").spoken();
    assert!(
        spoken_before.iter().any(|text| text == "Hmm…"),
        "the fillers were synthesised up front: {spoken_before:?}"
    );
    let mut client = watch(&rig, "ack");
    // The LLM thinks for 400 ms before its first clause: far past the 30 ms wait.
    rig.llm.push_reply(vec![
        Step::Delta(Duration::from_millis(400), "Hello there. ".into()),
        Step::Delta(Duration::from_millis(1), "Bye.".into()),
    ]);
    let events = drain(&mut start(&rig.engine, text("ack", "hello")).await).await;
    let stats = stats(&events);
    let (ack, first) = (
        stats.quick_ack_ms.expect("the filler played"),
        stats.first_audio_ms.expect("the reply was spoken"),
    );
    assert!(
        ack < first,
        "the filler is before the reply's first audio: {stats:?}"
    );

    let frames = frames_until_end(&mut client).await;
    let chunks: Vec<_> = frames
        .iter()
        .filter_map(|frame| match frame {
            RelayFrame::SpeechChunk(chunk) => Some(chunk),
            _ => None,
        })
        .collect();
    let filler_chunks = chunks
        .iter()
        .take_while(|chunk| chunk.segment.is_none())
        .count();
    assert!(
        filler_chunks > 0,
        "the filler's chunks come first, with no subtitle"
    );
    assert_eq!(
        chunks.iter().map(|chunk| chunk.seq).collect::<Vec<_>>(),
        (0..chunks.len() as u64).collect::<Vec<_>>(),
        "one contiguous sequence: the filler, then the reply"
    );
    let subtitles: String = chunks
        .iter()
        .filter_map(|chunk| chunk.segment.as_ref().map(|segment| segment.text.clone()))
        .collect();
    assert_eq!(subtitles, "Hello there. Bye.", "the filler is no subtitle");
    let stored = rig.store.context(&session("ack"), 5).expect("context");
    assert_eq!(
        stored[0].reply_text, "Hello there. Bye.",
        "never stored as the reply"
    );
}

#[tokio::test]
async fn a_prompt_first_clause_plays_no_filler() {
    let rig = rig(Duration::from_secs(5));
    fillers_ready(&rig).await;
    rig.llm
        .push_tokens(Duration::from_millis(1), &["Right away. ", "Done."]);
    let events = drain(&mut start(&rig.engine, text("fast", "hello")).await).await;
    let stats = stats(&events);
    assert_eq!(stats.quick_ack_ms, None, "{stats:?}");
    assert!(stats.first_audio_ms.is_some());
}

#[tokio::test]
async fn a_stop_during_the_filler_fences_it_and_nothing_is_heard() {
    let rig = speech_rig(
        EngineConfig {
            quick_ack_after: Some(Duration::from_millis(10)),
            ..EngineConfig::default()
        },
        // 40 chunks per character: the filler lasts seconds, so the STOP lands inside it.
        ScriptedVoice::new(40, Duration::from_millis(1)),
    );
    fillers_ready(&rig).await;
    let mut client = watch(&rig, "cut");
    rig.llm.push_reply(vec![Step::Delta(
        Duration::from_secs(30),
        "Too late. ".into(),
    )]);
    let mut handle = start(&rig.engine, text("cut", "hello")).await;
    loop {
        let frame = client.recv().await.expect("client open");
        if matches!(frame.frame(), RelayFrame::SpeechChunk(_)) {
            break;
        }
    }
    rig.engine
        .interrupt(&session("cut"), "user_interrupt")
        .await
        .expect("barge-in on");
    let (acked, after_ack) = crate::frames_after_stop_ack(&mut client).await;
    assert!(acked);
    assert!(
        !after_ack
            .iter()
            .any(|frame| matches!(frame, RelayFrame::SpeechChunk(_))),
        "no filler chunk after STOP_ACK: {after_ack:?}"
    );
    let events = drain(&mut handle).await;
    assert!(stats(&events).interrupted);
    let stored = rig.store.context(&session("cut"), 5).expect("context");
    assert_eq!(
        stored[0].reply_text, "",
        "a filler is not something the co-host said"
    );
}
