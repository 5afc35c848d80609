//! `MockLlm`: the embedded default LLM — a deterministic, multi-sentence co-host line that first
//! says it is the demo (no LLM configured), in the request's
//! language (`meta.lang`, else the script of the user's message: Chinese, Japanese, or English for
//! anything else), streamed as token-sized deltas at a fixed pace. No key, no network, no randomness,
//! and never an error (scripted failures belong to test fakes, not to the product's default).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream;
use koto_core::lang::Script;
use koto_core::llm::{LlmDelta, LlmProvider, LlmRequest, LlmStream, Role};

/// How many characters of the user's last message the reply quotes, so turns differ.
const ECHO_CHARS: usize = 16;

/// Sizes (in characters) of successive CJK deltas, cycled: real tokenizers give 1–4 characters
/// per token in Chinese and Japanese, so the segmenter and TTS see realistic pieces.
const CJK_DELTA_CHARS: [usize; 4] = [2, 3, 4, 3];

#[derive(Debug, Clone)]
pub struct MockLlm {
    token_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    English,
    Chinese,
    Japanese,
}

impl MockLlm {
    /// Every delta is yielded `token_delay` after the previous one (the first one `token_delay`
    /// after the first poll). A zero delay yields to the scheduler instead of sleeping.
    pub fn new(token_delay: Duration) -> Self {
        MockLlm { token_delay }
    }

    /// The full reply `stream_chat` streams for `request`; the deltas concatenate to exactly this.
    pub fn reply_text(request: &LlmRequest) -> String {
        let lang = reply_lang(request);
        let echo = echo_of(request, lang);
        match lang {
            // The first sentence says what this is: a demo, not a broken LLM.
            Lang::English => format!(
                "Demo mode: no LLM is set up yet, so this is a sample line. \
                 Oh, \"{echo}\", love that, chat! I'm your co-host for tonight. \
                 Connect a real LLM in Setup and I can answer for real. \
                 What does the rest of chat think? Let's keep the stream going together!"
            ),
            Lang::Chinese => format!(
                "演示模式：还没有配置大模型，这是一句示例回复。「{echo}」，说得好！\
                 我是你今晚的直播搭档。在设置里接上真正的大模型，我就能认真回答了。\
                 弹幕里的各位怎么看呢？我们继续一起开心地直播吧！"
            ),
            Lang::Japanese => format!(
                "デモモード：まだLLMが設定されていないので、これはサンプルの返事です。「{echo}」、いいですね！\
                 今夜の相棒です。設定で本物のLLMをつなげば、ちゃんと答えられます。\
                 チャットのみんなはどう思いますか？このまま一緒に配信を楽しみましょう！"
            ),
        }
    }

    /// The deltas `stream_chat` yields for `request`, in order.
    pub fn deltas(request: &LlmRequest) -> Vec<String> {
        let reply = Self::reply_text(request);
        match reply_lang(request) {
            Lang::English => reply.split_inclusive(' ').map(str::to_owned).collect(),
            Lang::Chinese | Lang::Japanese => {
                let chars: Vec<char> = reply.chars().collect();
                let mut deltas = Vec::new();
                let mut start = 0;
                for size in CJK_DELTA_CHARS.iter().cycle() {
                    if start >= chars.len() {
                        break;
                    }
                    let end = (start + size).min(chars.len());
                    deltas.push(chars[start..end].iter().collect());
                    start = end;
                }
                deltas
            }
        }
    }
}

impl LlmProvider for MockLlm {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn model(&self) -> String {
        "mock".to_owned()
    }

    fn stream_chat(&self, request: LlmRequest) -> LlmStream {
        let deltas: VecDeque<String> = Self::deltas(&request).into();
        let token_delay = self.token_delay;
        Box::pin(stream::unfold(deltas, move |mut deltas| async move {
            let delta = deltas.pop_front()?;
            if token_delay.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(token_delay).await;
            }
            Some((Ok(LlmDelta::Text(delta)), deltas))
        }))
    }
}

/// The request's language if it names one, else the language of the user's last message by its
/// script (Han → Chinese, kana → Japanese, anything else English).
fn reply_lang(request: &LlmRequest) -> Lang {
    if request.lang.is_some() {
        return lang_of(request.lang.as_deref());
    }
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == Role::User);
    match last_user.and_then(|message| Script::dominant(&message.content)) {
        Some(Script::Han) => Lang::Chinese,
        Some(Script::Kana) => Lang::Japanese,
        _ => Lang::English,
    }
}

