//! Property: whatever arrives in whatever order, nothing is lost — every message pushed ends
//! picked, dropped or still waiting, exactly once — and the queue never exceeds its bound.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use proptest::prelude::*;

use super::tests::{message, moderation};
use super::*;

#[derive(Debug, Clone)]
enum Step {
    Push {
        id: u8,
        user: u8,
        kind: u8,
        text: u8,
    },
    Delete {
        id: u8,
    },
    Ban {
        user: u8,
    },
    Pick {
        busy: bool,
    },
    Finish,
    Expire,
    Skip {
        id: u8,
    },
    Pin {
        id: u8,
    },
    AnswerNow {
        id: u8,
    },
    Wait {
        ms: u16,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (any::<u8>(), 0u8..12, 0u8..8, 0u8..10)
            .prop_map(|(id, user, kind, text)| Step::Push { id, user, kind, text }),
        1 => any::<u8>().prop_map(|id| Step::Delete { id }),
        1 => (0u8..12).prop_map(|user| Step::Ban { user }),
        2 => any::<bool>().prop_map(|busy| Step::Pick { busy }),
        1 => Just(Step::Finish),
        1 => Just(Step::Expire),
        1 => any::<u8>().prop_map(|id| Step::Skip { id }),
        1 => any::<u8>().prop_map(|id| Step::Pin { id }),
        1 => any::<u8>().prop_map(|id| Step::AnswerNow { id }),
        2 => any::<u16>().prop_map(|ms| Step::Wait { ms }),
    ]
}

const TEXTS: &[&str] = &[
    "hello",
    "HELLO!!",
    "what is this?",
    "go to spam.com",
    "",
    "你好",
    "sha bi",
    "a very long message that is longer than the limit of forty chars",
    "kappa",
    "gg",
];

const KINDS: &[ChatKind] = &[
    ChatKind::Message,
    ChatKind::Question,
    ChatKind::Mention,
    ChatKind::Superchat,
    ChatKind::Gift,
    ChatKind::Sub,
    ChatKind::Raid,
    ChatKind::Redemption,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn nothing_is_lost_and_the_bound_holds(
        capacity in 1usize..8,
        steps in proptest::collection::vec(step(), 1..200),
    ) {
        let mut queue = ChatQueue::new(QueueConfig {
            capacity,
            answer_every_ms: 500,
            max_chars: 40,
            max_wait_ms: 5_000,
            max_per_user: 2,
            blocked_words: BlockedWord::new("shabi").into_iter().collect(),
            ..QueueConfig::default()
        });
        // message key → how many terminal decisions (picked or dropped) it got.
        let mut ended: HashMap<String, u32> = HashMap::new();
        let mut pushed: Vec<String> = Vec::new();
        let mut now = 0i64;
        let note = |decisions: &[Decision], ended: &mut HashMap<String, u32>| {
            for decision in decisions {
                if decision.outcome != Outcome::Retracted {
                    *ended.entry(decision.message_id.clone()).or_default() += 1;
                }
            }
        };
        let mut serial = 0u32;
        for step in steps {
            match step {
                Step::Push { id, user, kind, text } => {
                    // Each push is its own message (a repeated platform id would be a redelivery,
                    // which is a second message to account for); ids stay reachable for steps.
                    serial += 1;
                    let message_id = format!("{id}-{serial}");
                    let event = message(
                        &message_id,
                        &format!("u{user}"),
                        KINDS[usize::from(kind) % KINDS.len()],
                        TEXTS[usize::from(text) % TEXTS.len()],
                    );
                    pushed.push(message_id);
                    let decisions = queue.push(event, now);
                    note(&decisions, &mut ended);
                }
                Step::Delete { id } => {
                    let target = pick_id(&pushed, id);
                    let decisions = queue.push(moderation(ChatKind::Delete, &target), now);
                    note(&decisions, &mut ended);
                }
                Step::Ban { user } => {
                    let decisions =
                        queue.push(moderation(ChatKind::Ban, &format!("u{user}")), now);
                    note(&decisions, &mut ended);
                }
                Step::Pick { busy } => {
                    if let Some(pick) = queue.pick(now, busy) {
                        note(&[pick.decision], &mut ended);
                    }
                }
                Step::Finish => {
                    if let Some(id) = queue.answering().map(|p| p.event.message_id.clone()) {
                        queue.finished(&id);
                    }
                }
                Step::Expire => {
                    let decisions = queue.expire(now);
                    note(&decisions, &mut ended);
                }
                Step::Skip { id } => {
                    if let Some(decision) = queue.skip(&pick_id(&pushed, id)) {
                        note(&[decision], &mut ended);
                    }
                }
                Step::Pin { id } => {
                    queue.pin(&pick_id(&pushed, id));
                }
                Step::AnswerNow { id } => {
                    if let Some(pick) = queue.answer_now(&pick_id(&pushed, id), now) {
                        note(&[pick.decision], &mut ended);
                    }
                }
                Step::Wait { ms } => now += i64::from(ms),
            }
            prop_assert!(queue.len() <= capacity, "the queue holds at most its capacity");
        }
        let waiting: Vec<String> =
            queue.waiting(now).into_iter().map(|w| w.event.message_id).collect();
        for id in &pushed {
            let decided = ended.get(id).copied().unwrap_or(0);
            let still = u32::from(waiting.contains(id));
            prop_assert_eq!(decided + still, 1, "{} ends exactly once (picked, dropped or waiting)", id);
        }
        let stats = queue.stats();
        prop_assert_eq!(stats.received, pushed.len() as u64);
        prop_assert_eq!(stats.picked + stats.dropped + waiting.len() as u64, stats.received);
    }
}

fn pick_id(pushed: &[String], index: u8) -> String {
    if pushed.is_empty() {
        return "none".into();
    }
    pushed[usize::from(index) % pushed.len()].clone()
}
