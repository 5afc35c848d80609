//! The scored chat queue: which viewer message the co-host answers next, and why every other
//! one was not. Bounded, explainable, moderation-aware.
//!
//! No IO, no tokio, no clock of its own: every call takes `now_ms` (tests use a fake clock).
//! Each message pushed ends in exactly one of *picked*, *dropped* or *still waiting*, and every
//! pick and drop comes back as a [`Decision`] with its [`Reason`]; a picked message may later be
//! *retracted* (a moderator deleted it or banned its author) — the driver stops that answer.
//!
//! Score: a base by kind (paid > question > mention > chat), more for a paid amount and for the
//! near-identical messages it stands for, times an age decay that never takes a message below
//! half its base (so the kinds stay in order), divided by how often this viewer was answered
//! recently (fairness).

mod decision;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
pub(crate) mod text;

use std::collections::{HashMap, HashSet, VecDeque};

pub use decision::{Decision, Outcome, Reason, amount_text, kind_name, minor_digits};
pub use text::{BlockedWord, duplicate_key, find_blocked, has_link};

use crate::chat::{ChatEvent, ChatKind};

/// The queue's knobs (config `CHAT_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Most messages waiting at once; beyond it the lowest score goes.
    pub capacity: usize,
    /// At most one chat answer per this many ms (`CHAT_ANSWER_EVERY_S`).
    pub answer_every_ms: i64,
    /// Answer chat while the streamer's own turn runs.
    pub answer_during_streamer: bool,
    /// Longer messages are dropped (chars).
    pub max_chars: usize,
    pub allow_links: bool,
    pub blocked_words: Vec<BlockedWord>,
    /// Near-identical messages within this window count once.
    pub duplicate_window_ms: i64,
    /// Age at which a message's age factor is halfway to its floor.
    pub half_life_ms: i64,
    /// Messages waiting longer are dropped (pinned ones are kept).
    pub max_wait_ms: i64,
    /// Most messages one viewer may have waiting.
    pub max_per_user: usize,
    /// Answers to a viewer within this window lower their next scores.
    pub fairness_window_ms: i64,
    /// A ban is remembered this long: later messages of the user are dropped.
    pub ban_memory_ms: i64,
    /// The co-host's names: a message naming one is a mention.
    pub names: Vec<String>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 200,
            answer_every_ms: 20_000,
            answer_during_streamer: false,
            max_chars: 300,
            allow_links: false,
            blocked_words: Vec::new(),
            duplicate_window_ms: 30_000,
            half_life_ms: 30_000,
            max_wait_ms: 120_000,
            max_per_user: 3,
            fairness_window_ms: 600_000,
            ban_memory_ms: 600_000,
            names: Vec::new(),
        }
    }
}

/// A message handed to the driver, with its decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub event: ChatEvent,
    /// The kind it was scored as (a `message` ending in `?` is a question).
    pub kind: ChatKind,
    /// Near-identical messages it stands for (1: itself).
    pub count: u32,
    pub decision: Decision,
}

/// A waiting message as the panel and `GET /chat/queue` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingView {
    pub event: ChatEvent,
    pub kind: ChatKind,
    pub score: f64,
    pub waited_ms: i64,
    pub count: u32,
    pub pinned: bool,
}

/// Totals since start: `received == picked + dropped + waiting` for non-moderation messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub received: u64,
    pub picked: u64,
    pub dropped: u64,
    pub retracted: u64,
    pub moderation: u64,
}

/// Why `pick` gave nothing (for the panel; not a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Empty,
    /// An answer is still being spoken.
    Answering,
    /// The streamer's own turn runs.
    StreamerTalking,
    /// The cadence allows the next answer at this time.
    Cadence {
        next_at_ms: i64,
    },
}

#[derive(Debug, Clone)]
struct Waiting {
    seq: u64,
    event: ChatEvent,
    kind: ChatKind,
    arrived_ms: i64,
    count: u32,
    pinned: bool,
    dup_key: Option<String>,
}

