//! The queue's rules, one by one, on a fake clock (plain `now_ms` numbers).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::chat::{ChatAmount, ChatRoles, ChatUser};

pub(super) fn message(id: &str, user: &str, kind: ChatKind, text: &str) -> ChatEvent {
    ChatEvent {
        platform: "twitch".into(),
        channel: "chan".into(),
        message_id: id.into(),
        user: ChatUser {
            id: user.into(),
            name: format!("{user}_name"),
            badges: Vec::new(),
            roles: ChatRoles::default(),
        },
        kind,
        text: text.into(),
        emotes: Vec::new(),
        amount: None,
        target_id: None,
        platform_time_ms: None,
        received_ms: 0,
    }
}

pub(super) fn moderation(kind: ChatKind, target: &str) -> ChatEvent {
    let mut event = message("mod", "moderator", kind, "");
    event.target_id = Some(target.into());
    event
}

fn quick() -> QueueConfig {
    QueueConfig {
        answer_every_ms: 10_000,
        ..QueueConfig::default()
    }
}

fn reasons(decisions: &[Decision]) -> Vec<(String, &'static str, &'static str)> {
    decisions
        .iter()
        .map(|d| (d.message_id.clone(), d.outcome.as_str(), d.reason.code()))
        .collect()
}

fn picked_id(queue: &mut ChatQueue, now_ms: i64) -> Option<String> {
    let pick = queue.pick(now_ms, false)?;
    queue.finished(&pick.event.message_id);
    Some(pick.event.message_id)
}

#[test]
fn paid_beats_question_beats_mention_beats_chat() {
    let mut queue = ChatQueue::new(QueueConfig {
        answer_every_ms: 0,
        names: vec!["Koto".into()],
        ..QueueConfig::default()
    });
    queue.push(message("chat", "a", ChatKind::Message, "nice stream"), 0);
    queue.push(message("mention", "b", ChatKind::Message, "hi koto"), 0);
    queue.push(
        message("question", "c", ChatKind::Message, "what game is this?"),
        0,
    );
    let mut paid = message("paid", "d", ChatKind::Superchat, "love it");
    paid.amount = Some(ChatAmount {
        minor_units: 3000,
        currency: "CNY".into(),
    });
    queue.push(paid, 0);
    let order: Vec<String> = (0..4).filter_map(|i| picked_id(&mut queue, i)).collect();
    assert_eq!(
        order,
        ["paid", "question", "mention", "chat"],
        "kinds rank paid > question > mention > chat"
    );
}

#[test]
fn a_pick_says_what_it_was_and_how_long_it_waited() {
    let mut queue = ChatQueue::new(quick());
    let mut paid = message("sc", "a", ChatKind::Superchat, "hello");
    paid.amount = Some(ChatAmount {
        minor_units: 3000,
        currency: "CNY".into(),
    });
    queue.push(paid, 1_000);
    let pick = queue.pick(5_000, false).unwrap();
    assert_eq!(pick.decision.outcome, Outcome::Picked);
    assert!(
        pick.decision
            .reason
            .to_string()
            .starts_with("superchat ¥30, waited 4 s"),
        "the reason names the kind, amount and wait: {}",
        pick.decision.reason
    );
}

#[test]
fn older_messages_of_a_kind_lose_to_fresher_ones_but_never_fall_below_the_next_kind() {
    let mut queue = ChatQueue::new(QueueConfig {
        answer_every_ms: 0,
        max_wait_ms: i64::MAX,
        ..QueueConfig::default()
    });
    queue.push(message("old-q", "a", ChatKind::Question, "old question"), 0);
    queue.push(
        message("new-q", "b", ChatKind::Question, "new question"),
        60_000,
    );
    queue.push(
        message("chat", "c", ChatKind::Message, "fresh chat"),
        600_000,
    );
    let order: Vec<String> = (0..3)
        .filter_map(|i| picked_id(&mut queue, 600_000 + i))
        .collect();
    assert_eq!(
        order,
        ["new-q", "old-q", "chat"],
        "decay orders within a kind only"
    );
}

#[test]
fn a_viewer_answered_recently_waits_behind_others() {
    let mut queue = ChatQueue::new(QueueConfig {
        answer_every_ms: 0,
        ..QueueConfig::default()
    });
    queue.push(
        message("a1", "alice", ChatKind::Question, "first question"),
        0,
    );
    assert_eq!(picked_id(&mut queue, 1).as_deref(), Some("a1"));
    queue.push(
        message("a2", "alice", ChatKind::Question, "second question"),
        2,
    );
    queue.push(message("b1", "bob", ChatKind::Question, "bob asks"), 2);
    assert_eq!(
        picked_id(&mut queue, 3).as_deref(),
        Some("b1"),
        "fairness: bob has not been answered yet"
    );
}

