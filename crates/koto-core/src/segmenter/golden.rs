//! Golden cases: how real replies (zh, ja, en, mixed) are cut. Every case is also fed one char
//! per delta, which must cut identically, and its transcript must add up to the input.
//! Regenerate after an intended change with `UPDATE_EXPECT=1 cargo test -p koto-core` and
//! review the diff.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use expect_test::{Expect, expect};

use super::{Segment, Segmenter, SegmenterConfig};

fn segment<'a>(
    config: &SegmenterConfig,
    deltas: impl IntoIterator<Item = &'a str>,
) -> (Vec<Segment>, String) {
    let mut segmenter = Segmenter::new(config.clone());
    let mut segments = Vec::new();
    for delta in deltas {
        segments.extend(segmenter.push(delta));
    }
    segments.extend(segmenter.finish());
    (segments, segmenter.pending_text().to_owned())
}

fn render(segments: &[Segment], tail: &str) -> String {
    let mut out = String::new();
    for segment in segments {
        if segment.text == segment.speak {
            writeln!(out, "{} {:?}", segment.index, segment.text).unwrap();
        } else {
            writeln!(
                out,
                "{} {:?} -> {:?}",
                segment.index, segment.text, segment.speak
            )
            .unwrap();
        }
    }
    if !tail.is_empty() {
        writeln!(out, "unspoken {tail:?}").unwrap();
    }
    out
}

fn check(input: &str, expect: Expect) {
    check_with(&SegmenterConfig::default(), input, expect);
}

fn check_with(config: &SegmenterConfig, input: &str, expect: Expect) {
    let (whole, tail) = segment(config, [input]);
    let one_char_deltas: Vec<String> = input.chars().map(String::from).collect();
    let (by_char, by_char_tail) = segment(config, one_char_deltas.iter().map(String::as_str));
    assert_eq!(
        (&whole, &tail),
        (&by_char, &by_char_tail),
        "one char per delta must cut exactly like one delta: {input:?}"
    );
    let transcript: String = whole
        .iter()
        .map(|s| s.text.as_str())
        .chain([tail.as_str()])
        .collect();
    assert_eq!(
        transcript, input,
        "segments plus the unspoken tail must be the whole reply"
    );
    expect.assert_eq(&render(&whole, &tail));
}

