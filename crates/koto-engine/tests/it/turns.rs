//! One session's turns: order of events, what is stored, STOP, failures, commands, flags.

use std::time::Duration;

use koto_core::llm::Role;
use koto_core::turn::InputKind;
use koto_core::{ProviderError, TurnNo};
use koto_engine::{EngineConfig, EngineError, Flags, Submission, TurnEvent};
use koto_protocol::ErrorCode;
use koto_testkit::scripted::{ScriptedLlm, Step};

use crate::{drain, rig, rig_with_llm, session, shape, start, text};

const GAP: Duration = Duration::from_millis(1);

#[tokio::test]
async fn completed_turn_streams_deltas_then_eos_then_done_and_is_stored() {
    let rig = rig(EngineConfig::default());
    rig.llm.push_tokens(GAP, &["Hel", "lo", "!"]);
    let mut handle = start(&rig.engine, text("s1", "hi")).await;
    assert_eq!(handle.turn, TurnNo(0), "a new session starts at turn 0");
    let events = drain(&mut handle).await;
    assert_eq!(
        shape(&events),
        [
            "delta \"Hel\" eos=false",
            "delta \"lo\" eos=false",
            "delta \"!\" eos=false",
            "delta \"\" eos=true",
            "done tokens=3 interrupted=false"
        ],
        "CONTRACTS §1 order: deltas, an eos delta, done last"
    );
    let TurnEvent::Done(stats) = events.last().unwrap() else {
        unreachable!()
    };
    assert!(
        stats.ttft_ms.is_some(),
        "ttft is measured once a delta was written"
    );
    let context = rig.store.context(&session("s1"), 10).unwrap();
    assert_eq!(context.len(), 1);
    assert_eq!(
        (
            context[0].user_text.as_str(),
            context[0].reply_text.as_str()
        ),
        ("hi", "Hello!")
    );
    let outbox = rig.store.outbox_pending(0, 100).unwrap();
    let types: Vec<&str> = outbox.iter().map(|row| row.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "UserInput",
            "LtmWriteRequested",
            "AnalyticsChatStats",
            "TurnCompleted"
        ],
        "one row per consumer"
    );
    assert!(
        outbox.iter().all(|row| row.correlation_id == "s1#0"),
        "events carry sessionId#turn"
    );
}

#[tokio::test]
async fn next_turn_sees_the_previous_reply_in_its_context() {
    let rig = rig(EngineConfig {
        system_prompt: "be nice".into(),
        ..EngineConfig::default()
    });
    rig.llm.push_tokens(GAP, &["first reply"]);
    rig.llm.push_tokens(GAP, &["second reply"]);
    drain(&mut start(&rig.engine, text("s1", "one")).await).await;
    let second = start(&rig.engine, text("s1", "two")).await;
    assert_eq!(second.turn, TurnNo(1), "turns are numbered automatically");
    drain(&mut { second }).await;
    let prompt: Vec<(Role, String)> = rig.llm.requests()[1]
        .messages
        .iter()
        .map(|m| (m.role, m.content.clone()))
        .collect();
    assert_eq!(
        prompt,
        vec![
            (Role::System, "be nice".into()),
            (Role::User, "one".into()),
            (Role::Assistant, "first reply".into()),
            (Role::User, "two".into())
        ]
    );
}

#[tokio::test]
async fn context_is_limited_to_the_last_n_turns() {
    let rig = rig(EngineConfig {
        context_turns: 2,
        ..EngineConfig::default()
    });
    for n in 0..4 {
        drain(&mut start(&rig.engine, text("s1", &format!("q{n}"))).await).await;
    }
    let last = rig.llm.requests().pop().unwrap();
    let users: Vec<&str> = last
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        users,
        ["q1", "q2", "q3"],
        "two earlier turns plus the new input"
    );
}

