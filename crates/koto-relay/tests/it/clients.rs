//! Live clients: slow ones lose frames then the connection, fast ones get everything in order;
//! filters; unpaced text; frame encodings.

use std::time::Duration;

use koto_core::TurnNo;
use koto_protocol::ingest::{RelayFrame, TextDeltaFrame, UserInputFrame};
use koto_relay::{
    ClientFilter, ClientRole, DisconnectReason, Relay, RelayConfig, WsFrame, decode_binary_chunk,
};

use crate::support::{Seen, chunk, chunks_of, end, recv_until, sid};

#[tokio::test(start_paused = true)]
async fn a_slow_client_is_dropped_while_a_fast_one_gets_everything_in_order() {
    // The queue must hold a lead's worth of chunks (10 × 20 ms go out at once when a turn starts).
    let config = RelayConfig {
        client_queue_frames: 16,
        client_drop_limit: 4,
        ..RelayConfig::default()
    };
    let relay = Relay::new(config);
    let mut slow = relay.subscribe(ClientFilter::default());
    let mut fast = relay.subscribe(ClientFilter::default());
    let (engine, _stops) = relay.attach_producer(true);
    let session = sid("fanout");
    for seq in 0..60 {
        engine.send(chunk(&session, 1, seq)).await.expect("queued");
    }
    engine.send(end(&session, 1)).await.expect("END");
    let log = recv_until(&mut fast, Duration::from_secs(3), |s| {
        matches!(s, Seen::End { .. })
    })
    .await;
    assert_eq!(
        chunks_of(&log, "fanout"),
        (0..60).map(|seq| (1, seq)).collect::<Vec<_>>(),
        "the fast client got every chunk, in order, despite the slow one"
    );
    assert_eq!(
        slow.try_recv().err(),
        Some(DisconnectReason::TooSlow { dropped: 4 }),
        "the slow client held 16, lost 4 more and was then disconnected"
    );
    let metrics = relay.metrics();
    assert_eq!(metrics.client_frames_dropped, 4, "each lost frame counted");
    assert_eq!(
        metrics.clients_disconnected_slow, 1,
        "one slow client disconnected"
    );
    assert_eq!(metrics.clients_connected, 1, "the fast one remains");
    drop(fast);
    assert_eq!(
        relay.metrics().clients_connected,
        0,
        "dropping a client unsubscribes it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_control_frame_that_does_not_fit_disconnects_at_once() {
    let config = RelayConfig {
        client_queue_frames: 2,
        client_drop_limit: 100,
        ..RelayConfig::default()
    };
    let relay = Relay::new(config);
    let mut slow = relay.subscribe(ClientFilter::default());
    let (engine, _stops) = relay.attach_producer(true);
    let (a, b) = (sid("a"), sid("b"));
    engine.send(chunk(&a, 1, 0)).await.expect("queued");
    engine.send(chunk(&b, 1, 0)).await.expect("queued");
    tokio::time::sleep(Duration::from_millis(1)).await;
    // The client holds 2 chunks; an END of a third session cannot fit.
    engine
        .send(end(&sid("c"), 1))
        .await
        .expect("END of a silent turn goes out at once");
    assert!(
        matches!(
            slow.try_recv(),
            Err(DisconnectReason::TooSlow { dropped: 1 })
        ),
        "a client that would miss an END cannot stay in step"
    );
}

#[tokio::test(start_paused = true)]
async fn filters_select_a_session_and_text_is_not_paced() {
    let relay = Relay::new(RelayConfig::default());
    let mut only_a = relay.subscribe(ClientFilter {
        session: Some(sid("a")),
        ..ClientFilter::default()
    });
    let (engine, _stops) = relay.attach_producer(true);
    let (a, b) = (sid("a"), sid("b"));
    for seq in 0..30 {
        engine.send(chunk(&a, 1, seq)).await.expect("a");
        engine.send(chunk(&b, 1, seq)).await.expect("b");
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    engine
        .send(RelayFrame::UserInput(UserInputFrame {
            session_id: a.clone(),
            turn: TurnNo(2),
            content: "次は？".into(),
        }))
        .await
        .expect("forwarded");
    engine
        .send(RelayFrame::TextDelta(TextDeltaFrame {
            session_id: a.clone(),
            turn: TurnNo(2),
            content: "えっと".into(),
            eos: false,
        }))
        .await
        .expect("forwarded");
    let log = recv_until(&mut only_a, Duration::from_secs(2), |s| {
        matches!(s, Seen::Chunk { seq: 29, .. })
    })
    .await;
    assert!(
        chunks_of(&log, "b").is_empty(),
        "a session filter keeps other sessions out"
    );
    let text_at = log
        .iter()
        .position(|(_, s)| *s == Seen::Other)
        .expect("text arrived");
    assert!(
        text_at < 20,
        "USER_INPUT/TEXT_DELTA overtake the queued audio (position {text_at} of {})",
        log.len()
    );
}

#[tokio::test(start_paused = true)]
async fn frames_encode_per_client_choice() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, _stops) = relay.attach_producer(true);
    let session = sid("enc");
    let sent = chunk(&session, 3, 0);
    engine.send(sent.clone()).await.expect("queued");
    let frame = client.recv().await.expect("released at once");
    let RelayFrame::SpeechChunk(sent_chunk) = &sent else {
        panic!("a speech chunk was sent")
    };
    let mut header = sent_chunk.clone();
    header.pcm.clear();
    assert_eq!(
        frame.frame(),
        &RelayFrame::SpeechChunk(header),
        "inside the process the frame carries no base64"
    );
    assert_eq!(
        frame.samples().map(<[i16]>::to_vec),
        Some(sent_chunk.decode_pcm().expect("valid base64")),
        "its audio is the samples, decoded once at the ingest edge (20 ms at 24 kHz = 480)"
    );

    let WsFrame::Text(json) = frame.to_ws(&ClientFilter::default()) else {
        panic!("JSON text by default")
    };
    let parsed: RelayFrame = serde_json::from_str(&json).expect("the §2 shape");
    assert_eq!(parsed, sent, "text frames carry the §2 JSON, pcm as base64");

    let silent = ClientFilter {
        audio: false,
        binary_audio: true,
        ..ClientFilter::default()
    };
    let WsFrame::Text(json) = frame.to_ws(&silent) else {
        panic!("audio=0 wins over binary: JSON text")
    };
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        value["pcm"], "",
        "audio=0 clients get the chunk (subtitles, visemes) without PCM"
    );
    assert_eq!(value["seq"], 0, "but otherwise the same frame");

    let binary = ClientFilter {
        binary_audio: true,
        ..ClientFilter::default()
    };
    let WsFrame::Binary(bytes) = frame.to_ws(&binary) else {
        panic!("binary audio was asked for")
    };
    let decoded = decode_binary_chunk(&bytes).expect("our own framing decodes");
    let samples_le: Vec<u8> = frame
        .samples()
        .unwrap_or_default()
        .iter()
        .flat_map(|sample| sample.to_le_bytes())
        .collect();
    assert_eq!(decoded.pcm, samples_le, "raw s16le after the header");
    assert_eq!(decoded.header.seq, 0, "header names the chunk");

    let WsFrame::Binary(again) = frame.to_ws(&binary) else {
        panic!("binary audio was asked for")
    };
    assert_eq!(
        again.as_ptr(),
        bytes.as_ptr(),
        "a second binary client gets the same bytes: framed once per chunk, not per client"
    );
    assert!(
        std::ptr::eq(frame.json(), frame.json()),
        "the JSON form is made once and shared"
    );
}