#[test]
fn near_identical_messages_count_once_with_a_counter() {
    let mut queue = ChatQueue::new(quick());
    assert!(
        queue
            .push(message("m1", "u0", ChatKind::Message, "LOOOL"), 0)
            .is_empty()
    );
    let mut last = Vec::new();
    for i in 1..12 {
        last = queue.push(
            message(
                &format!("m{}", i + 1),
                &format!("u{i}"),
                ChatKind::Message,
                "lol!!",
            ),
            i,
        );
    }
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].reason.to_string(), "duplicate ×12 of m1");
    assert_eq!(queue.len(), 1, "one waiting message stands for all twelve");
    assert_eq!(queue.waiting(20).first().map(|w| w.count), Some(12));
    assert_eq!(
        reasons(&queue.push(message("late", "z", ChatKind::Message, "lol"), 40_000)),
        [],
        "after the window the same text waits again"
    );
}

#[test]
fn filters_drop_long_linked_blocked_and_empty_messages() {
    let mut queue = ChatQueue::new(QueueConfig {
        max_chars: 20,
        blocked_words: ["shabi"]
            .iter()
            .filter_map(|w| BlockedWord::new(w))
            .collect(),
        ..quick()
    });
    let dropped: Vec<_> = [
        message("long", "a", ChatKind::Message, &"x".repeat(21)),
        message("link", "b", ChatKind::Message, "buy at spam.com"),
        message("word", "c", ChatKind::Message, "ni sha bi"),
        message("pinyin", "d", ChatKind::Message, "shǎbī"),
        message("empty", "e", ChatKind::Message, " ?! "),
    ]
    .into_iter()
    .flat_map(|event| queue.push(event, 0))
    .collect();
    assert_eq!(
        reasons(&dropped),
        [
            ("long".into(), "dropped", "too_long"),
            ("link".into(), "dropped", "link"),
            ("word".into(), "dropped", "blocked_word"),
            ("pinyin".into(), "dropped", "blocked_word"),
            ("empty".into(), "dropped", "empty"),
        ]
    );
    assert!(queue.is_empty());
}

#[test]
fn cadence_allows_one_answer_per_period_and_none_while_the_streamer_talks() {
    let mut queue = ChatQueue::new(quick());
    for i in 0..3 {
        queue.push(
            message(
                &format!("q{i}"),
                &format!("u{i}"),
                ChatKind::Question,
                &format!("question {i}?"),
            ),
            0,
        );
    }
    assert!(queue.pick(0, true).is_none(), "the streamer's turn runs");
    assert_eq!(queue.hold(0, true), Some(Hold::StreamerTalking));
    let first = queue.pick(0, false).unwrap();
    assert_eq!(
        queue.hold(1, false),
        Some(Hold::Answering),
        "one answer at a time"
    );
    queue.finished(&first.event.message_id);
    assert_eq!(
        queue.hold(9_999, false),
        Some(Hold::Cadence { next_at_ms: 10_000 })
    );
    assert!(queue.pick(10_000, false).is_some(), "the period passed");

    let mut eager = ChatQueue::new(QueueConfig {
        answer_during_streamer: true,
        ..quick()
    });
    eager.push(message("q", "u", ChatKind::Question, "now?"), 0);
    assert!(
        eager.pick(0, true).is_some(),
        "configured to talk over the streamer"
    );
}

#[test]
fn a_full_queue_keeps_the_best_and_says_who_went() {
    let mut queue = ChatQueue::new(QueueConfig {
        capacity: 2,
        ..quick()
    });
    queue.push(message("c1", "a", ChatKind::Message, "one"), 0);
    queue.push(message("c2", "b", ChatKind::Message, "two"), 0);
    let evicted = queue.push(message("q", "c", ChatKind::Question, "three?"), 0);
    assert_eq!(reasons(&evicted), [("c2".into(), "dropped", "evicted")]);
    let refused = queue.push(message("c3", "d", ChatKind::Message, "four"), 0);
    assert_eq!(reasons(&refused), [("c3".into(), "dropped", "queue_full")]);
    assert_eq!(queue.len(), 2);
}