/// A local server's prompt cache hits when a prompt starts with the previous one: the window
/// keeps its prefix for half its length in a row instead of sliding every turn.
#[tokio::test]
async fn consecutive_prompts_share_their_prefix_for_most_turns() {
    let rig = rig(EngineConfig {
        system_prompt: "be nice".into(),
        context_turns: 6,
        ..EngineConfig::default()
    });
    let turns = 30;
    for n in 0..turns {
        rig.llm.push_tokens(GAP, &[&format!("reply {n}.")]);
        drain(&mut start(&rig.engine, text("s1", &format!("q{n}"))).await).await;
    }
    let requests = rig.llm.requests();
    let mut breaks = 0;
    for pair in requests.windows(2) {
        let earlier = &pair[0].messages[..pair[0].messages.len() - 1];
        if !pair[1].messages.starts_with(earlier) {
            breaks += 1;
        }
    }
    for (n, request) in requests.iter().enumerate() {
        let earlier_turns = request
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .count()
            - 1;
        assert!(
            earlier_turns <= 6,
            "turn {n}: at most the window ({earlier_turns})"
        );
        assert!(
            n <= 6 || earlier_turns >= 3,
            "turn {n}: at least half of it ({earlier_turns})"
        );
    }
    // Sliding one turn at a time, every prompt after the sixth would break it: 23 of 29.
    assert!(
        breaks <= turns / 3,
        "the prefix changed {breaks} times in {turns} turns"
    );
}

