//! Long-term memory: exchanges remembered by the LTM worker, recalled by full-text rank (FTS5
//! bm25). It decides nothing about prompts and does no vector search.
//!
//! CJK text has no spaces, so `unicode61` alone would make a whole sentence one token. The
//! indexed body therefore spaces out every CJK character (one token each), and a query matches
//! CJK words as phrases of adjacent characters (bigrams), Latin words as stemmed words. User text
//! never reaches FTS5 as syntax: queries are built from letters and digits only, each quoted.

use koto_core::{SessionId, TurnNo};
use rusqlite::params;

use crate::consumer::{Consumption, consume_in};
use crate::error::StoreError;
use crate::session::turn_to_sql;
use crate::store::Store;

/// An exchange to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMemory {
    pub session: SessionId,
    pub turn: TurnNo,
    pub user_text: String,
    pub reply_text: String,
    pub ts_ms: i64,
    /// The chat viewer who asked, if any: also kept as per-viewer memory.
    pub viewer: Option<crate::viewer::ViewerRef>,
}

/// A recalled exchange, best match first.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub session_id: String,
    pub turn: u64,
    pub user_text: String,
    pub reply_text: String,
    pub ts_ms: i64,
    /// FTS5 bm25: lower is a better match.
    pub rank: f64,
}

/// At most this many terms go into one query: enough for a long question, bounded work.
const MAX_QUERY_TERMS: usize = 32;

/// Words that match nearly every memory and say nothing about its subject.
const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "are", "as", "at", "be", "but", "by", "can", "could", "did",
    "do", "does", "for", "from", "had", "has", "have", "he", "her", "him", "his", "how", "i", "if",
    "in", "is", "it", "its", "just", "know", "like", "me", "my", "no", "not", "of", "on", "or",
    "our", "please", "remember", "she", "so", "tell", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "to", "us", "was", "we", "were", "what",
    "when", "where", "which", "who", "why", "will", "with", "would", "yes", "you", "your",
];

/// CJK bigrams as common as stop words.
const STOP_BIGRAMS: &[&str] = &[
    "什么", "我的", "你的", "我们", "你们", "一个", "这个", "那个", "怎么", "为什", "是什", "的是",
    "是不", "不是", "知道", "记得", "还记", "吗", "了吗",
];

/// Characters indexed one by one: Han, kana, Hangul (and their extension blocks).
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF    // Katakana phonetic extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // Half-width katakana
        | 0x20000..=0x3FFFF  // CJK extensions B and later
    )
}

/// The FTS body: the text with a space on each side of every CJK character.
pub(crate) fn fts_body(text: &str) -> String {
    let mut body = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if is_cjk(c) {
            body.push(' ');
            body.push(c);
            body.push(' ');
        } else {
            body.push(c);
        }
    }
    body
}

