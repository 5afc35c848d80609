//! Turns with a voice and the real relay: segments → chunks → paced live clients; STOP fences.

use std::time::Duration;

use koto_core::TurnNo;
use koto_core::turn::InputKind;
use koto_engine::{EngineConfig, Flags, TurnEvent};
use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_relay::{ClientFilter, LiveClient};
use koto_testkit::scripted::{ScriptedVoice, Step};

use crate::{Rig, drain, session, shape, speech_rig, start, text};

const GAP: Duration = Duration::from_millis(1);

fn voice() -> ScriptedVoice {
    ScriptedVoice::new(1, Duration::from_millis(1))
}

/// 3 chunks of 20 ms per character, released in real time: a reply's audio outlasts the 200 ms
/// lead by seconds, so a STOP lands mid-speech.
fn slow_speech_rig() -> Rig {
    speech_rig(
        EngineConfig::default(),
        ScriptedVoice::new(3, Duration::from_millis(1)),
    )
}

fn watch(rig: &Rig, session_id: &str) -> LiveClient {
    let filter = ClientFilter {
        session: Some(session(session_id)),
        ..ClientFilter::default()
    };
    rig.relay
        .as_ref()
        .expect("speech rig has a relay")
        .subscribe(filter)
}

/// Frames a live client sees until `END` or `STOP_ACK` of `turn` (inclusive).
async fn frames_until_turn_end(client: &mut LiveClient, turn: TurnNo) -> Vec<RelayFrame> {
    let mut frames = Vec::new();
    while let Some(frame) = client.recv().await {
        let frame = frame.frame().clone();
        let end = matches!(&frame, RelayFrame::Control(c)
            if c.turn == Some(turn) && matches!(c.action, ControlAction::End | ControlAction::StopAck));
        frames.push(frame);
        if end {
            break;
        }
    }
    frames
}

/// Until the first audio chunk reaches `client`: the turn is speaking now.
async fn until_audio(client: &mut LiveClient) {
    loop {
        let frame = client.recv().await.expect("client open");
        if matches!(frame.frame(), RelayFrame::SpeechChunk(_)) {
            return;
        }
    }
}

