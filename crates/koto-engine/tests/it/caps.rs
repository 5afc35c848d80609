//! What a reply is made of when the model reasons or runs long: reasoning (streamed apart, or
//! inline `<think>`) is never shown, spoken, stored or sent back; the LLM's token cap keeps the
//! reply up to its last complete sentence; `MAX_REPLY_SECONDS` ends a spoken reply at a segment
//! boundary and its LLM request with it.

use std::time::Duration;

use koto_core::TurnNo;
use koto_core::llm::Role;
use koto_engine::{EngineConfig, TurnEvent};
use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_relay::ClientFilter;
use koto_testkit::scripted::{ScriptedVoice, Step};

use crate::{drain, rig, session, shape, speech_rig, start, text};

const GAP: Duration = Duration::from_millis(1);

fn stats(events: &[TurnEvent]) -> &koto_protocol::chat::TurnStats {
    match events.last() {
        Some(TurnEvent::Done(stats)) => stats,
        other => panic!("done is last, got {other:?}"),
    }
}

fn delivered(events: &[TurnEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            TurnEvent::TextDelta { content, .. } => Some(content.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn reasoning_streamed_or_inline_is_never_shown_stored_or_sent_back() {
    let rig = rig(EngineConfig::default());
    rig.llm.push_reply(vec![
        Step::Reasoning(GAP, "The user greets me. ".into()),
        Step::Reasoning(GAP, "I should greet back.".into()),
        Step::Delta(GAP, "<thi".into()),
        Step::Delta(GAP, "nk>still thinking</think>\n\nHel".into()),
        Step::Delta(GAP, "lo!".into()),
    ]);
    rig.llm.push_tokens(GAP, &["Again."]);
    let events = drain(&mut start(&rig.engine, text("s1", "hi")).await).await;
    assert_eq!(delivered(&events), "Hello!", "{:?}", shape(&events));
    let context = rig.store.context(&session("s1"), 10).unwrap();
    assert_eq!(
        context[0].reply_text, "Hello!",
        "stored without the reasoning"
    );

    drain(&mut start(&rig.engine, text("s1", "and now?")).await).await;
    let prompt = &rig.llm.requests()[1].messages;
    let assistant: Vec<&str> = prompt
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        assistant,
        ["Hello!"],
        "the next prompt carries the reply only"
    );
}

/// `SHOW_REASONING`: on, the thinking reaches `/ws/live` clients as `REASONING_DELTA` (the panel
/// draws it dimmed), before the reply's text; off (the default), no client sees any of it.
/// Either way it is not spoken, not stored and not sent back.
#[tokio::test]
async fn reasoning_reaches_the_panel_only_when_shown_and_is_never_spoken_or_stored() {
    for show_reasoning in [true, false] {
        let rig = speech_rig(
            EngineConfig {
                show_reasoning,
                ..EngineConfig::default()
            },
            ScriptedVoice::new(1, GAP),
        );
        let mut client = rig.relay.as_ref().expect("relay").subscribe(ClientFilter {
            session: Some(session("s1")),
            ..ClientFilter::default()
        });
        rig.llm.push_reply(vec![
            Step::Reasoning(GAP, "They said hi. ".into()),
            Step::Delta(GAP, "<think>inline too</think>Hello!".into()),
        ]);
        let events = drain(&mut start(&rig.engine, text("s1", "hi")).await).await;
        assert_eq!(delivered(&events), "Hello!");
        let (mut thinking, mut subtitles, mut order) = (String::new(), String::new(), Vec::new());
        while let Some(frame) = client.recv().await {
            match frame.frame() {
                RelayFrame::ReasoningDelta(delta) => {
                    thinking.push_str(&delta.content);
                    order.push("reasoning");
                }
                RelayFrame::TextDelta(delta) if !delta.content.is_empty() => order.push("text"),
                RelayFrame::SpeechChunk(chunk) => {
                    if let Some(segment) = &chunk.segment {
                        subtitles.push_str(&segment.text);
                    }
                }
                RelayFrame::Control(control) if control.action == ControlAction::End => break,
                _ => {}
            }
        }
        if show_reasoning {
            assert_eq!(thinking, "They said hi. inline too", "both kinds are shown");
            assert_eq!(
                order.first(),
                Some(&"reasoning"),
                "thinking comes before the reply: {order:?}"
            );
        } else {
            assert_eq!(thinking, "", "hidden by default");
        }
        assert_eq!(subtitles.trim(), "Hello!", "only the reply is spoken");
        let stored = rig.store.context(&session("s1"), 10).unwrap()[0]
            .reply_text
            .clone();
        assert_eq!(stored, "Hello!", "only the reply is stored");
    }
}

#[tokio::test]
async fn a_reply_that_is_only_reasoning_fails_with_a_clear_error_and_the_session_goes_on() {
    let rig = rig(EngineConfig::default());
    rig.llm.push_reply(vec![
        Step::Reasoning(GAP, "Hmm.".into()),
        Step::Delta(GAP, "<think>never closed".into()),
    ]);
    rig.llm.push_tokens(GAP, &["Fine."]);
    let events = drain(&mut start(&rig.engine, text("s1", "hi")).await).await;
    let error = events
        .iter()
        .find_map(|event| match event {
            TurnEvent::Error(error) => Some(error),
            _ => None,
        })
        .expect("an error event");
    assert_eq!(error.code.as_str(), "llm_protocol");
    assert!(error.message.contains("only reasoned"), "{}", error.message);
    assert_eq!(
        delivered(&events),
        "",
        "nothing of the reasoning reached the caller"
    );
    let next = drain(&mut start(&rig.engine, text("s1", "again")).await).await;
    assert_eq!(delivered(&next), "Fine.", "the next turn is answered");
}

#[tokio::test]
async fn the_token_cap_keeps_the_reply_up_to_its_last_complete_sentence() {
    let rig = rig(EngineConfig::default());
    rig.llm.push_reply(vec![
        Step::Delta(GAP, "It was fun. ".into()),
        Step::Delta(GAP, "And then we".into()),
        Step::Capped,
    ]);
    let events = drain(&mut start(&rig.engine, text("s1", "how was it?")).await).await;
    assert_eq!(
        delivered(&events),
        "It was fun. And then we",
        "the text went out at the LLM's pace"
    );
    assert_eq!(stats(&events).capped.as_deref(), Some("tokens"));
    let context = rig.store.context(&session("s1"), 10).unwrap();
    assert_eq!(
        context[0].reply_text, "It was fun.",
        "kept up to the sentence"
    );
}

#[tokio::test]
async fn a_spoken_reply_cut_by_the_token_cap_never_says_the_unfinished_clause() {
    let voice = ScriptedVoice::new(1, GAP);
    let rig = speech_rig(EngineConfig::default(), voice.clone());
    rig.llm.push_reply(vec![
        Step::Delta(GAP, "We won the match. ".into()),
        Step::Delta(GAP, "It was close. ".into()),
        Step::Delta(GAP, "Next time we will".into()),
        Step::Capped,
    ]);
    let events = drain(&mut start(&rig.engine, text("s1", "did we win?")).await).await;
    assert_eq!(stats(&events).capped.as_deref(), Some("tokens"));
    let spoken = voice.spoken().concat();
    assert!(spoken.contains("It was close."), "{spoken:?}");
    assert!(
        !spoken.contains("Next"),
        "the cut clause is not said: {spoken:?}"
    );
    let context = rig.store.context(&session("s1"), 10).unwrap();
    assert_eq!(context[0].reply_text, "We won the match. It was close.");
}

#[tokio::test]
async fn max_reply_seconds_ends_the_reply_at_a_segment_boundary_and_its_llm_request() {
    // 1 chunk (20 ms) per character: each sentence below is about half a second of speech.
    let voice = ScriptedVoice::new(1, GAP);
    let rig = speech_rig(
        EngineConfig {
            max_reply_spoken: Some(Duration::from_millis(700)),
            ..EngineConfig::default()
        },
        voice,
    );
    let mut client = rig.relay.as_ref().expect("relay").subscribe(ClientFilter {
        session: Some(session("s1")),
        ..ClientFilter::default()
    });
    let sentences: Vec<String> = (0..12)
        .map(|n| format!("This is sentence number {n}. "))
        .collect();
    let mut steps: Vec<Step> = sentences
        .iter()
        .map(|sentence| Step::Delta(GAP, sentence.clone()))
        .collect();
    // The model would go on for ever: only the cap can end this turn.
    steps.push(Step::Hang);
    rig.llm.push_reply(steps);
    let events = drain(&mut start(&rig.engine, text("s1", "talk")).await).await;
    assert_eq!(
        stats(&events).capped.as_deref(),
        Some("duration"),
        "{:?}",
        shape(&events)
    );
    assert!(
        !stats(&events).interrupted,
        "a cap is an ending, not a STOP"
    );
    assert_eq!(
        rig.llm.open_streams(),
        0,
        "the LLM request ended at the cap"
    );

    let mut subtitles = String::new();
    let mut chunks = 0u64;
    while let Some(frame) = client.recv().await {
        match frame.frame() {
            RelayFrame::SpeechChunk(chunk) => {
                chunks += 1;
                if let Some(segment) = &chunk.segment {
                    subtitles.push_str(&segment.text);
                }
            }
            RelayFrame::Control(control)
                if control.turn == Some(TurnNo(0)) && control.action == ControlAction::End =>
            {
                break;
            }
            _ => {}
        }
    }
    let spoken_ms = chunks * 20;
    assert!(
        (700..700 + 1200).contains(&spoken_ms),
        "speech stops at the first segment boundary past 700 ms: {spoken_ms} ms"
    );
    let stored = rig.store.context(&session("s1"), 10).unwrap()[0]
        .reply_text
        .clone();
    assert_eq!(
        stored,
        subtitles.trim_end(),
        "what was said is what is kept"
    );
    assert!(
        sentences.concat().starts_with(&stored) && stored.len() < sentences.concat().len() / 2,
        "{stored:?}"
    );
}