/// An FTS5 MATCH expression for raw user text: quoted terms joined by OR, or `None` when the text
/// holds nothing to search for. Only letters and digits survive, so quotes, `*`, `-`, `:`,
/// parentheses and the bare words NEAR/AND/OR/NOT can never act as syntax.
pub fn memory_match_query(text: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    let mut push = |term: String| {
        if !terms.contains(&term) && terms.len() < MAX_QUERY_TERMS {
            terms.push(term);
        }
    };
    let mut word = String::new();
    let mut cjk_run: Vec<char> = Vec::new();
    let flush_word = |word: &mut String, push: &mut dyn FnMut(String)| {
        let lower = word.to_lowercase();
        word.clear();
        if lower.chars().count() >= 2 && !STOP_WORDS.contains(&lower.as_str()) {
            push(format!("\"{lower}\""));
        }
    };
    let flush_cjk = |run: &mut Vec<char>, push: &mut dyn FnMut(String)| {
        if run.len() == 1 {
            let single = run[0].to_string();
            if !STOP_BIGRAMS.contains(&single.as_str()) {
                push(format!("\"{single}\""));
            }
        }
        for pair in run.windows(2) {
            let bigram: String = pair.iter().collect();
            if !STOP_BIGRAMS.contains(&bigram.as_str()) {
                push(format!("\"{} {}\"", pair[0], pair[1]));
            }
        }
        run.clear();
    };
    for c in text.chars() {
        if is_cjk(c) {
            if !word.is_empty() {
                flush_word(&mut word, &mut push);
            }
            cjk_run.push(c);
        } else if c.is_alphanumeric() {
            if !cjk_run.is_empty() {
                flush_cjk(&mut cjk_run, &mut push);
            }
            word.push(c);
        } else {
            if !word.is_empty() {
                flush_word(&mut word, &mut push);
            }
            if !cjk_run.is_empty() {
                flush_cjk(&mut cjk_run, &mut push);
            }
        }
    }
    if !word.is_empty() {
        flush_word(&mut word, &mut push);
    }
    if !cjk_run.is_empty() {
        flush_cjk(&mut cjk_run, &mut push);
    }
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

impl Store {
    /// Remembers `memory` as `consumer`'s effect of `outbox_id`, exactly once: a redelivered id
    /// is `Duplicate` and changes nothing.
    pub fn remember(
        &self,
        consumer: &str,
        stream: &str,
        outbox_id: i64,
        memory: &NewMemory,
    ) -> Result<Consumption, StoreError> {
        let turn = turn_to_sql(memory.turn)?;
        let body = fts_body(&format!("{}\n{}", memory.user_text, memory.reply_text));
        self.write(|transaction| {
            let consumed = consume_in(transaction, consumer, stream, outbox_id, memory.ts_ms)?;
            if consumed == Consumption::Duplicate {
                return Ok(consumed);
            }
            transaction
                .prepare_cached(
                    "INSERT INTO memories(outbox_id, sessionId, turn, user_text, reply_text, ts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    outbox_id,
                    memory.session.as_str(),
                    turn,
                    memory.user_text,
                    memory.reply_text,
                    memory.ts_ms
                ])?;
            let id = transaction.last_insert_rowid();
            transaction
                .prepare_cached("INSERT INTO memories_fts(rowid, body) VALUES (?1, ?2)")?
                .execute(params![id, body])?;
            if let Some(viewer) = &memory.viewer {
                crate::viewer::remember_viewer_in(
                    transaction,
                    viewer,
                    &memory.user_text,
                    &memory.reply_text,
                    memory.ts_ms,
                )?;
            }
            Ok(Consumption::Applied)
        })
    }

    /// Up to `k` memories of any session that match `query`, best first (bm25, newer first on
    /// ties). Text with nothing searchable recalls nothing.
    pub fn recall_memories(&self, query: &str, k: usize) -> Result<Vec<Memory>, StoreError> {
        let Some(expression) = memory_match_query(query) else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(k).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut select = conn.prepare_cached(
                "SELECT m.sessionId, m.turn, m.user_text, m.reply_text, m.ts, bm25(memories_fts) AS rank
                 FROM memories_fts JOIN memories AS m ON m.id = memories_fts.rowid
                 WHERE memories_fts MATCH ?1
                 ORDER BY rank, m.id DESC
                 LIMIT ?2",
            )?;
            let rows = select.query_map(params![expression, limit], |row| {
                let turn: i64 = row.get(1)?;
                Ok(Memory {
                    session_id: row.get(0)?,
                    turn: turn.unsigned_abs(),
                    user_text: row.get(2)?,
                    reply_text: row.get(3)?,
                    ts_ms: row.get(4)?,
                    rank: row.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    /// How many memories are stored.
    pub fn memory_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT COUNT(*) FROM memories")?
                .query_row([], |row| row.get::<_, i64>(0))
                .map(i64::unsigned_abs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_quotes_words_and_drops_syntax() {
        assert_eq!(
            memory_match_query("What's my cat's NAME?").as_deref(),
            Some("\"cat\" OR \"name\""),
            "stop words and one-letter fragments go, case folds"
        );
        assert_eq!(
            memory_match_query("\"foo\" NEAR(bar* -baz) OR x:y").as_deref(),
            Some("\"foo\" OR \"near\" OR \"bar\" OR \"baz\""),
            "quotes, *, -, :, parentheses vanish; NEAR/OR become plain quoted words (or stop words)"
        );
        assert_eq!(
            memory_match_query("?!* -- \"\""),
            None,
            "nothing searchable"
        );
    }

    #[test]
    fn cjk_becomes_bigram_phrases() {
        assert_eq!(
            memory_match_query("我的猫叫小花").as_deref(),
            Some("\"的 猫\" OR \"猫 叫\" OR \"叫 小\" OR \"小 花\""),
            "adjacent-character phrases; the stop bigram 我的 is left out"
        );
        assert_eq!(
            memory_match_query("猫").as_deref(),
            Some("\"猫\""),
            "a lone character is searched as itself"
        );
        assert_eq!(
            memory_match_query("Mochiは猫です").as_deref(),
            Some("\"mochi\" OR \"は 猫\" OR \"猫 で\" OR \"で す\""),
            "Latin words and kana/kanji runs split where the script changes"
        );
    }

    #[test]
    fn body_spaces_out_cjk_only() {
        assert_eq!(
            fts_body("猫abc 叫"),
            " 猫 abc  叫 ",
            "CJK characters become tokens, Latin words stay whole"
        );
    }

    fn remember(
        store: &Store,
        outbox_id: i64,
        session: &str,
        user: &str,
        reply: &str,
    ) -> Consumption {
        let memory = NewMemory {
            session: SessionId::parse(session).unwrap(),
            turn: TurnNo(outbox_id as u64),
            user_text: user.into(),
            reply_text: reply.into(),
            ts_ms: outbox_id,
            viewer: None,
        };
        store
            .remember("ltm-workers", "events.ltm", outbox_id, &memory)
            .unwrap()
    }

    #[test]
    fn recall_ranks_across_sessions_in_english_and_chinese() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        remember(
            &store,
            1,
            "old-session",
            "My cat is called Mochi.",
            "What a lovely name!",
        );
        remember(
            &store,
            2,
            "old-session",
            "我最喜欢的游戏是塞尔达。",
            "塞尔达确实很好玩！",
        );
        remember(
            &store,
            3,
            "other",
            "The weather is nice today.",
            "Indeed it is.",
        );

        let english = store.recall_memories("what is my cat's name?", 3).unwrap();
        assert_eq!(
            english.first().map(|memory| memory.user_text.as_str()),
            Some("My cat is called Mochi."),
            "the cat fact ranks first for a cat question, whatever session asks"
        );
        assert!(
            english
                .iter()
                .all(|memory| !memory.user_text.contains("weather")),
            "an unrelated memory does not match at all: {english:?}"
        );
        let chinese = store
            .recall_memories("你还记得我喜欢什么游戏吗", 3)
            .unwrap();
        assert_eq!(
            chinese.first().map(|memory| memory.session_id.as_str()),
            Some("old-session"),
            "a Chinese question finds the Chinese memory by shared bigrams"
        );
        assert!(
            chinese[0].user_text.contains("塞尔达"),
            "the game fact is recalled: {chinese:?}"
        );
    }

    #[test]
    fn hostile_queries_are_data_and_memories_are_remembered_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        assert_eq!(
            remember(&store, 1, "s", "NEAR the \"river\" * bank - east", "ok"),
            Consumption::Applied,
            "first"
        );
        assert_eq!(
            remember(&store, 1, "s", "NEAR the river", "ok"),
            Consumption::Duplicate,
            "same outbox id again"
        );
        assert_eq!(
            store.memory_count().unwrap(),
            1,
            "a redelivery stores nothing"
        );
        for hostile in [
            "\"",
            "*",
            "NEAR(",
            "-",
            "river\" OR \"",
            "a:b",
            "(",
            "NOT",
            "AND OR",
        ] {
            let result = store.recall_memories(hostile, 5);
            assert!(
                result.is_ok(),
                "{hostile:?} must not be an FTS syntax error: {result:?}"
            );
        }
        let found = store.recall_memories("\"river\" NEAR bank*", 5).unwrap();
        assert_eq!(
            found.len(),
            1,
            "syntax characters are stripped, the words still match"
        );
    }
}