fn chunk_seqs(frames: &[RelayFrame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| match f {
            RelayFrame::SpeechChunk(chunk) => Some(chunk.seq),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_spoken_turn_sends_segments_in_order_with_contiguous_seq_then_end() {
    let rig = speech_rig(EngineConfig::default(), voice());
    let mut client = watch(&rig, "s1");
    rig.llm
        .push_tokens(GAP, &["Hi there. ", "How are ", "you today? ", "Good."]);
    let mut handle = start(&rig.engine, text("s1", "hello")).await;
    let events = drain(&mut handle).await;
    let names = shape(&events);
    assert!(
        names.contains(&"control HINT_TTS_START None".to_owned()),
        "{names:?}"
    );
    let TurnEvent::Done(stats) = events.last().expect("done") else {
        panic!("done is last")
    };
    let first_audio = stats.first_audio_ms.expect("first audio is measured");
    let segment = stats
        .first_segment_ms
        .expect("the first segment's cut is measured");
    let synth = stats.tts_first_chunk_ms.expect("its synthesis is measured");
    // Cut, then synthesised, then handed over: the parts fit inside first audio (0.1 ms each).
    assert!(
        segment + synth <= first_audio + 0.2,
        "{segment} + {synth} ≤ {first_audio}"
    );

    let frames = frames_until_turn_end(&mut client, TurnNo(0)).await;
    let seqs = chunk_seqs(&frames);
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "seq contiguous from 0"
    );
    let spoken = rig.voice.as_ref().expect("voice").spoken();
    assert_eq!(
        spoken.concat().replace(' ', ""),
        "Hithere.Howareyoutoday?Good.",
        "every word spoken once, in order"
    );
    assert!(
        spoken.len() >= 2,
        "the reply was cut into segments: {spoken:?}"
    );
    let segment_texts: Vec<String> = frames
        .iter()
        .filter_map(|f| match f {
            RelayFrame::SpeechChunk(chunk) => chunk.segment.as_ref().map(|s| s.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        segment_texts.concat(),
        "Hi there. How are you today? Good.",
        "subtitles cover the reply"
    );
    assert!(
        matches!(frames.first(), Some(RelayFrame::UserInput(_))),
        "the transcript starts with the input"
    );
    assert!(
        matches!(frames.last(), Some(RelayFrame::Control(c)) if c.action == ControlAction::End),
        "END closes the completed turn"
    );
}

#[tokio::test]
async fn stop_mid_audio_leaks_no_chunk_after_stop_ack_and_stores_what_was_heard() {
    let rig = slow_speech_rig();
    let mut client = watch(&rig, "s1");
    rig.llm.push_tokens(
        GAP,
        &["This is a long answer. ", "It goes on and on. ", "And on."],
    );
    let mut handle = start(&rig.engine, text("s1", "talk")).await;
    until_audio(&mut client).await;
    let outcome = rig
        .engine
        .interrupt(&session("s1"), "user_interrupt")
        .await
        .expect("barge-in on");
    assert_eq!(outcome.stopped, vec![TurnNo(0)]);
    let (acked, after_ack) = crate::frames_after_stop_ack(&mut client).await;
    assert!(acked, "clients were told STOP_ACK");
    assert!(
        !after_ack
            .iter()
            .any(|f| matches!(f, RelayFrame::SpeechChunk(c) if c.turn == TurnNo(0))),
        "no chunk of the stopped turn after STOP_ACK: {after_ack:?}"
    );
    let events = drain(&mut handle).await;
    assert_eq!(
        shape(&events).last().expect("done"),
        "done tokens=3 interrupted=true"
    );
    let stored = rig.store.context(&session("s1"), 5).expect("context");
    let heard = &stored[0].reply_text;
    assert!(stored[0].interrupted, "flagged interrupted");
    assert!(
        "This is a long answer. It goes on and on. And on.".starts_with(heard.as_str())
            && heard.len() < 49,
        "stored the heard prefix, not the whole reply: {heard:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while rig.voice.as_ref().expect("voice").live_syntheses() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every synthesis of the stopped turn was dropped");
}

#[tokio::test]
async fn stopping_one_session_leaves_the_other_speaking() {
    let rig = speech_rig(
        EngineConfig::default(),
        ScriptedVoice::new(2, Duration::from_millis(1)),
    );
    let mut watch_b = watch(&rig, "b");
    rig.llm.push_reply(vec![
        Step::Delta(GAP, "Session A speaks a while. ".into()),
        Step::Hang,
    ]);
    let mut a = start(&rig.engine, text("a", "go")).await;
    a.events.recv().await.expect("a started");
    rig.llm.push_tokens(GAP, &["Session B ", "finishes."]);
    let mut b = start(&rig.engine, text("b", "go")).await;
    rig.engine
        .interrupt(&session("a"), "user_interrupt")
        .await
        .expect("stop a");
    let b_frames = frames_until_turn_end(&mut watch_b, TurnNo(0)).await;
    assert!(
        matches!(b_frames.last(), Some(RelayFrame::Control(c)) if c.action == ControlAction::End),
        "b completed with END, untouched by a's STOP"
    );
    assert_eq!(
        shape(&drain(&mut b).await).last().expect("done"),
        "done tokens=2 interrupted=false"
    );
    assert_eq!(
        shape(&drain(&mut a).await).last().expect("done"),
        "done tokens=1 interrupted=true"
    );
}

#[tokio::test]
async fn stop_before_any_audio_and_repeated_stops_are_harmless() {
    let rig = speech_rig(EngineConfig::default(), voice());
    rig.llm.push_reply(vec![Step::Hang]);
    let mut handle = start(&rig.engine, text("s1", "hi")).await;
    rig.engine
        .interrupt(&session("s1"), "user_interrupt")
        .await
        .expect("first stop");
    rig.engine
        .interrupt(&session("s1"), "user_interrupt")
        .await
        .expect("second stop");
    assert_eq!(
        shape(&drain(&mut handle).await).last().expect("done"),
        "done tokens=0 interrupted=true"
    );
    let stored = rig.store.context(&session("s1"), 5).expect("context");
    assert_eq!(stored[0].reply_text, "", "nothing was heard");
    rig.llm.push_tokens(GAP, &["Fresh turn."]);
    let events = drain(&mut start(&rig.engine, text("s1", "again")).await).await;
    assert_eq!(
        shape(&events).last().expect("done"),
        "done tokens=1 interrupted=false",
        "a later turn plays"
    );
}

#[tokio::test]
async fn say_speaks_verbatim_without_the_llm() {
    let rig = speech_rig(EngineConfig::default(), voice());
    let mut client = watch(&rig, "s1");
    let mut request = text("s1", "say Welcome to the stream!");
    request.kind = InputKind::Command;
    let events = drain(&mut start(&rig.engine, request).await).await;
    assert!(rig.llm.requests().is_empty(), "the LLM was not asked");
    let frames = frames_until_turn_end(&mut client, TurnNo(0)).await;
    assert!(!chunk_seqs(&frames).is_empty(), "it was spoken");
    assert_eq!(
        rig.voice.as_ref().expect("voice").spoken().concat(),
        "Welcome to the stream!"
    );
    assert_eq!(
        shape(&events).first().expect("delta"),
        "delta \"Welcome to the stream!\" eos=false"
    );
}

#[tokio::test]
async fn tts_failure_goes_on_as_text_and_says_so() {
    let mut failing = voice();
    failing.fail_on = Some("broken".into());
    let rig = speech_rig(EngineConfig::default(), failing);
    rig.llm
        .push_tokens(GAP, &["A broken sentence here. ", "More text."]);
    let events = drain(&mut start(&rig.engine, text("s1", "hi")).await).await;
    let names = shape(&events);
    assert!(
        names.contains(&"error tts_failed".to_owned()),
        "the failure is reported: {names:?}"
    );
    assert_eq!(
        names.last().expect("done"),
        "done tokens=2 interrupted=false",
        "the turn still completes"
    );
    assert!(
        names.contains(&"delta \"More text.\" eos=false".to_owned()),
        "the caller still gets the whole text: {names:?}"
    );
    let stored = rig.store.context(&session("s1"), 5).expect("context");
    assert_eq!(
        stored[0].reply_text, "",
        "memory keeps what was heard: the first segment failed after one chunk, so nothing"
    );
}

#[tokio::test]
async fn text_only_when_tts_streaming_is_off() {
    let flags = Flags {
        tts_streaming: false,
        ..Flags::default()
    };
    let rig = speech_rig(
        EngineConfig {
            flags,
            ..EngineConfig::default()
        },
        voice(),
    );
    rig.llm.push_tokens(GAP, &["Just text."]);
    let names = shape(&drain(&mut start(&rig.engine, text("s1", "hi")).await).await);
    assert!(
        !names.iter().any(|n| n.contains("HINT_TTS_START")),
        "no speech hint: {names:?}"
    );
    assert!(
        rig.voice.as_ref().expect("voice").spoken().is_empty(),
        "nothing synthesised"
    );
}

/// Events until the `eos` text delta (inclusive).
async fn until_eos(handle: &mut koto_engine::TurnHandle) -> Vec<TurnEvent> {
    let mut events = Vec::new();
    while let Some(event) = handle.events.recv().await {
        let eos = matches!(event, TurnEvent::TextDelta { eos: true, .. });
        events.push(event);
        if eos {
            break;
        }
    }
    events
}

#[tokio::test]
async fn the_text_runs_at_the_llm_pace_and_the_turn_ends_when_its_audio_has_played() {
    let rig = slow_speech_rig();
    let mut client = watch(&rig, "s1");
    rig.llm.push_tokens(
        GAP,
        &["A long reply that takes a while to say. ", "And more."],
    );
    let mut handle = start(&rig.engine, text("s1", "talk")).await;
    let written = until_eos(&mut handle).await;
    assert_eq!(
        shape(&written)
            .iter()
            .filter(|e| e.starts_with("delta"))
            .count(),
        3,
        "every delta, then eos, before the audio has played: {written:?}"
    );
    assert_eq!(
        rig.llm.open_streams(),
        0,
        "the upstream request ended with the LLM, not with the audio"
    );
    let frames = frames_until_turn_end(&mut client, TurnNo(0)).await;
    let end_at = frames
        .iter()
        .position(|f| matches!(f, RelayFrame::Control(c) if c.action == ControlAction::End))
        .expect("END");
    let text_eos_at = frames
        .iter()
        .position(|f| matches!(f, RelayFrame::TextDelta(d) if d.eos))
        .expect("eos on /ws/live");
    let first_chunk_at = frames
        .iter()
        .position(|f| matches!(f, RelayFrame::SpeechChunk(_)))
        .expect("audio");
    assert!(
        text_eos_at < end_at && text_eos_at < chunk_seqs(&frames).len() + first_chunk_at,
        "live clients get the whole text long before the audio ends"
    );
    let rest = drain(&mut handle).await;
    let Some(TurnEvent::Done(stats)) = rest.last() else {
        panic!("done is last: {rest:?}")
    };
    assert!(!stats.interrupted);
    let (llm_done, last_audio) = (
        stats.llm_done_ms.expect("llm_done_ms"),
        stats.last_audio_ms.expect("last_audio_ms"),
    );
    assert!(
        llm_done < last_audio,
        "done follows the audio, the LLM ended before it: {stats:?}"
    );
    let stored = rig.store.context(&session("s1"), 5).expect("context");
    assert_eq!(
        stored[0].reply_text,
        "A long reply that takes a while to say. And more."
    );
}

#[tokio::test]
async fn a_stop_after_the_text_is_complete_still_interrupts_the_playing_turn() {
    let rig = slow_speech_rig();
    let mut client = watch(&rig, "s1");
    rig.llm.push_tokens(
        GAP,
        &[
            "The whole text is out already. ",
            "The voice is still going.",
        ],
    );
    let mut handle = start(&rig.engine, text("s1", "talk")).await;
    until_eos(&mut handle).await;
    until_audio(&mut client).await;
    let outcome = rig
        .engine
        .interrupt(&session("s1"), "user_interrupt")
        .await
        .expect("barge-in on");
    assert_eq!(
        outcome.stopped,
        vec![TurnNo(0)],
        "the turn is still running while it speaks"
    );
    let rest = drain(&mut handle).await;
    let names = shape(&rest);
    assert_eq!(
        names.last().expect("done"),
        "done tokens=2 interrupted=true",
        "{names:?}"
    );
    let heard = rest.iter().find_map(|event| match event {
        TurnEvent::Control(control) if control.action == "STOPPED" => control.heard.clone(),
        _ => None,
    });
    let stored = rig.store.context(&session("s1"), 5).expect("context");
    assert!(
        stored[0].interrupted,
        "recorded as interrupted, not completed"
    );
    assert_eq!(
        heard.as_deref(),
        Some(stored[0].reply_text.as_str()),
        "STOPPED tells what was stored"
    );
    assert!(
        stored[0].reply_text.len()
            < "The whole text is out already. The voice is still going.".len(),
        "only what was heard: {:?}",
        stored[0].reply_text
    );
}

#[tokio::test]
async fn a_crashed_voice_fails_the_turn_and_is_never_a_stop() {
    let mut crashing = voice();
    crashing.panic_on = Some("crash".into());
    let rig = speech_rig(EngineConfig::default(), crashing);
    rig.llm.push_tokens(
        GAP,
        &["Fine words first. ", "Then a crash here. ", "Never."],
    );
    let events = drain(&mut start(&rig.engine, text("s1", "hi")).await).await;
    let names = shape(&events);
    assert!(
        names.contains(&"error tts_failed".to_owned()),
        "the crash is reported as a failure: {names:?}"
    );
    assert!(
        !names.iter().any(|name| name.contains("STOPPED")),
        "a crash is not a user interrupt: {names:?}"
    );
    assert_eq!(
        names.last().expect("done"),
        "done tokens=3 interrupted=false"
    );
    let history = rig.store.history(&session("s1"), None, 5).expect("history");
    assert_eq!(
        history[0].status,
        koto_store::TurnStatus::Failed,
        "stored as failed"
    );
}

/// `(segment text, lang)` of every synthesis of one turn of `content` (with `meta.lang` =
/// `input_lang`) whose reply is `tokens`.
async fn spoken_langs(
    default_lang: &str,
    input_lang: Option<&str>,
    tokens: &[&str],
) -> Vec<(String, Option<String>)> {
    let rig = speech_rig(
        EngineConfig {
            default_lang: default_lang.parse().expect("a valid default_lang"),
            ..EngineConfig::default()
        },
        voice(),
    );
    rig.llm.push_tokens(GAP, tokens);
    let mut request = text("s1", "question");
    request.lang = input_lang.map(str::to_owned);
    drain(&mut start(&rig.engine, request).await).await;
    rig.voice.as_ref().expect("voice").spoken_with_lang()
}

fn langs(spoken: &[(String, Option<String>)]) -> Vec<Option<&str>> {
    spoken.iter().map(|(_, lang)| lang.as_deref()).collect()
}

#[tokio::test]
async fn each_segment_is_spoken_in_the_language_of_its_own_text() {
    let zh = spoken_langs("auto", None, &["你好！", "今天玩什么游戏？"]).await;
    assert!(!zh.is_empty(), "the reply was spoken");
    assert!(
        langs(&zh).iter().all(|lang| *lang == Some("zh")),
        "a Chinese reply gets the Chinese voice without any meta.lang: {zh:?}"
    );

    let ja = spoken_langs(
        "auto",
        Some("en"),
        &["こんにちは！", "今日は何をしますか？"],
    )
    .await;
    assert!(
        langs(&ja).iter().all(|lang| *lang == Some("ja")),
        "a Japanese reply gets the Japanese voice even to English input: {ja:?}"
    );

    let mixed = spoken_langs(
        "auto",
        None,
        &[
            "The word 中文 means Chinese. ",
            "我们说中文吧！",
            "日本語もできます。",
        ],
    )
    .await;
    assert_eq!(
        mixed
            .iter()
            .map(|(text, lang)| (text.trim(), lang.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            ("The word 中文 means Chinese.", None),
            ("我们说中文吧！", Some("zh")),
            ("日本語もできます。", Some("ja")),
        ],
        "mixed: per segment, by its dominant script (English: the default voice)"
    );

    let latin = spoken_langs("auto", Some("zh"), &["OK, let's go!"]).await;
    assert_eq!(
        langs(&latin),
        vec![Some("zh")],
        "Latin text names no language: the input's meta.lang"
    );
}

#[tokio::test]
async fn a_fixed_default_lang_speaks_every_segment_in_it_unless_meta_lang_says_otherwise() {
    let fixed = spoken_langs("ja", None, &["Hello there. ", "你好！"]).await;
    assert!(
        !fixed.is_empty() && langs(&fixed).iter().all(|lang| *lang == Some("ja")),
        "default_lang=ja: {fixed:?}"
    );
    let input = spoken_langs("ja", Some("zh-TW"), &["Hello there. ", "你好！"]).await;
    assert!(
        langs(&input).iter().all(|lang| *lang == Some("zh-TW")),
        "meta.lang beats default_lang: {input:?}"
    );
}

#[tokio::test]
async fn a_queued_turn_whose_caller_leaves_ends_without_silencing_the_one_speaking() {
    let rig = speech_rig(EngineConfig::default(), voice());
    let mut client = watch(&rig, "s1");
    rig.llm
        .push_tokens(GAP, &["The first reply ", "plays to its end."]);
    let mut running = start(&rig.engine, text("s1", "one")).await;
    let queued = start(&rig.engine, text("s1", "two")).await;
    // The second caller leaves while its turn waits behind the first.
    drop(queued);
    let frames = frames_until_turn_end(&mut client, TurnNo(0)).await;
    assert!(
        matches!(frames.last(), Some(RelayFrame::Control(c)) if c.action == ControlAction::End),
        "the running turn is not fenced by the queued one's cancel: {:?}",
        frames.last()
    );
    assert!(
        !frames
            .iter()
            .any(|f| matches!(f, RelayFrame::Control(c) if c.action == ControlAction::StopAck)),
        "no STOP_ACK: it would silence turn 0 on every client"
    );
    assert_eq!(
        shape(&drain(&mut running).await).last().expect("done"),
        "done tokens=2 interrupted=false"
    );
    let history = rig.store.history(&session("s1"), None, 5).expect("history");
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1].status, koto_store::TurnStatus::Interrupted);
}

#[tokio::test]
async fn audio_fenced_before_the_cancel_arrives_still_ends_the_turn_as_interrupted() {
    // A STOP fences the relay at once and reaches the engine a moment later: the turn must not
    // take its END being dropped in between for a completed reply.
    let rig = slow_speech_rig();
    let mut client = watch(&rig, "s1");
    rig.llm
        .push_tokens(GAP, &["Written in full. ", "Still being said."]);
    let mut handle = start(&rig.engine, text("s1", "talk")).await;
    until_eos(&mut handle).await;
    until_audio(&mut client).await;
    let relay = rig.relay.as_ref().expect("relay");
    assert!(relay.fence_turn(&session("s1"), TurnNo(0), "user_interrupt"));
    let rest = drain(&mut handle).await;
    assert_eq!(
        shape(&rest).last().expect("done"),
        "done tokens=2 interrupted=true",
        "{rest:?}"
    );
    let stored = rig.store.context(&session("s1"), 5).expect("context");
    assert!(
        stored[0].interrupted,
        "stored as interrupted, not completed"
    );
}
