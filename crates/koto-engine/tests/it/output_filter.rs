//! `OUTPUT_FILTER_WORDS`: each segment is checked before synthesis; `mask` speaks and
//! subtitles the word as `*`s, `skip` leaves the sentence out, `stop` ends the reply before it.
//! Every hit is the turn's reason in the transcript and `filtered` in the outbox. In Chinese,
//! Japanese and English, with the romanised forms.

use std::sync::Arc;
use std::time::Duration;

use koto_core::TurnNo;
use koto_core::output_filter::{FilterAction, OutputFilter};
use koto_engine::{EngineConfig, TurnEvent};
use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_relay::{ClientFilter, LiveClient};
use koto_testkit::scripted::ScriptedVoice;

use crate::{Rig, drain, session, speech_rig, start, text};

const GAP: Duration = Duration::from_millis(1);

fn rig(words: &str, action: FilterAction) -> Rig {
    speech_rig(
        EngineConfig {
            output_filter: Some((
                Arc::new(OutputFilter::parse(words).expect("valid list")),
                action,
            )),
            ..EngineConfig::default()
        },
        ScriptedVoice::new(1, GAP),
    )
}

fn watch(rig: &Rig, id: &str) -> LiveClient {
    rig.relay.as_ref().expect("relay").subscribe(ClientFilter {
        session: Some(session(id)),
        ..ClientFilter::default()
    })
}

/// The subtitles (segment texts) a live client saw until the turn's END.
async fn subtitles(client: &mut LiveClient) -> String {
    let mut text = String::new();
    while let Some(frame) = client.recv().await {
        match frame.frame() {
            RelayFrame::SpeechChunk(chunk) => {
                if let Some(segment) = &chunk.segment {
                    text.push_str(&segment.text);
                }
            }
            RelayFrame::Control(control)
                if control.turn == Some(TurnNo(0))
                    && matches!(control.action, ControlAction::End | ControlAction::StopAck) =>
            {
                break;
            }
            _ => {}
        }
    }
    text
}

async fn turn(rig: &Rig, id: &str, tokens: &[&str]) -> (Vec<TurnEvent>, String) {
    let mut client = watch(rig, id);
    rig.llm.push_tokens(GAP, tokens);
    let events = drain(&mut start(&rig.engine, text(id, "hi")).await).await;
    (events, subtitles(&mut client).await)
}

fn reason(rig: &Rig, id: &str) -> Option<String> {
    rig.store.history(&session(id), None, 10).expect("history")[0]
        .reason
        .clone()
}

fn outbox_filtered(rig: &Rig) -> Vec<serde_json::Value> {
    rig.store
        .outbox_stream("events.plugins", 0, 100)
        .expect("outbox")
        .into_iter()
        .filter(|row| row.event_type.starts_with("Turn"))
        .map(|row| serde_json::from_str::<serde_json::Value>(&row.payload).expect("json"))
        .map(|payload| payload["filtered"].clone())
        .collect()
}

#[tokio::test]
async fn mask_speaks_and_subtitles_the_word_as_stars_in_zh_ja_and_en() {
    for (id, tokens, listed, said) in [
        (
            "zh",
            vec!["你这个傻逼，", "快走。"],
            "傻逼",
            "你这个**，快走。",
        ),
        (
            "ja",
            vec!["この", "バーカ！", "またね。"],
            "ばか",
            "この***！またね。",
        ),
        (
            "en",
            vec!["Oh sha bi, ", "that was close."],
            "shabi",
            "Oh ******, that was close.",
        ),
    ] {
        let rig = rig(listed, FilterAction::Mask);
        let (_, subtitles) = turn(&rig, id, &tokens).await;
        assert_eq!(subtitles, said, "the overlay's subtitles are masked");
        let spoken = rig.voice.as_ref().expect("voice").spoken().concat();
        assert!(
            !spoken.contains(listed) && spoken.contains('*'),
            "the voice never got the word: {spoken:?}"
        );
        let reason = reason(&rig, id).expect("a reason");
        assert!(
            reason.starts_with("filtered (mask: ") && reason.contains(listed),
            "{reason}"
        );
        assert_eq!(
            outbox_filtered(&rig),
            [serde_json::json!([format!("mask: {listed}")])],
            "the outbox says what the filter did"
        );
    }
}

#[tokio::test]
async fn skip_leaves_the_sentence_out_and_the_rest_is_said() {
    let rig = rig("darn", FilterAction::Skip);
    let (events, subtitles) = turn(
        &rig,
        "skip",
        &["Hello there. ", "Darn it all. ", "See you soon."],
    )
    .await;
    assert_eq!(subtitles, "Hello there. See you soon.");
    assert!(
        !rig.voice
            .as_ref()
            .expect("voice")
            .spoken()
            .concat()
            .to_lowercase()
            .contains("darn")
    );
    assert!(matches!(events.last(), Some(TurnEvent::Done(stats)) if !stats.interrupted));
    assert_eq!(
        reason(&rig, "skip").as_deref(),
        Some("filtered (skip: darn)")
    );
}

#[tokio::test]
async fn stop_ends_the_reply_before_the_sentence_and_keeps_what_was_said() {
    let rig = rig("/f+u+d+g+e/i", FilterAction::Stop);
    let (events, subtitles) = turn(
        &rig,
        "stop",
        &["First sentence. ", "Oh FUUUDGE. ", "Never said."],
    )
    .await;
    assert_eq!(subtitles, "First sentence. ", "nothing from the hit on");
    let Some(TurnEvent::Done(stats)) = events.last() else {
        panic!("done is last")
    };
    assert_eq!(stats.capped.as_deref(), Some("filtered"), "{stats:?}");
    let stored = rig.store.context(&session("stop"), 5).expect("context");
    assert_eq!(
        stored[0].reply_text, "First sentence.",
        "memory keeps what was said"
    );
    assert_eq!(
        reason(&rig, "stop").as_deref(),
        Some("filtered (stop: /f+u+d+g+e/i)")
    );
}