/// With a server that caches prompts on this machine, the turn before the window drops its
/// older half sends the next prompt's prefix ahead (system prompt + the turns the next window
/// keeps), so the next turn finds it cached; the next prompt is exactly that prefix plus the new
/// input. A cloud API (no prompt cache) is sent nothing extra.
#[tokio::test]
async fn the_turn_before_a_window_drop_warms_the_next_prefix_on_a_local_server() {
    for local in [true, false] {
        let llm = if local {
            ScriptedLlm::with_prompt_cache()
        } else {
            ScriptedLlm::new()
        };
        let rig = rig_with_llm(
            EngineConfig {
                system_prompt: "be nice".into(),
                context_turns: 6,
                ..EngineConfig::default()
            },
            llm,
        );
        let mut warmed_after = Vec::new();
        for n in 0..12u64 {
            let before = rig.llm.requests().len();
            rig.llm.push_tokens(GAP, &[&format!("reply {n}.")]);
            drain(&mut start(&rig.engine, text("s1", &format!("q{n}"))).await).await;
            // A warm-up is sent after the turn; wait for it before scripting the next reply.
            let expected = before + 1 + usize::from(local && [6, 8, 11].contains(&n));
            tokio::time::timeout(Duration::from_secs(10), async {
                while rig.llm.requests().len() < expected {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("turn {n}: {expected} requests by now (local: {local})"));
            if rig.llm.requests().len() > before + 1 {
                warmed_after.push(n);
            }
        }
        let requests = rig.llm.requests();
        if !local {
            assert!(warmed_after.is_empty(), "nothing extra to a cloud API");
            assert_eq!(requests.len(), 12);
            continue;
        }
        assert_eq!(
            warmed_after,
            [6, 8, 11],
            "only before the window drops its older half"
        );
        for (at, warm) in requests.iter().enumerate() {
            let is_warm = warm
                .messages
                .last()
                .is_some_and(|m| m.role == Role::Assistant);
            if !is_warm || at + 1 >= requests.len() {
                continue;
            }
            let next = &requests[at + 1].messages;
            assert!(
                next.starts_with(&warm.messages) && next.len() == warm.messages.len() + 1,
                "the next prompt is the warmed prefix plus the new input"
            );
            assert_eq!(
                warm.messages[0].content, "be nice",
                "from the system prompt on"
            );
        }
    }
}

#[tokio::test]
async fn stop_mid_stream_records_only_what_was_delivered() {
    let rig = rig(EngineConfig::default());
    rig.llm.push_reply(vec![
        Step::Delta(GAP, "Once ".into()),
        Step::Delta(GAP, "upon".into()),
        Step::Hang,
    ]);
    let mut handle = start(&rig.engine, text("s1", "story")).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(handle.events.recv().await.unwrap());
    }
    assert_eq!(
        rig.engine
            .interrupt(&session("s1"), "user_interrupt")
            .await
            .unwrap()
            .stopped,
        vec![TurnNo(0)],
        "the running turn is stopped"
    );
    seen.extend(drain(&mut handle).await);
    assert_eq!(
        shape(&seen),
        [
            "delta \"Once \" eos=false",
            "delta \"upon\" eos=false",
            "control STOPPED Some(\"user_interrupt\")",
            "done tokens=2 interrupted=true"
        ]
    );
    let context = rig.store.context(&session("s1"), 10).unwrap();
    assert_eq!(
        context[0].reply_text, "Once upon",
        "stored as delivered, no '...' marker"
    );
    assert!(context[0].interrupted, "flagged interrupted");
    let types: Vec<String> = rig
        .store
        .outbox_pending(0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.event_type)
        .collect();
    assert!(
        types.contains(&"TurnInterrupted".to_owned()),
        "plugins hear about the interruption: {types:?}"
    );
}

#[tokio::test]
async fn stop_with_nothing_running_is_harmless_and_repeatable() {
    let rig = rig(EngineConfig::default());
    assert_eq!(
        rig.engine
            .interrupt(&session("idle"), "user_interrupt")
            .await
            .unwrap()
            .stopped,
        vec![],
        "nothing to stop"
    );
    assert_eq!(
        rig.engine
            .interrupt(&session("idle"), "user_interrupt")
            .await
            .unwrap()
            .stopped,
        vec![],
        "still nothing"
    );
    drain(&mut start(&rig.engine, text("idle", "hi")).await).await;
    assert_eq!(
        rig.engine
            .interrupt(&session("idle"), "user_interrupt")
            .await
            .unwrap()
            .stopped,
        vec![],
        "between turns: nothing to stop"
    );
}

#[tokio::test]
async fn stop_cancels_queued_turns_of_that_session_only() {
    let rig = rig(EngineConfig::default());
    rig.llm
        .push_reply(vec![Step::Delta(GAP, "a".into()), Step::Hang]);
    let mut running = start(&rig.engine, text("s1", "one")).await;
    running.events.recv().await.unwrap();
    let mut queued = start(&rig.engine, text("s1", "two")).await;
    rig.llm.push_tokens(GAP, &["other"]);
    let mut other = start(&rig.engine, text("s2", "hello")).await;
    assert_eq!(
        rig.engine
            .interrupt(&session("s1"), "user_interrupt")
            .await
            .unwrap()
            .stopped,
        vec![TurnNo(0), TurnNo(1)]
    );
    assert_eq!(
        shape(&drain(&mut queued).await),
        [
            "control STOPPED Some(\"user_interrupt\")",
            "done tokens=0 interrupted=true"
        ]
    );
    drain(&mut running).await;
    let other_events = shape(&drain(&mut other).await);
    assert_eq!(
        other_events.last().unwrap(),
        "done tokens=1 interrupted=false",
        "s2 was not touched"
    );
}

#[tokio::test]
async fn provider_failure_sends_error_then_done_and_leaves_no_half_turn() {
    let rig = rig(EngineConfig::default());
    rig.llm.push_reply(vec![
        Step::Delta(GAP, "par".into()),
        Step::Fail(ProviderError::Timeout("idle".into())),
    ]);
    let events = drain(&mut start(&rig.engine, text("s1", "hi")).await).await;
    assert_eq!(
        shape(&events),
        [
            "delta \"par\" eos=false",
            "error llm_timeout",
            "done tokens=1 interrupted=false"
        ]
    );
    assert!(
        rig.store.context(&session("s1"), 10).unwrap().is_empty(),
        "a failed turn never becomes context"
    );
    let history = rig.store.history(&session("s1"), None, 5).unwrap();
    assert_eq!(history[0].status, koto_store::TurnStatus::Failed);
    assert_eq!(
        history[0].reply_text.as_deref(),
        Some("par"),
        "what reached the caller before the failure is kept: {history:?}"
    );
    assert_eq!(history[0].reason.as_deref(), Some("llm_timeout"));
    assert!(
        history[0].ended_ms >= Some(history[0].started_ms),
        "a failed turn says when it ended: {history:?}"
    );
    let types: Vec<String> = rig
        .store
        .outbox_pending(0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.event_type)
        .collect();
    assert_eq!(
        types,
        ["UserInput", "AnalyticsChatStats", "TurnFailed"],
        "analytics still learn of the failure"
    );
}

#[tokio::test]
async fn a_turn_failing_before_any_text_still_says_when_it_ended() {
    let rig = rig(EngineConfig::default());
    rig.llm.push_reply(vec![Step::Fail(ProviderError::Timeout(
        "first token".into(),
    ))]);
    drain(&mut start(&rig.engine, text("s1", "hi")).await).await;
    let history = rig.store.history(&session("s1"), None, 5).unwrap();
    assert_eq!(history[0].status, koto_store::TurnStatus::Failed);
    assert_eq!(history[0].reply_text, None, "nothing was said");
    assert!(
        history[0].ended_ms >= Some(history[0].started_ms),
        "endedMs from the user row (store M6): {history:?}"
    );
}

#[tokio::test]
async fn dropping_the_handle_cancels_the_turn() {
    let rig = rig(EngineConfig::default());
    rig.llm
        .push_reply(vec![Step::Delta(GAP, "x".into()), Step::Hang]);
    let mut handle = start(&rig.engine, text("s1", "hi")).await;
    handle.events.recv().await.unwrap();
    drop(handle);
    // The turn records its ending once it has seen the cancellation; wait for that, not a time.
    rig.engine.shutdown(Duration::from_secs(30)).await;
    let context = rig.store.context(&session("s1"), 10).unwrap();
    assert_eq!(context.len(), 1, "the disconnected turn was recorded");
    assert!(
        context[0].interrupted && context[0].reply_text == "x",
        "as interrupted, with what was sent"
    );
}

#[tokio::test]
async fn explicit_turn_numbers_and_conflicts() {
    let rig = rig(EngineConfig::default());
    let mut request = text("s1", "hi");
    request.turn = Some(42);
    let mut handle = start(&rig.engine, request.clone()).await;
    assert_eq!(handle.turn, TurnNo(42));
    drain(&mut handle).await;
    let error = rig
        .engine
        .submit(request)
        .await
        .expect_err("turn 42 exists");
    assert!(
        matches!(error, EngineError::TurnExists { turn: TurnNo(42) }),
        "{error:?}"
    );
    assert_eq!(
        start(&rig.engine, text("s1", "next")).await.turn,
        TurnNo(43),
        "automatic numbering continues"
    );
}

#[tokio::test]
async fn input_validation_codes() {
    let rig = rig(EngineConfig {
        max_content_chars: 5,
        ..EngineConfig::default()
    });
    let code = |error: EngineError| error.code();
    assert_eq!(
        code(rig.engine.submit(text("s1", "  \n")).await.unwrap_err()),
        ErrorCode::EmptyContent
    );
    assert_eq!(
        code(
            rig.engine
                .submit(text("s1", "你好你好你好"))
                .await
                .unwrap_err()
        ),
        ErrorCode::ContentTooLong
    );
    assert!(
        rig.engine.submit(text("s1", "你好你好你")).await.is_ok(),
        "the limit counts characters, not bytes"
    );
}

#[tokio::test]
async fn commands_stop_reset_and_unknown() {
    let rig = rig(EngineConfig::default());
    drain(&mut start(&rig.engine, text("s1", "remember me")).await).await;
    let command = |content: &str| {
        let mut request = text("s1", content);
        request.kind = InputKind::Command;
        request
    };
    assert!(matches!(
        rig.engine.submit(command("reset")).await.unwrap(),
        Submission::Reset
    ));
    drain(&mut start(&rig.engine, text("s1", "fresh")).await).await;
    let users = rig
        .llm
        .requests()
        .last()
        .unwrap()
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .count();
    assert_eq!(users, 1, "after reset the window is empty");
    assert!(matches!(
        rig.engine.submit(command("STOP")).await.unwrap(),
        Submission::Stopped { .. }
    ));
    let error = rig.engine.submit(command("dance")).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::UnknownCommand);
    assert_eq!(
        rig.engine.submit(command("say")).await.unwrap_err().code(),
        ErrorCode::EmptyContent
    );
}