#[test]
fn one_viewer_cannot_fill_the_queue() {
    let mut queue = ChatQueue::new(QueueConfig {
        max_per_user: 2,
        ..quick()
    });
    queue.push(message("a", "spam", ChatKind::Message, "one"), 0);
    queue.push(message("b", "spam", ChatKind::Message, "two"), 0);
    let third = queue.push(message("c", "spam", ChatKind::Message, "three"), 0);
    assert_eq!(reasons(&third), [("c".into(), "dropped", "user_flood")]);
}

#[test]
fn a_delete_drops_the_message_and_a_ban_every_message_of_the_user() {
    let mut queue = ChatQueue::new(quick());
    queue.push(message("m1", "alice", ChatKind::Message, "one"), 0);
    queue.push(message("m2", "bob", ChatKind::Message, "two"), 0);
    queue.push(message("m3", "bob", ChatKind::Message, "three"), 0);
    let deleted = queue.push(moderation(ChatKind::Delete, "m1"), 1);
    assert_eq!(reasons(&deleted), [("m1".into(), "dropped", "deleted")]);
    let banned = queue.push(moderation(ChatKind::Ban, "bob"), 2);
    assert_eq!(
        reasons(&banned),
        [
            ("m2".into(), "dropped", "banned"),
            ("m3".into(), "dropped", "banned")
        ]
    );
    let later = queue.push(message("m4", "bob", ChatKind::Message, "I'm back"), 3);
    assert_eq!(reasons(&later), [("m4".into(), "dropped", "banned")]);
    assert!(queue.is_empty());
}

#[test]
fn a_delete_of_the_message_being_answered_retracts_it() {
    let mut queue = ChatQueue::new(quick());
    queue.push(message("m1", "alice", ChatKind::Question, "why?"), 0);
    let pick = queue.pick(0, false).unwrap();
    let decisions = queue.push(moderation(ChatKind::Delete, &pick.event.message_id), 1);
    assert_eq!(reasons(&decisions), [("m1".into(), "retracted", "deleted")]);
    assert!(
        queue.answering().is_none(),
        "the answer is no longer current"
    );
    assert_eq!(queue.stats().retracted, 1);

    queue.push(message("m2", "bob", ChatKind::Question, "how?"), 20_000);
    let pick = queue.pick(20_000, false).unwrap();
    let decisions = queue.push(moderation(ChatKind::Ban, &pick.event.user.id), 20_001);
    assert_eq!(reasons(&decisions), [("m2".into(), "retracted", "banned")]);
}

#[test]
fn a_delete_that_overtakes_its_message_still_drops_it() {
    let mut queue = ChatQueue::new(quick());
    queue.push(moderation(ChatKind::Delete, "m1"), 0);
    let late = queue.push(message("m1", "a", ChatKind::Message, "hi"), 1);
    assert_eq!(reasons(&late), [("m1".into(), "dropped", "deleted")]);
}

#[test]
fn streamer_pin_skip_and_answer_now() {
    let mut queue = ChatQueue::new(quick());
    queue.push(message("chat", "a", ChatKind::Message, "plain"), 0);
    queue.push(message("q", "b", ChatKind::Question, "asked?"), 0);
    queue.push(message("other", "c", ChatKind::Message, "other"), 0);
    assert!(queue.pin("chat"));
    let pick = queue.pick(0, false).unwrap();
    assert_eq!(pick.event.message_id, "chat", "a pin beats the scores");
    assert_eq!(pick.decision.reason.code(), "pinned");
    queue.finished("chat");
    let skipped = queue.skip("q").unwrap();
    assert_eq!(skipped.reason.code(), "skipped");
    let now = queue.answer_now("other", 1).unwrap();
    assert_eq!(now.decision.reason.code(), "answer_now", "past the cadence");
    assert!(!queue.pin("gone"), "pinning an unknown message says so");
}

#[test]
fn messages_that_wait_too_long_expire_unless_pinned() {
    let mut queue = ChatQueue::new(QueueConfig {
        max_wait_ms: 1_000,
        ..quick()
    });
    queue.push(message("old", "a", ChatKind::Message, "old"), 0);
    queue.push(message("pinned", "b", ChatKind::Message, "kept"), 0);
    queue.pin("pinned");
    let expired = queue.expire(1_001);
    assert_eq!(reasons(&expired), [("old".into(), "dropped", "expired")]);
    assert_eq!(queue.len(), 1);
}

#[test]
fn a_redelivered_message_is_dropped_once_seen() {
    let mut queue = ChatQueue::new(quick());
    queue.push(message("m1", "a", ChatKind::Message, "hello"), 0);
    let again = queue.push(message("m1", "a", ChatKind::Message, "hello"), 1);
    assert_eq!(reasons(&again), [("m1".into(), "dropped", "redelivered")]);
}