#[test]
fn chinese() {
    check(
        "你好。今天天气很好！我们去公园吧？",
        expect![[r#"
        0 "你好。"
        1 "今天天气很好！"
        2 "我们去公园吧？"
    "#]],
    );
    check(
        "今天我们先去超市买一些水果和蔬菜，然后回家做一顿丰盛的晚饭，最后一起看一部电影。",
        expect![[r#"
            0 "今天我们先去超市买一些水果和蔬菜，"
            1 "然后回家做一顿丰盛的晚饭，最后一起看一部电影。"
        "#]],
    );
    check(
        "他说：“明天见。”然后就走了。",
        expect![[r#"
            0 "他说："
            1 "“明天见。”"
            2 "然后就走了。"
        "#]],
    );
    check(
        "《三体》是一本好书。你读过吗？",
        expect![[r#"
        0 "《三体》是一本好书。"
        1 "你读过吗？"
    "#]],
    );
    check(
        "嗯……让我想想。好吧。",
        expect![[r#"
        0 "嗯……"
        1 "让我想想。"
        2 "好吧。"
    "#]],
    );
    check(
        "真的吗？！太好了！！我们出发。",
        expect![[r#"
        0 "真的吗？！"
        1 "太好了！！"
        2 "我们出发。"
    "#]],
    );
    check(
        "圆周率约等于3.14。你知道吗？",
        expect![[r#"
        0 "圆周率约等于3.14。"
        1 "你知道吗？"
    "#]],
    );
    check(
        "全国有3.5亿人在看。",
        expect![[r#"
        0 "全国有3.5亿人在看。"
    "#]],
    );
    check(
        "你好,世界。这是半角逗号,也能断开吗?可以!",
        expect![[r#"
            0 "你好,"
            1 "世界。"
            2 "这是半角逗号,也能断开吗?"
            3 "可以!"
        "#]],
    );
    check(
        "（笑）大家好，欢迎来到直播间。",
        expect![[r#"
        0 "（笑）大家好，"
        1 "欢迎来到直播间。"
    "#]],
    );
    check(
        "他说：「她说『好。』」然后呢？",
        expect![[r#"
            0 "他说："
            1 "「她说『好。』」"
            2 "然后呢？"
        "#]],
    );
    check(
        "这是一段非常非常长而且完全没有任何标点符号的中文文本它会一直持续下去直到超过最大长度限制为止然后还要继续写很多很多字才能再次超过限制",
        expect![[r#"
            0 "这是一段非常非常长而且完全没有任何标点符号的中文"
            1 "文本它会一直持续下去直到超过最大长度限制为止然后还要继续写很多很多字才能再次超过限制"
        "#]],
    );
    check(
        "好的，我现在就帮你查一下今天的天气情况，请稍等。",
        expect![[r#"
            0 "好的，"
            1 "我现在就帮你查一下今天的天气情况，请稍等。"
        "#]],
    );
    check(
        "第一行\n第二行\n\n第三行",
        expect![[r#"
        0 "第一行\n" -> "第一行"
        1 "第二行\n\n" -> "第二行"
        2 "第三行"
    "#]],
    );
    check(
        "价格是1,000元，时间是10:30。",
        expect![[r#"
        0 "价格是1,000元，"
        1 "时间是10:30。"
    "#]],
    );
}

#[test]
fn japanese() {
    check(
        "こんにちは。元気ですか？",
        expect![[r#"
        0 "こんにちは。"
        1 "元気ですか？"
    "#]],
    );
    check(
        "「ありがとう」と彼は言った。",
        expect![[r#"
        0 "「ありがとう」と彼は言った。"
    "#]],
    );
    check(
        "『吾輩は猫である』を読みました。面白かったです！",
        expect![[r#"
        0 "『吾輩は猫である』を読みました。"
        1 "面白かったです！"
    "#]],
    );
    check(
        "えっと…そうですね。",
        expect![[r#"
        0 "えっと…"
        1 "そうですね。"
    "#]],
    );
    check(
        "今日は、いい天気ですね、散歩に行きましょうか、それとも家でゆっくりしましょうか。",
        expect![[r#"
            0 "今日は、"
            1 "いい天気ですね、散歩に行きましょうか、それとも家でゆっくりしましょうか。"
        "#]],
    );
    check(
        "これは例です．次へ進みます．",
        expect![[r#"
        0 "これは例です．"
        1 "次へ進みます．"
    "#]],
    );
    check(
        "まあ‥いいか。",
        expect![[r#"
        0 "まあ‥"
        1 "いいか。"
    "#]],
    );
    check(
        "楽しいね♪また明日！",
        expect![[r#"
        0 "楽しいね♪また明日！" -> "楽しいねまた明日！"
    "#]],
    );
    check(
        "ずっとずっと句読点のないひらがなだけのながいながいぶんしょうがつづいていくとどこできられるのかをためすためのぶんです",
        expect![[r#"
            0 "ずっとずっと句読点のないひらがなだけのながいなが"
            1 "いぶんしょうがつづいていくとどこできられるのかをためすためのぶんです"
        "#]],
    );
}

#[test]
fn english() {
    check(
        "Hello world. How are you? I'm fine!",
        expect![[r#"
        0 "Hello world. " -> "Hello world."
        1 "How are you? " -> "How are you?"
        2 "I'm fine!"
    "#]],
    );
    check(
        "Pi is 3.14 and e is 2.718. Nice.",
        expect![[r#"
        0 "Pi is 3.14 and e is 2.718. " -> "Pi is 3.14 and e is 2.718."
        1 "Nice."
    "#]],
    );
    check(
        "Use fruit, e.g. apples, i.e. something sweet. Done.",
        expect![[r#"
            0 "Use fruit, " -> "Use fruit,"
            1 "e.g. apples, i.e. something sweet. " -> "e.g. apples, i.e. something sweet."
            2 "Done."
        "#]],
    );
    check(
        "Mr. Smith went to Washington. He left early.",
        expect![[r#"
        0 "Mr. Smith went to Washington. " -> "Mr. Smith went to Washington."
        1 "He left early."
    "#]],
    );
    check(
        "The U.S. Army is large. Yes it is.",
        expect![[r#"
        0 "The U.S. Army is large. " -> "The U.S. Army is large."
        1 "Yes it is."
    "#]],
    );
    check(
        "Visit example.com/a.b for more. Thanks.",
        expect![[r#"
        0 "Visit example.com/a.b for more. " -> "Visit example.com/a.b for more."
        1 "Thanks."
    "#]],
    );
    check(
        "Wait... what? Really?!",
        expect![[r#"
        0 "Wait... " -> "Wait..."
        1 "what? " -> "what?"
        2 "Really?!"
    "#]],
    );
    check(
        "He said \"hi.\" Then he left.",
        expect![[r#"
        0 "He said \"hi.\" " -> "He said \"hi.\""
        1 "Then he left."
    "#]],
    );
    check(
        "(This is an aside.) Next sentence.",
        expect![[r#"
        0 "(This is an aside.) " -> "(This is an aside.)"
        1 "Next sentence."
    "#]],
    );
    check(
        "J. K. Rowling wrote it. So did I. Then what?",
        expect![[r#"
        0 "J. K. Rowling wrote it. " -> "J. K. Rowling wrote it."
        1 "So did I. " -> "So did I."
        2 "Then what?"
    "#]],
    );
    check(
        "It is approx. half of it. Ok.",
        expect![[r#"
        0 "It is approx. half of it. " -> "It is approx. half of it."
        1 "Ok."
    "#]],
    );
    check(
        "Open https://example.com/search?q=1 now! Yahoo!Japan is a site.",
        expect![[r#"
        0 "Open https://example.com/search?q=1 now! " -> "Open https://example.com/search?q=1 now!"
        1 "Yahoo!Japan is a site."
    "#]],
    );
    check(
        "It costs 1,000 dollars: that is a lot, honestly, for what it is.",
        expect![[r#"
        0 "It costs 1,000 dollars: " -> "It costs 1,000 dollars:"
        1 "that is a lot, honestly, for what it is."
    "#]],
    );
    check(
        "Ph.D. students work hard. Yes.",
        expect![[r#"
        0 "Ph.D. students work hard. " -> "Ph.D. students work hard."
        1 "Yes."
    "#]],
    );
    check(
        "Version 2.0.1 shipped on Jan. 5, 2024. See No. 3 on p. 12. No. I won't.",
        expect![[r#"
            0 "Version 2.0.1 shipped on Jan. 5, " -> "Version 2.0.1 shipped on Jan. 5,"
            1 "2024. " -> "2024."
            2 "See No. 3 on p. 12. " -> "See No. 3 on p. 12."
            3 "No. " -> "No."
            4 "I won't."
        "#]],
    );
    check(
        "Hello.",
        expect![[r#"
        0 "Hello."
    "#]],
    );
    check(
        "Sure, I can help you with that, let me check the weather for today.",
        expect![[r#"
        0 "Sure, I can help you with that, " -> "Sure, I can help you with that,"
        1 "let me check the weather for today."
    "#]],
    );
    check(
        "this is a long english sentence without any punctuation that keeps going and going well past the maximum length so that it has to be cut at a space somewhere reasonable instead of in the middle of a word",
        expect![[r#"
            0 "this is a long english sentence without any punctuation that keeps going and going well " -> "this is a long english sentence without any punctuation that keeps going and going well"
            1 "past the maximum length so that it has to be cut at a space somewhere reasonable instead of in the middle of a word"
        "#]],
    );
    check(
        "'Quoted,' she said. 'Again.' Done.",
        expect![[r#"
            0 "'Quoted,' " -> "'Quoted,'"
            1 "she said. " -> "she said."
            2 "'Again.' " -> "'Again.'"
            3 "Done."
        "#]],
    );
    check(
        "Line one\n\nLine two",
        expect![[r#"
        0 "Line one\n\n" -> "Line one"
        1 "Line two"
    "#]],
    );
}

#[test]
fn mixed() {
    check(
        "我喜欢Rust语言。It is fast. 你呢？",
        expect![[r#"
        0 "我喜欢Rust语言。"
        1 "It is fast. " -> "It is fast."
        2 "你呢？"
    "#]],
    );
    check(
        "OK.好的。",
        expect![[r#"
        0 "OK."
        1 "好的。"
    "#]],
    );
    check(
        "안녕하세요. 반갑습니다.",
        expect![[r#"
        0 "안녕하세요. " -> "안녕하세요."
        1 "반갑습니다."
    "#]],
    );
    check(
        "我用的是iPhone 15 Pro，性能很好。",
        expect![[r#"
        0 "我用的是iPhone 15 Pro，"
        1 "性能很好。"
    "#]],
    );
}

#[test]
fn emoji() {
    check(
        "太好了😊！我们出发吧🚀",
        expect![[r#"
        0 "太好了😊！" -> "太好了！"
        1 "我们出发吧🚀" -> "我们出发吧"
    "#]],
    );
    check(
        "Bye! 👋",
        expect![[r#"
        0 "Bye! 👋" -> "Bye!"
    "#]],
    );
    check(
        "😊",
        expect![[r#"
        unspoken "😊"
    "#]],
    );
    check(
        "👍🏽 Great job! 👨‍👩‍👧 Family time.",
        expect![[r#"
        0 "👍🏽 Great job! 👨\u{200d}👩\u{200d}👧 " -> "Great job!"
        1 "Family time."
    "#]],
    );
}

#[test]
fn think_blocks() {
    check(
        "<think>用户在问天气。</think>今天是晴天。",
        expect![[r#"
        0 "<think>用户在问天气。</think>今天是晴天。" -> "今天是晴天。"
    "#]],
    );
    check(
        "<think>\nThe user greets me.\n</think>\n\nHello! Nice to meet you.",
        expect![[r#"
        0 "<think>\nThe user greets me.\n</think>\n\nHello! " -> "Hello!"
        1 "Nice to meet you."
    "#]],
    );
    check(
        "<think>still thinking, never closed",
        expect![[r#"
        unspoken "<think>still thinking, never closed"
    "#]],
    );
    check(
        "Okay. <thinking>hmm</thinking> The answer is 42.",
        expect![[r#"
        0 "Okay. " -> "Okay."
        1 "<thinking>hmm</thinking> The answer is 42." -> "The answer is 42."
    "#]],
    );
    check(
        "1 < 2 and 3 > 2. True.",
        expect![[r#"
        0 "1 < 2 and 3 > 2. " -> "1 < 2 and 3 > 2."
        1 "True."
    "#]],
    );
}

#[test]
fn markdown() {
    check(
        "**Note:** this is important. _Very_ important.",
        expect![[r#"
        0 "**Note:** this is important. " -> "Note: this is important."
        1 "_Very_ important." -> "Very important."
    "#]],
    );
    check(
        "# Title\nSome text here.",
        expect![[r##"
        0 "# Title\n" -> "Title"
        1 "Some text here."
    "##]],
    );
    check(
        "Read [the docs](https://x.io/a.b_(c)) first. Ok.",
        expect![[r#"
        0 "Read [the docs](https://x.io/a.b_(c)) first. " -> "Read the docs first."
        1 "Ok."
    "#]],
    );
    check(
        "Run `cargo test` now. Fine.",
        expect![[r#"
        0 "Run `cargo test` now. " -> "Run cargo test now."
        1 "Fine."
    "#]],
    );
    check(
        "```rust\nfn main() {}\n```\nDone.",
        expect![[r#"
        0 "```rust\nfn main() {}\n```\n" -> "fn main() {}"
        1 "Done."
    "#]],
    );
    check(
        "Call foo_bar_baz now. Then __init__ runs.",
        expect![[r#"
        0 "Call foo_bar_baz now. " -> "Call foo_bar_baz now."
        1 "Then __init__ runs." -> "Then init runs."
    "#]],
    );
    check(
        "5 * 3 = 15. And 2*4 = 8.",
        expect![[r#"
        0 "5 * 3 = 15. " -> "5 * 3 = 15."
        1 "And 2*4 = 8."
    "#]],
    );
    check(
        "![a cat](http://a.b/cat.png) A cat.",
        expect![[r#"
        0 "![a cat](http://a.b/cat.png) A cat." -> "a cat A cat."
    "#]],
    );
    check(
        "> quoted text.\nReply.",
        expect![[r#"
        0 "> quoted text.\n" -> "quoted text."
        1 "Reply."
    "#]],
    );
    check(
        "This is ~~wrong~~ right. 10~20 people.",
        expect![[r#"
        0 "This is ~~wrong~~ right. " -> "This is wrong right."
        1 "10~20 people."
    "#]],
    );
    check(
        "Hello. **World** is big.",
        expect![[r#"
        0 "Hello. " -> "Hello."
        1 "**World** is big." -> "World is big."
    "#]],
    );
}

#[test]
fn lists() {
    check(
        "1. 苹果\n2. 香蕉\n3. 橙子",
        expect![[r#"
        0 "1. 苹果\n" -> "苹果"
        1 "2. 香蕉\n" -> "香蕉"
        2 "3. 橙子" -> "橙子"
    "#]],
    );
    check(
        "- first item\n- second item\n* third item",
        expect![[r#"
        0 "- first item\n" -> "first item"
        1 "- second item\n" -> "second item"
        2 "* third item" -> "third item"
    "#]],
    );
    check(
        "Steps:\n1. Open it.\n2. Close it.",
        expect![[r#"
        0 "Steps:\n" -> "Steps:"
        1 "1. Open it.\n" -> "Open it."
        2 "2. Close it." -> "Close it."
    "#]],
    );
    check(
        "Hello!\n- \n- item",
        expect![[r#"
        0 "Hello!\n- \n" -> "Hello!"
        1 "- item" -> "item"
    "#]],
    );
    check(
        "・りんご\n・みかん",
        expect![[r#"
        0 "・りんご\n" -> "りんご"
        1 "・みかん" -> "みかん"
    "#]],
    );
}

#[test]
fn stage_directions() {
    check(
        "*挥手* 大家好！",
        expect![[r#"
        0 "*挥手* 大家好！" -> "大家好！"
    "#]],
    );
    check(
        "Hello! *waves* How are you?",
        expect![[r#"
        0 "Hello! " -> "Hello!"
        1 "*waves* How are you?" -> "How are you?"
    "#]],
    );
    check(
        "*smiles warmly* Welcome back, everyone.",
        expect![[r#"
            0 "*smiles warmly* Welcome back, " -> "Welcome back,"
            1 "everyone."
        "#]],
    );
    check(
        "*this is not closed\nNext line.",
        expect![[r#"
        0 "*this is not closed\n" -> "this is not closed"
        1 "Next line."
    "#]],
    );
    check(
        "I *really* mean it.",
        expect![[r#"
        0 "I *really* mean it." -> "I mean it."
    "#]],
    );
}

#[test]
fn tuned_limits() {
    let eager = SegmenterConfig {
        first_clause_min_chars: 2,
        first_clause_max_chars: 8,
        soft_break_min_chars: 6,
        max_chars: 12,
        ..SegmenterConfig::default()
    };
    check_with(
        &eager,
        "好的，我来帮你看看这个问题，稍等一下，马上就好。",
        expect![[r#"
            0 "好的，"
            1 "我来帮你看看这个问题，"
            2 "稍等一下，马上就好。"
        "#]],
    );
    check_with(
        &eager,
        "没有标点的一长串中文字符会按宽度切开吗",
        expect![[r#"
            0 "没有标点的一长串"
            1 "中文字符会按宽度切开吗"
        "#]],
    );
    check_with(
        &eager,
        "Okay, streaming text to speech needs short first clauses.",
        expect![[r#"
            0 "Okay, streaming text to speech " -> "Okay, streaming text to speech"
            1 "needs short first clauses."
        "#]],
    );
    check_with(
        &eager,
        "Apples\nBananas\nCherries and more",
        expect![[r#"
            0 "Apples\n" -> "Apples"
            1 "Bananas\n" -> "Bananas"
            2 "Cherries and more"
        "#]],
    );
}

#[test]
fn nothing_stripped_when_switched_off() {
    let keep_all = SegmenterConfig {
        strip_think: false,
        strip_markdown: false,
        strip_emoji: false,
        strip_stage_directions: false,
        ..SegmenterConfig::default()
    };
    check_with(
        &keep_all,
        "<think>x</think>Hi. *waves* **Bold** 😊",
        expect![[r#"
        0 "<think>x</think>Hi. " -> "<think>x</think>Hi."
        1 "*waves* **Bold** 😊"
    "#]],
    );
    check_with(
        &keep_all,
        "1. First\n2. Second",
        expect![[r#"
        0 "1. First\n" -> "1. First"
        1 "2. Second"
    "#]],
    );
    let markdown_only = SegmenterConfig {
        strip_stage_directions: false,
        ..SegmenterConfig::default()
    };
    check_with(
        &markdown_only,
        "*smiles* I *really* mean it.",
        expect![[r#"
        0 "*smiles* I *really* mean it." -> "smiles I really mean it."
    "#]],
    );
}

/// One step of a first-clause timeline. Time stays outside the segmenter: `Flush` is the
/// engine's first-audio bound elapsing.
enum Step<'a> {
    Push(&'a str),
    Flush,
    Finish,
}

fn check_timeline(steps: &[Step<'_>], expect: Expect) {
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut log = String::new();
    let mut segments = Vec::new();
    let mut reply = String::new();
    let mut finished = false;
    for step in steps {
        let emitted = match step {
            Step::Push(delta) => {
                if !finished {
                    reply.push_str(delta);
                }
                writeln!(log, "push {delta:?}").unwrap();
                segmenter.push(delta)
            }
            Step::Flush => {
                writeln!(log, "flush").unwrap();
                let flushed = segmenter.flush_first_clause();
                if flushed.is_none() {
                    writeln!(log, "  (nothing yet)").unwrap();
                }
                flushed.into_iter().collect()
            }
            Step::Finish => {
                writeln!(log, "finish").unwrap();
                finished = true;
                segmenter.finish()
            }
        };
        for segment in &emitted {
            writeln!(
                log,
                "  {} {:?} -> {:?}",
                segment.index, segment.text, segment.speak
            )
            .unwrap();
        }
        segments.extend(emitted);
    }
    let tail = segmenter.pending_text();
    if !tail.is_empty() {
        writeln!(log, "unspoken {tail:?}").unwrap();
    }
    let transcript: String = segments
        .iter()
        .map(|s| s.text.as_str())
        .chain([tail])
        .collect();
    assert_eq!(
        transcript, reply,
        "a flush must not lose or repeat any of the transcript (deltas after finish are ignored)"
    );
    expect.assert_eq(&log);
}

#[test]
fn first_clause_flush() {
    use Step::{Finish, Flush, Push};
    // CJK can be cut anywhere: everything received goes out.
    check_timeline(
        &[
            Push("今天天气"),
            Flush,
            Push("很好。明天"),
            Push("见。"),
            Finish,
        ],
        expect![[r#"
            push "今天天气"
            flush
              0 "今天天气" -> "今天天气"
            push "很好。明天"
              1 "很好。" -> "很好。"
            push "见。"
            finish
              2 "明天见。" -> "明天见。"
        "#]],
    );
    // A Latin word may still be growing: the flush stops after the last complete one.
    check_timeline(
        &[Push("Hello wor"), Flush, Push("ld. Bye."), Finish],
        expect![[r#"
            push "Hello wor"
            flush
              0 "Hello " -> "Hello"
            push "ld. Bye."
              1 "world. " -> "world."
            finish
              2 "Bye." -> "Bye."
        "#]],
    );
    // Nothing complete yet: the next delta that completes a word cuts it.
    check_timeline(
        &[
            Push("Hel"),
            Flush,
            Push("lo"),
            Push(" there"),
            Push(" friend."),
            Finish,
        ],
        expect![[r#"
            push "Hel"
            flush
              (nothing yet)
            push "lo"
            push " there"
              0 "Hello " -> "Hello"
            push " friend."
            finish
              1 "there friend." -> "there friend."
        "#]],
    );
    check_timeline(
        &[
            Push("<think>plan"),
            Flush,
            Push("</think>"),
            Push("好的"),
            Push("，马上。"),
            Finish,
        ],
        expect![[r#"
            push "<think>plan"
            flush
              (nothing yet)
            push "</think>"
            push "好的"
              0 "<think>plan</think>好的" -> "好的"
            push "，马上。"
            finish
              1 "，马上。" -> "，马上。"
        "#]],
    );
    // The first segment already went out by the normal rules: a late flush does nothing.
    check_timeline(
        &[Push("好。我们"), Flush, Push("走吧。"), Finish],
        expect![[r#"
        push "好。我们"
          0 "好。" -> "好。"
        flush
          (nothing yet)
        push "走吧。"
        finish
          1 "我们走吧。" -> "我们走吧。"
    "#]],
    );
    // Flushed while waiting to see what follows a stop: the closing quote goes with the next.
    check_timeline(
        &[Push("「你好。"), Flush, Push("」他说。"), Finish],
        expect![[r#"
        push "「你好。"
        flush
          0 "「你好。" -> "「你好。"
        push "」他说。"
        finish
          1 "」他说。" -> "」他说。"
    "#]],
    );
    // An undecided `.` is not cut through.
    check_timeline(
        &[Push("Pi is 3."), Flush, Push("14. Yes."), Finish],
        expect![[r#"
        push "Pi is 3."
        flush
          0 "Pi is " -> "Pi is"
        push "14. Yes."
          1 "3.14. " -> "3.14."
        finish
          2 "Yes." -> "Yes."
    "#]],
    );
    // After a flush, markup with nothing to say cannot join a segment already out.
    check_timeline(
        &[Push("Hello "), Flush, Push("😊"), Finish],
        expect![[r#"
        push "Hello "
        flush
          0 "Hello " -> "Hello"
        push "😊"
        finish
        unspoken "😊"
    "#]],
    );
    // After finish nothing is flushed and nothing more is taken.
    check_timeline(
        &[Push("好"), Finish, Flush, Push("再见。"), Finish],
        expect![[r#"
        push "好"
        finish
          0 "好" -> "好"
        flush
          (nothing yet)
        push "再见。"
        finish
    "#]],
    );
}

/// The first segment is cut at the first soft break once it holds a speakable word group
/// (`first_clause_min_chars`): a neural voice synthesises `Welcome back,` in ~130 ms against
/// ~180 ms for the whole first sentence (#17).
#[test]
fn the_first_clause_ends_at_the_first_comma() {
    check(
        "Welcome back, everyone! Today we are playing the new map, and it is huge.",
        expect![[r#"
            0 "Welcome back, " -> "Welcome back,"
            1 "everyone! " -> "everyone!"
            2 "Today we are playing the new map, and it is huge."
        "#]],
    );
    check(
        "大家好，欢迎回来！今天我们玩新地图。",
        expect![[r#"
            0 "大家好，"
            1 "欢迎回来！"
            2 "今天我们玩新地图。"
        "#]],
    );
    check(
        "皆さん、こんばんは！今日は新しいマップです。",
        expect![[r#"
            0 "皆さん、"
            1 "こんばんは！"
            2 "今日は新しいマップです。"
        "#]],
    );
    check(
        "Oh, hi! Well, that is it.",
        expect![[r#"
            0 "Oh, hi! " -> "Oh, hi!"
            1 "Well, that is it."
        "#]],
    );
}