#[tokio::test]
async fn flags_have_visible_effects() {
    let off = |flags: Flags| {
        rig(EngineConfig {
            flags,
            ..EngineConfig::default()
        })
    };
    let rig_core = off(Flags {
        sync_core: false,
        ..Flags::default()
    });
    assert_eq!(
        rig_core
            .engine
            .submit(text("s1", "hi"))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::SyncCoreDisabled
    );

    let rig_barge = off(Flags {
        barge_in: false,
        ..Flags::default()
    });
    assert_eq!(
        rig_barge
            .engine
            .interrupt(&session("s1"), "user_interrupt")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::BargeInDisabled
    );

    let rig_async = off(Flags {
        async_ext: false,
        ..Flags::default()
    });
    drain(&mut start(&rig_async.engine, text("s1", "hi")).await).await;
    assert!(
        rig_async.store.outbox_pending(0, 10).unwrap().is_empty(),
        "no outbox events without ENABLE_ASYNC_EXT"
    );
    assert_eq!(
        rig_async.store.context(&session("s1"), 10).unwrap().len(),
        1,
        "memory is still kept"
    );
}

#[tokio::test]
async fn shutdown_interrupts_running_turns_and_refuses_new_ones() {
    let rig = rig(EngineConfig::default());
    rig.llm.push_reply(vec![Step::Hang]);
    let mut handle = start(&rig.engine, text("s1", "hi")).await;
    rig.engine.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        shape(&drain(&mut handle).await),
        [
            "control STOPPED Some(\"shutdown\")",
            "done tokens=0 interrupted=true"
        ]
    );
    assert_eq!(
        rig.engine
            .submit(text("s1", "more"))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::ShuttingDown
    );
}