#[tokio::test]
async fn only_clients_that_say_they_are_overlays_count_as_overlays() {
    let relay = Relay::new(RelayConfig::default());
    let as_role = |role| ClientFilter {
        role,
        ..ClientFilter::default()
    };
    let _panel = relay.subscribe(as_role(ClientRole::Panel));
    let _internal = relay.subscribe(ClientFilter::default());
    assert_eq!(relay.metrics().clients_connected, 2);
    assert_eq!(relay.metrics().overlays_connected, 0, "no overlay open");
    let overlay = relay.subscribe(as_role(ClientRole::Overlay));
    assert_eq!(relay.metrics().overlays_connected, 1);
    assert_eq!(relay.metrics().clients_connected, 3);
    drop(overlay);
    assert_eq!(
        relay.metrics().overlays_connected,
        0,
        "a closed overlay is not counted"
    );
}

#[tokio::test(start_paused = true)]
async fn overlays_get_chat_picks_and_retractions_but_not_the_flood_of_drops() {
    use koto_protocol::live_chat::ChatDecisionFrame;
    let relay = Relay::new(RelayConfig::default());
    let mut overlay = relay.subscribe(ClientFilter {
        role: ClientRole::Overlay,
        ..ClientFilter::default()
    });
    let mut panel = relay.subscribe(ClientFilter {
        role: ClientRole::Panel,
        ..ClientFilter::default()
    });
    let (engine, _stops) = relay.attach_producer(true);
    let session = sid("live-chat");
    let decision = |id: &str, decision: &str| {
        RelayFrame::ChatDecision(ChatDecisionFrame {
            session_id: session.clone(),
            message_id: id.into(),
            platform: "twitch".into(),
            user_id: "7".into(),
            decision: decision.into(),
            reason: "test".into(),
            reason_code: "test".into(),
            user_name: None,
            text: None,
            ts: 0,
        })
    };
    for (id, kind) in [
        ("d1", "dropped"),
        ("p1", "picked"),
        ("d2", "dropped"),
        ("p1", "retracted"),
    ] {
        engine.send(decision(id, kind)).await.expect("forwarded");
    }
    let seen = |client: &mut koto_relay::LiveClient| {
        let mut kinds = Vec::new();
        while let Ok(Some(frame)) = client.try_recv() {
            if let RelayFrame::ChatDecision(d) = frame.frame() {
                kinds.push(format!("{} {}", d.decision, d.message_id));
            }
        }
        kinds
    };
    assert_eq!(
        seen(&mut panel),
        ["dropped d1", "picked p1", "dropped d2", "retracted p1"],
        "the panel explains every decision"
    );
    assert_eq!(
        seen(&mut overlay),
        ["picked p1", "retracted p1"],
        "the overlay only shows what is answered"
    );
}

