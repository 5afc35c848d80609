//! Many sessions at once on a multi-threaded runtime and a real SQLite file.

use std::collections::BTreeMap;
use std::time::Duration;

use koto_engine::EngineConfig;

use crate::{drain, rig, session, start, text};

const SESSIONS: usize = 8;
const TURNS: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_sessions_times_fifty_turns_lose_duplicate_or_reorder_nothing() {
    let rig = rig(EngineConfig {
        context_turns: 3,
        ..EngineConfig::default()
    });
    for _ in 0..(SESSIONS as u64 * TURNS) {
        rig.llm.push_tokens(Duration::ZERO, &["ok", "."]);
    }
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let engine = rig.engine.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("load-{s}");
            // Fire each session's turns without waiting: the engine must queue them in order.
            let mut handles = Vec::new();
            for n in 0..TURNS {
                handles.push(start(&engine, text(&id, &format!("{id} says {n}"))).await);
            }
            let mut turns = Vec::new();
            for mut handle in handles {
                turns.push(handle.turn.0);
                drain(&mut handle).await;
            }
            turns
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.unwrap(),
            (0..TURNS).collect::<Vec<_>>(),
            "turn numbers 0..50 in order"
        );
    }
    for s in 0..SESSIONS {
        let id = format!("load-{s}");
        let stored = rig.store.context(&session(&id), TURNS as usize).unwrap();
        let by_turn: BTreeMap<u64, String> = stored
            .iter()
            .map(|t| (t.turn.0, t.user_text.clone()))
            .collect();
        assert_eq!(
            stored.len(),
            TURNS as usize,
            "{id}: every turn stored exactly once"
        );
        for (n, user_text) in by_turn {
            assert_eq!(
                user_text,
                format!("{id} says {n}"),
                "{id}: turn {n} holds its own input"
            );
        }
        let turns: Vec<u64> = stored.iter().map(|t| t.turn.0).collect();
        assert!(
            turns.windows(2).all(|w| w[0] < w[1]),
            "{id}: stored in order"
        );
    }
    // Each turn's prompt held exactly its predecessors' inputs, in order (turns ran in order).
    for request in rig.llm.requests() {
        let users: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == koto_core::llm::Role::User)
            .map(|m| m.content.as_str())
            .collect();
        let (last, earlier) = users.split_last().unwrap();
        let (id, n) = last.split_once(" says ").unwrap();
        let n: u64 = n.parse().unwrap();
        let expected: Vec<String> = (n.saturating_sub(3)..n)
            .map(|k| format!("{id} says {k}"))
            .collect();
        assert_eq!(
            earlier,
            expected.iter().map(String::as_str).collect::<Vec<_>>(),
            "context of {last}"
        );
    }
}