#[tokio::test]
async fn reconfigure_answers_the_next_turn_and_lets_a_running_one_finish_as_it_began() {
    let rig = rig(EngineConfig {
        system_prompt: "old persona".into(),
        ..EngineConfig::default()
    });
    rig.llm
        .push_tokens(Duration::from_millis(100), &["one ", "two ", "three."]);
    let mut running = start(&rig.engine, text("s1", "first")).await;
    let first_delta = running.events.recv().await;
    assert!(
        matches!(first_delta, Some(TurnEvent::TextDelta { .. })),
        "the first turn is streaming when the profile changes"
    );

    let other = koto_testkit::scripted::ScriptedLlm::new();
    other.push_tokens(GAP, &["new ", "llm."]);
    let mut profile = (*rig.engine.profile()).clone();
    profile.config.system_prompt = "new persona".into();
    profile.llm = std::sync::Arc::new(other.clone());
    rig.engine.reconfigure(profile);

    let rest = drain(&mut running).await;
    assert_eq!(
        shape(&rest).last().map(String::as_str),
        Some("done tokens=3 interrupted=false"),
        "the running turn ends on the LLM it started with"
    );
    let mut next = start(&rig.engine, text("s1", "second")).await;
    drain(&mut next).await;
    assert_eq!(rig.llm.requests().len(), 1, "the old LLM got one turn");
    let asked = other.requests();
    assert_eq!(asked.len(), 1, "the next turn goes to the new LLM");
    assert_eq!(asked[0].messages[0].role, Role::System);
    assert_eq!(
        asked[0].messages[0].content, "new persona",
        "and carries the new persona"
    );
    assert_eq!(
        rig.llm.requests()[0].messages[0].content,
        "old persona",
        "the first turn was asked with the persona it began under"
    );
}