/// `zh`, `zh-CN`, `zh_TW` → Chinese; `ja`, `ja-JP` → Japanese; anything else English.
fn lang_of(lang: Option<&str>) -> Lang {
    let primary = lang
        .unwrap_or_default()
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match primary.as_str() {
        "zh" | "cmn" | "yue" => Lang::Chinese,
        "ja" | "jpn" => Lang::Japanese,
        _ => Lang::English,
    }
}

/// A short prefix of the last user message, whitespace collapsed; a stand-in when there is none.
fn echo_of(request: &LlmRequest, lang: Lang) -> String {
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == Role::User)
        .map(|message| {
            message
                .content
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    if last_user.is_empty() {
        return match lang {
            Lang::English => "nothing yet".to_owned(),
            Lang::Chinese => "还没说话".to_owned(),
            Lang::Japanese => "まだ何も".to_owned(),
        };
    }
    let mut echo: String = last_user.chars().take(ECHO_CHARS).collect();
    if echo.len() < last_user.len() {
        echo.push('…');
    }
    echo
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures_util::StreamExt;
    use koto_core::llm::ChatMessage;

    use super::*;

    fn request(lang: Option<&str>, user: &str) -> LlmRequest {
        LlmRequest {
            messages: vec![
                ChatMessage::new(Role::System, "You are a co-host."),
                ChatMessage::new(Role::User, user),
            ],
            lang: lang.map(str::to_owned),
            correlation_id: "live-001#0".to_owned(),
        }
    }

    #[test]
    fn language_tags_pick_the_reply_language() {
        assert_eq!(lang_of(Some("zh")), Lang::Chinese, "plain zh");
        assert_eq!(lang_of(Some("zh-CN")), Lang::Chinese, "region subtag");
        assert_eq!(
            lang_of(Some("JA_jp")),
            Lang::Japanese,
            "case and underscore"
        );
        assert_eq!(lang_of(Some("en")), Lang::English, "en");
        assert_eq!(
            lang_of(Some("fr")),
            Lang::English,
            "unsupported falls back to English"
        );
        assert_eq!(
            lang_of(None),
            Lang::English,
            "no hint falls back to English"
        );
    }

    #[test]
    fn without_a_language_the_users_script_picks_the_reply_language() {
        assert_eq!(reply_lang(&request(None, "今晚玩什么？")), Lang::Chinese);
        assert_eq!(
            reply_lang(&request(None, "今日は何をする？")),
            Lang::Japanese
        );
        assert_eq!(
            reply_lang(&request(None, "what are we playing?")),
            Lang::English
        );
        assert_eq!(
            reply_lang(&request(None, "안녕하세요")),
            Lang::English,
            "no Korean mock reply"
        );
        assert_eq!(
            reply_lang(&request(Some("en"), "你好")),
            Lang::English,
            "meta.lang wins over the script"
        );
        let zh = MockLlm::reply_text(&request(None, "你好"));
        assert!(zh.contains("你好"), "a Chinese reply to Chinese: {zh}");
    }

    #[test]
    fn the_reply_first_says_it_is_the_demo_then_reads_like_a_co_host() {
        let cases = [
            (Some("en"), "hi chat", "Demo mode: no LLM is set up yet"),
            (Some("zh"), "你好", "演示模式：还没有配置大模型"),
            (
                Some("ja"),
                "こんにちは",
                "デモモード：まだLLMが設定されていない",
            ),
        ];
        for (lang, user, opening) in cases {
            let reply = MockLlm::reply_text(&request(lang, user));
            assert!(reply.starts_with(opening), "{lang:?}: {reply}");
            assert!(reply.contains(user), "it quotes the message: {reply}");
            assert!(!reply.contains("You said"), "no echo phrasing: {reply}");
        }
    }

    #[test]
    fn echo_is_a_bounded_whitespace_collapsed_prefix() {
        let long = request(None, "  what   game are we playing tonight, chat?  ");
        assert_eq!(
            echo_of(&long, Lang::English),
            "what game are we…",
            "16 chars then an ellipsis"
        );
        let short = request(None, "hi");
        assert_eq!(
            echo_of(&short, Lang::English),
            "hi",
            "short messages are quoted whole"
        );
        let none = LlmRequest {
            messages: vec![],
            lang: None,
            correlation_id: String::new(),
        };
        assert_eq!(
            echo_of(&none, Lang::Chinese),
            "还没说话",
            "no user message still gives a reply"
        );
    }

    #[test]
    fn english_deltas_are_words_with_their_space_and_rebuild_the_reply() {
        let req = request(Some("en"), "hello there");
        let deltas = MockLlm::deltas(&req);
        assert!(
            deltas.len() > 30,
            "about six sentences of words: {}",
            deltas.len()
        );
        assert!(
            deltas[..deltas.len() - 1].iter().all(|d| d.ends_with(' ')),
            "word + space"
        );
        assert_eq!(
            deltas.concat(),
            MockLlm::reply_text(&req),
            "deltas concatenate to the reply"
        );
    }

    #[test]
    fn cjk_deltas_are_two_to_four_chars() {
        for lang in ["zh", "ja"] {
            let req = request(Some(lang), "今晚玩什么？");
            let deltas = MockLlm::deltas(&req);
            let (last, rest) = deltas.split_last().unwrap();
            assert!(
                rest.iter().all(|d| (2..=4).contains(&d.chars().count())),
                "{lang}: every delta but the last is token-sized"
            );
            assert!(
                (1..=4).contains(&last.chars().count()),
                "{lang}: the last delta is the remainder"
            );
            assert_eq!(
                deltas.concat(),
                MockLlm::reply_text(&req),
                "{lang}: nothing lost or added"
            );
        }
    }

    async fn collect(llm: &MockLlm, req: LlmRequest) -> Vec<String> {
        llm.stream_chat(req)
            .map(|delta| match delta.expect("the mock never fails") {
                LlmDelta::Text(text) => text,
                other => panic!("the mock only speaks: {other:?}"),
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn same_request_same_deltas_different_message_different_reply() {
        let llm = MockLlm::new(Duration::ZERO);
        let first = collect(&llm, request(Some("en"), "which game?")).await;
        let again = collect(&llm, request(Some("en"), "which game?")).await;
        let other = collect(&llm, request(Some("en"), "how was your day?")).await;
        assert_eq!(first, again, "the mock is deterministic");
        assert_ne!(
            first.concat(),
            other.concat(),
            "the reply quotes the user, so turns differ"
        );
        assert!(
            first.concat().contains("which game?"),
            "the echo is in the reply"
        );
    }

    #[tokio::test]
    async fn the_reply_language_follows_the_request() {
        let llm = MockLlm::new(Duration::ZERO);
        let zh = collect(&llm, request(Some("zh"), "你好")).await.concat();
        let ja = collect(&llm, request(Some("ja"), "こんにちは"))
            .await
            .concat();
        let en = collect(&llm, request(None, "hi")).await.concat();
        assert!(zh.contains("说得好"), "Chinese reply for zh: {zh}");
        assert!(ja.contains("いいですね"), "Japanese reply for ja: {ja}");
        assert!(
            en.contains("love that"),
            "English reply without a hint: {en}"
        );
        let sentences = |text: &str| {
            text.chars()
                .filter(|c| matches!(c, '.' | '!' | '?' | '。' | '！' | '？'))
                .count()
        };
        for reply in [&zh, &ja, &en] {
            assert_eq!(sentences(reply), 6, "about six sentences: {reply}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_delta_comes_one_token_delay_after_the_previous() {
        let delay = Duration::from_millis(40);
        let llm = MockLlm::new(delay);
        let req = request(Some("en"), "hello");
        let n_expected = MockLlm::deltas(&req).len();
        let started = tokio::time::Instant::now();
        let mut stream = llm.stream_chat(req);
        let mut arrivals = Vec::new();
        while let Some(delta) = stream.next().await {
            delta.expect("the mock never fails");
            arrivals.push(started.elapsed());
        }
        assert_eq!(arrivals.len(), n_expected, "every delta arrives");
        for (index, arrival) in arrivals.iter().enumerate() {
            // Paused time advances exactly by the sleeps, so the schedule is exact.
            assert_eq!(
                *arrival,
                delay * (index as u32 + 1),
                "delta {index} is paced by token_delay"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_happens_until_polled() {
        let llm = MockLlm::new(Duration::from_millis(10));
        let mut stream = llm.stream_chat(request(None, "hi"));
        tokio::time::advance(Duration::from_secs(1)).await;
        let started = tokio::time::Instant::now();
        stream
            .next()
            .await
            .expect("a first delta")
            .expect("the mock never fails");
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(10),
            "the delay starts at the first poll"
        );
    }
}