#[tokio::test(start_paused = true)]
async fn a_line_held_for_the_veto_reaches_the_panel_and_never_an_overlay() {
    use koto_protocol::ingest::VetoPendingFrame;
    let relay = Relay::new(RelayConfig::default());
    let mut overlay = relay.subscribe(ClientFilter {
        role: ClientRole::Overlay,
        ..ClientFilter::default()
    });
    let mut panel = relay.subscribe(ClientFilter {
        role: ClientRole::Panel,
        ..ClientFilter::default()
    });
    let (engine, _stops) = relay.attach_producer(true);
    engine
        .send(RelayFrame::VetoPending(VetoPendingFrame {
            session_id: sid("veto"),
            turn: koto_core::TurnNo(0),
            text: "Something risky.".into(),
            window_ms: 1500,
        }))
        .await
        .expect("forwarded");
    let held = |client: &mut koto_relay::LiveClient| {
        let mut lines = Vec::new();
        while let Ok(Some(frame)) = client.try_recv() {
            if let RelayFrame::VetoPending(pending) = frame.frame() {
                lines.push(pending.text.clone());
            }
        }
        lines
    };
    assert_eq!(held(&mut panel), ["Something risky."]);
    assert!(
        held(&mut overlay).is_empty(),
        "the stream never sees a held line"
    );
}