#[derive(Debug, Clone)]
struct Recent {
    message_id: String,
    count: u32,
}

type UserKey = (String, String);

#[derive(Debug)]
pub struct ChatQueue {
    config: QueueConfig,
    waiting: Vec<Waiting>,
    next_seq: u64,
    /// Duplicate keys seen within the window, with the message that stands for them.
    recent: HashMap<String, Recent>,
    /// `(arrival, key)` oldest first, to forget `recent` entries as the window passes.
    recent_order: VecDeque<(i64, String)>,
    /// Message ids seen lately (redelivery), bounded.
    seen: HashSet<(String, String)>,
    seen_order: VecDeque<(String, String)>,
    /// Message ids deleted before they arrived (a delete can overtake its message).
    deleted: HashSet<(String, String)>,
    deleted_order: VecDeque<(String, String)>,
    banned: HashMap<UserKey, i64>,
    answered: HashMap<UserKey, VecDeque<i64>>,
    /// The message being answered, until `finished`.
    answering: Option<Pick>,
    last_pick_ms: Option<i64>,
    stats: QueueStats,
}

impl ChatQueue {
    pub fn new(config: QueueConfig) -> ChatQueue {
        ChatQueue {
            config,
            waiting: Vec::new(),
            next_seq: 0,
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            deleted: HashSet::new(),
            deleted_order: VecDeque::new(),
            banned: HashMap::new(),
            answered: HashMap::new(),
            answering: None,
            last_pick_ms: None,
            stats: QueueStats::default(),
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// New knobs from now on; waiting messages stay (the capacity applies at the next push).
    pub fn reconfigure(&mut self, config: QueueConfig) {
        self.config = config;
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// The message being answered, if any.
    pub fn answering(&self) -> Option<&Pick> {
        self.answering.as_ref()
    }

    /// Takes one event in. Returns the decisions it caused at once: its own drop, the drop of a
    /// message it pushed out, or — for a moderation event — the messages it removed and the
    /// answer it retracts.
    pub fn push(&mut self, event: ChatEvent, now_ms: i64) -> Vec<Decision> {
        if event.kind.is_moderation() {
            self.stats.moderation += 1;
            return self.moderate(&event, now_ms);
        }
        self.stats.received += 1;
        self.forget_old(now_ms);
        let mut decisions = Vec::new();
        match self.admit(event, now_ms, &mut decisions) {
            Ok(entry) => self.waiting.push(entry),
            Err(rejected) => decisions.push(self.drop_event(&rejected.0, rejected.1)),
        }
        decisions
    }

    /// Drops what waited too long (call it on each tick).
    pub fn expire(&mut self, now_ms: i64) -> Vec<Decision> {
        let max_wait = self.config.max_wait_ms;
        let expired: Vec<Waiting> = self.take_waiting(|entry| {
            !entry.pinned && now_ms.saturating_sub(entry.arrived_ms) > max_wait
        });
        expired
            .into_iter()
            .map(|entry| {
                let waited_ms = now_ms.saturating_sub(entry.arrived_ms);
                self.forget_key(&entry);
                self.drop_event(&entry.event, Reason::Expired { waited_ms })
            })
            .collect()
    }

    /// Why nothing would be picked now, or `None` when a pick would happen.
    pub fn hold(&self, now_ms: i64, streamer_busy: bool) -> Option<Hold> {
        if self.waiting.is_empty() {
            return Some(Hold::Empty);
        }
        if self.answering.is_some() {
            return Some(Hold::Answering);
        }
        if streamer_busy && !self.config.answer_during_streamer {
            return Some(Hold::StreamerTalking);
        }
        if let Some(last) = self.last_pick_ms {
            let next_at_ms = last.saturating_add(self.config.answer_every_ms);
            if now_ms < next_at_ms {
                return Some(Hold::Cadence { next_at_ms });
            }
        }
        None
    }

    /// The next message to answer, when the cadence allows one: a pinned message first, else
    /// the best score (the older on a tie). Nothing while an answer is still running or (unless
    /// configured) while the streamer talks.
    pub fn pick(&mut self, now_ms: i64, streamer_busy: bool) -> Option<Pick> {
        if self.hold(now_ms, streamer_busy).is_some() {
            return None;
        }
        let best = self.best_index(now_ms)?;
        let entry = self.waiting.swap_remove(best);
        let waited_ms = now_ms.saturating_sub(entry.arrived_ms);
        let reason = if entry.pinned {
            Reason::Pinned { waited_ms }
        } else {
            Reason::Best {
                kind: entry.kind,
                amount: entry.event.amount.clone(),
                waited_ms,
                count: entry.count,
                score: self.score(&entry, now_ms),
            }
        };
        Some(self.hand_out(entry, reason, now_ms))
    }

    /// The streamer's "answer now": this message next, past the cadence and the streamer's
    /// turn (the engine queues it behind a running answer).
    pub fn answer_now(&mut self, message_id: &str, now_ms: i64) -> Option<Pick> {
        let index = self
            .waiting
            .iter()
            .position(|entry| entry.event.message_id == message_id)?;
        let entry = self.waiting.swap_remove(index);
        let waited_ms = now_ms.saturating_sub(entry.arrived_ms);
        Some(self.hand_out(entry, Reason::AnswerNow { waited_ms }, now_ms))
    }

    /// The streamer's pin: answered next, kept past the wait limit. False if not waiting.
    pub fn pin(&mut self, message_id: &str) -> bool {
        match self
            .waiting
            .iter_mut()
            .find(|entry| entry.event.message_id == message_id)
        {
            Some(entry) => {
                entry.pinned = true;
                true
            }
            None => false,
        }
    }

    /// The streamer's skip: dropped with `skipped`. `None` if not waiting.
    pub fn skip(&mut self, message_id: &str) -> Option<Decision> {
        let mut skipped = self.take_waiting(|entry| entry.event.message_id == message_id);
        let entry = skipped.pop()?;
        Some(self.drop_event(&entry.event, Reason::Skipped))
    }

    /// The driver is done with the message it was answering (spoken, stopped or failed).
    pub fn finished(&mut self, message_id: &str) {
        if self
            .answering
            .as_ref()
            .is_some_and(|pick| pick.event.message_id == message_id)
        {
            self.answering = None;
        }
    }

    /// The waiting messages, best first, with their scores now.
    pub fn waiting(&self, now_ms: i64) -> Vec<WaitingView> {
        let mut views: Vec<(u64, WaitingView)> = self
            .waiting
            .iter()
            .map(|entry| {
                (
                    entry.seq,
                    WaitingView {
                        event: entry.event.clone(),
                        kind: entry.kind,
                        score: self.score(entry, now_ms),
                        waited_ms: now_ms.saturating_sub(entry.arrived_ms),
                        count: entry.count,
                        pinned: entry.pinned,
                    },
                )
            })
            .collect();
        views.sort_by(|(seq_a, a), (seq_b, b)| {
            b.pinned
                .cmp(&a.pinned)
                .then(b.score.total_cmp(&a.score))
                .then(seq_a.cmp(seq_b))
        });
        views.into_iter().map(|(_, view)| view).collect()
    }

    /// Forgets everything about one viewer: waiting messages (dropped as skipped) and the
    /// fairness history.
    pub fn forget_user(&mut self, platform: &str, user_id: &str) -> Vec<Decision> {
        self.answered
            .remove(&(platform.to_owned(), user_id.to_owned()));
        let gone = self.take_waiting(|entry| is_user(&entry.event, platform, user_id));
        gone.into_iter()
            .map(|entry| self.drop_event(&entry.event, Reason::Skipped))
            .collect()
    }

    fn hand_out(&mut self, entry: Waiting, reason: Reason, now_ms: i64) -> Pick {
        self.stats.picked += 1;
        self.last_pick_ms = Some(now_ms);
        let user = user_key(&entry.event);
        let answers = self.answered.entry(user).or_default();
        answers.push_back(now_ms);
        let decision = decision_for(&entry.event, Outcome::Picked, reason);
        let pick = Pick {
            event: entry.event,
            kind: entry.kind,
            count: entry.count,
            decision,
        };
        self.answering = Some(pick.clone());
        pick
    }

    /// Checks one message; `Ok` is the entry to queue (any eviction is in `decisions`).
    fn admit(
        &mut self,
        event: ChatEvent,
        now_ms: i64,
        decisions: &mut Vec<Decision>,
    ) -> Result<Waiting, Rejected> {
        let id_key = (event.platform.clone(), event.message_id.clone());
        if self.seen.contains(&id_key) {
            return Err(reject(event, Reason::Redelivered));
        }
        self.remember_seen(id_key.clone());
        if self.deleted.contains(&id_key) {
            return Err(reject(event, Reason::Deleted));
        }
        if self
            .banned
            .get(&user_key(&event))
            .is_some_and(|until| *until > now_ms)
        {
            return Err(reject(event, Reason::Banned));
        }
        let kind = self.effective_kind(&event);
        let text = event.text_without_emotes();
        let chars = event.text.chars().count();
        let needs_words = matches!(
            kind,
            ChatKind::Message | ChatKind::Question | ChatKind::Mention
        );
        if chars > self.config.max_chars {
            return Err(reject(
                event,
                Reason::TooLong {
                    chars,
                    max: self.config.max_chars,
                },
            ));
        }
        let key = duplicate_key(&text);
        if needs_words && key.is_empty() {
            return Err(reject(event, Reason::Empty));
        }
        if !self.config.allow_links && has_link(&text) {
            return Err(reject(event, Reason::Link));
        }
        if let Some(word) = find_blocked(&text, &self.config.blocked_words) {
            let word = word.word.clone();
            return Err(reject(event, Reason::BlockedWord { word }));
        }
        // Paid and event messages are each somebody's own; only plain chat collapses.
        let dup_key = (needs_words && !key.is_empty()).then_some(key);
        if let Some(key) = &dup_key
            && let Some(recent) = self.recent.get_mut(key)
        {
            recent.count = recent.count.saturating_add(1);
            let (of, count) = (recent.message_id.clone(), recent.count);
            if let Some(original) = self
                .waiting
                .iter_mut()
                .find(|entry| entry.event.message_id == of)
            {
                original.count = count;
            }
            return Err(reject(event, Reason::Duplicate { of, count }));
        }
        let user = user_key(&event);
        let from_user = self
            .waiting
            .iter()
            .filter(|entry| user_key(&entry.event) == user)
            .count();
        if from_user >= self.config.max_per_user {
            return Err(reject(event, Reason::UserFlood { waiting: from_user }));
        }
        let entry = Waiting {
            seq: self.next_seq,
            event,
            kind,
            arrived_ms: now_ms,
            count: 1,
            pinned: false,
            dup_key,
        };
        if self.waiting.len() >= self.config.capacity.max(1) {
            let score = self.score(&entry, now_ms);
            match self.lowest_index(now_ms) {
                Some((index, lowest)) if lowest < score => {
                    let evicted = self.waiting.swap_remove(index);
                    let lowest_score = lowest;
                    decisions.push(self.drop_event(
                        &evicted.event,
                        Reason::Evicted {
                            score: lowest_score,
                        },
                    ));
                    self.forget_key(&evicted);
                }
                _ => return Err(reject(entry.event, Reason::QueueFull { score })),
            }
        }
        self.next_seq += 1;
        if let Some(key) = &entry.dup_key {
            self.recent.insert(
                key.clone(),
                Recent {
                    message_id: entry.event.message_id.clone(),
                    count: 1,
                },
            );
            self.recent_order.push_back((now_ms, key.clone()));
        }
        Ok(entry)
    }

    fn moderate(&mut self, event: &ChatEvent, now_ms: i64) -> Vec<Decision> {
        let Some(target) = event.target_id.as_deref() else {
            return Vec::new();
        };
        let platform = event.platform.as_str();
        let (reason, removed) = match event.kind {
            ChatKind::Delete => {
                let id_key = (platform.to_owned(), target.to_owned());
                if !self.seen.contains(&id_key) {
                    remember(
                        &mut self.deleted,
                        &mut self.deleted_order,
                        id_key,
                        self.config.capacity.max(1) * 8,
                    );
                }
                let removed = self.take_waiting(|entry| {
                    entry.event.platform == platform && entry.event.message_id == target
                });
                (Reason::Deleted, removed)
            }
            _ => {
                self.banned.insert(
                    (platform.to_owned(), target.to_owned()),
                    now_ms.saturating_add(self.config.ban_memory_ms),
                );
                let removed = self.take_waiting(|entry| is_user(&entry.event, platform, target));
                (Reason::Banned, removed)
            }
        };
        let mut decisions: Vec<Decision> = removed
            .into_iter()
            .map(|entry| {
                self.forget_key(&entry);
                self.drop_event(&entry.event, reason.clone())
            })
            .collect();
        let hits_answer = self.answering.as_ref().is_some_and(|pick| {
            pick.event.platform == platform
                && match event.kind {
                    ChatKind::Delete => pick.event.message_id == target,
                    _ => pick.event.user.id == target,
                }
        });
        if hits_answer && let Some(pick) = self.answering.take() {
            self.stats.retracted += 1;
            decisions.push(decision_for(&pick.event, Outcome::Retracted, reason));
        }
        decisions
    }

    fn effective_kind(&self, event: &ChatEvent) -> ChatKind {
        if event.kind != ChatKind::Message {
            return event.kind;
        }
        let text = event.text.trim_end();
        if text.ends_with('?') || text.ends_with('？') {
            return ChatKind::Question;
        }
        let lower = event.text.to_lowercase();
        let named = self
            .config
            .names
            .iter()
            .map(|name| name.trim().to_lowercase())
            .any(|name| !name.is_empty() && lower.contains(&name));
        if named {
            ChatKind::Mention
        } else {
            ChatKind::Message
        }
    }

    fn score(&self, entry: &Waiting, now_ms: i64) -> f64 {
        let base = match entry.kind {
            ChatKind::Superchat | ChatKind::Gift => 200.0,
            ChatKind::Question => 60.0,
            ChatKind::Mention => 45.0,
            ChatKind::Redemption => 40.0,
            ChatKind::Sub | ChatKind::Raid => 35.0,
            ChatKind::Message => 20.0,
            ChatKind::Delete | ChatKind::Ban => 0.0,
        };
        let paid = entry.event.amount.as_ref().map_or(0.0, |amount| {
            let major = amount.minor_units.max(0) as f64
                / 10f64.powi(decision::minor_digits(&amount.currency) as i32);
            let rough_usd = major / rough_rate(&amount.currency);
            30.0 * (1.0 + rough_usd).log10()
        });
        let popular = 5.0 * f64::from(entry.count.max(1)).log2();
        let first = if entry.event.user.roles.first_message {
            5.0
        } else {
            0.0
        };
        let age = now_ms.saturating_sub(entry.arrived_ms).max(0) as f64;
        let half_life = self.config.half_life_ms.max(1) as f64;
        let decay = 0.5 + 0.5 * 0.5f64.powf(age / half_life);
        let answers = self
            .answered
            .get(&user_key(&entry.event))
            .map_or(0, |times| {
                times
                    .iter()
                    .filter(|at| now_ms.saturating_sub(**at) <= self.config.fairness_window_ms)
                    .count()
            });
        (base + paid + popular + first) * decay / (1.0 + answers as f64)
    }

    fn best_index(&self, now_ms: i64) -> Option<usize> {
        self.waiting
            .iter()
            .enumerate()
            .max_by(|(_, a), (_, b)| {
                a.pinned
                    .cmp(&b.pinned)
                    .then(self.score(a, now_ms).total_cmp(&self.score(b, now_ms)))
                    .then(b.seq.cmp(&a.seq))
            })
            .map(|(index, _)| index)
    }

    /// The lowest-scored unpinned message (the newer on a tie), with its score.
    fn lowest_index(&self, now_ms: i64) -> Option<(usize, f64)> {
        self.waiting
            .iter()
            .enumerate()
            .filter(|(_, entry)| !entry.pinned)
            .map(|(index, entry)| (index, entry.seq, self.score(entry, now_ms)))
            .min_by(|a, b| a.2.total_cmp(&b.2).then(b.1.cmp(&a.1)))
            .map(|(index, _, score)| (index, score))
    }

    fn take_waiting(&mut self, mut matches: impl FnMut(&Waiting) -> bool) -> Vec<Waiting> {
        let mut taken = Vec::new();
        let mut kept = Vec::with_capacity(self.waiting.len());
        for entry in self.waiting.drain(..) {
            if matches(&entry) {
                taken.push(entry);
            } else {
                kept.push(entry);
            }
        }
        self.waiting = kept;
        taken
    }

    fn drop_event(&mut self, event: &ChatEvent, reason: Reason) -> Decision {
        self.stats.dropped += 1;
        decision_for(event, Outcome::Dropped, reason)
    }

    /// A removed message no longer stands for its duplicates: the next one may wait again.
    fn forget_key(&mut self, entry: &Waiting) {
        if let Some(key) = &entry.dup_key
            && self
                .recent
                .get(key)
                .is_some_and(|recent| recent.message_id == entry.event.message_id)
        {
            self.recent.remove(key);
        }
    }

    fn forget_old(&mut self, now_ms: i64) {
        let window = self.config.duplicate_window_ms;
        let hard_cap = self.config.capacity.max(1) * 8;
        while let Some((at, _)) = self.recent_order.front() {
            if now_ms.saturating_sub(*at) <= window && self.recent_order.len() <= hard_cap {
                break;
            }
            if let Some((_, key)) = self.recent_order.pop_front() {
                self.recent.remove(&key);
            }
        }
        self.banned.retain(|_, until| *until > now_ms);
        let fairness = self.config.fairness_window_ms;
        self.answered.retain(|_, times| {
            while times
                .front()
                .is_some_and(|at| now_ms.saturating_sub(*at) > fairness)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    fn remember_seen(&mut self, id_key: (String, String)) {
        let cap = self.config.capacity.max(1) * 8;
        remember(&mut self.seen, &mut self.seen_order, id_key, cap);
    }
}

fn remember(
    set: &mut HashSet<(String, String)>,
    order: &mut VecDeque<(String, String)>,
    key: (String, String),
    cap: usize,
) {
    if set.insert(key.clone()) {
        order.push_back(key);
    }
    while order.len() > cap {
        if let Some(old) = order.pop_front() {
            set.remove(&old);
        }
    }
}

/// A message refused at the door, with why (boxed: the event is large).
type Rejected = Box<(ChatEvent, Reason)>;

fn reject(event: ChatEvent, reason: Reason) -> Rejected {
    Box::new((event, reason))
}

fn user_key(event: &ChatEvent) -> UserKey {
    (event.platform.clone(), event.user.id.clone())
}

fn is_user(event: &ChatEvent, platform: &str, user_id: &str) -> bool {
    event.platform == platform && event.user.id == user_id
}

fn decision_for(event: &ChatEvent, outcome: Outcome, reason: Reason) -> Decision {
    Decision {
        platform: event.platform.clone(),
        message_id: event.message_id.clone(),
        user_id: event.user.id.clone(),
        outcome,
        reason,
    }
}

/// Units per US dollar, roughly: only so a ¥1000 sticker and a $5 super chat score alike.
fn rough_rate(currency: &str) -> f64 {
    match currency.to_ascii_uppercase().as_str() {
        "JPY" => 150.0,
        "KRW" => 1300.0,
        "CNY" => 7.0,
        "TWD" => 30.0,
        "HKD" => 8.0,
        "INR" => 80.0,
        "BITS" => 100.0,
        _ => 1.0,
    }
}
