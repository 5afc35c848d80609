//! Property tests: whatever the reply and however it is split into deltas, no segment is
//! blank, the cuts are the same, nothing is lost from the transcript, and `speak` is exactly
//! the spoken text. Plus a work count that keeps the segmenter linear.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::sample::Index;

use super::chars::{is_cjk, is_speakable, normalize_speak};
use super::markup::{ItemLog, MarkupRules, MarkupScanner};
use super::{Segment, Segmenter, SegmenterConfig};

/// Pieces real replies are made of, chosen to hit every rule and its edge cases; random
/// chars are mixed in as well.
const PIECES: &[&str] = &[
    "你好",
    "天气",
    "今天",
    "こんにちは",
    "ですね",
    "안녕",
    "Hello",
    "world",
    "The",
    "is",
    "a",
    "I",
    "Mr",
    "e.g",
    "U.S",
    "3",
    "14",
    "1,000",
    "10:30",
    " ",
    " ",
    " ",
    "\n",
    "\n\n",
    "\r\n",
    "。",
    "，",
    "、",
    "！",
    "？",
    "…",
    "……",
    "‥",
    "．",
    "：",
    "；",
    ".",
    ".",
    "...",
    ",",
    ";",
    ":",
    "!",
    "?",
    "?!",
    "!!",
    "「",
    "」",
    "『",
    "』",
    "《",
    "》",
    "“",
    "”",
    "\"",
    "'",
    "(",
    ")",
    "（",
    "）",
    "<think>",
    "</think>",
    "<thi",
    "nk>",
    "</",
    "<",
    ">",
    "*",
    "**",
    "_",
    "__",
    "~~",
    "`",
    "```",
    "# ",
    "## ",
    "- ",
    "* ",
    "1. ",
    "2) ",
    "> ",
    "• ",
    "・",
    "[",
    "](",
    "](http://a.b/c.d)",
    "![",
    "http://example.com/a.b?q=1",
    "😊",
    "👍🏽",
    "👨\u{200d}👩\u{200d}👧",
    "🚀",
    "♪",
    "\u{fe0f}",
    "*waves*",
    "*挥手*",
    " *smiles* ",
    "%",
    "#",
    "—",
];

fn reply() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => prop::sample::select(PIECES).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|pieces| pieces.concat())
}

fn config() -> impl Strategy<Value = SegmenterConfig> {
    let tuned = (
        0usize..8,
        1usize..30,
        0usize..30,
        1usize..80,
        any::<[bool; 4]>(),
    )
        .prop_map(|(first_min, first_max, soft, max, strip)| SegmenterConfig {
            first_clause_min_chars: first_min,
            first_clause_max_chars: first_max,
            soft_break_min_chars: soft,
            max_chars: max,
            strip_think: strip[0],
            strip_markdown: strip[1],
            strip_emoji: strip[2],
            strip_stage_directions: strip[3],
        });
    prop_oneof![Just(SegmenterConfig::default()), tuned]
}

/// Splits `text` at the chosen char positions (empty deltas included).
fn split_at_chars<'a>(text: &'a str, cuts: &[Index]) -> Vec<&'a str> {
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(offset, _)| offset)
        .chain([text.len()])
        .collect();
    let mut offsets: Vec<usize> = cuts
        .iter()
        .map(|cut| boundaries[cut.index(boundaries.len())])
        .collect();
    offsets.sort_unstable();
    let mut deltas = Vec::new();
    let mut start = 0;
    for offset in offsets.into_iter().chain([text.len()]) {
        deltas.push(&text[start..offset]);
        start = offset;
    }
    deltas
}

struct Run {
    segments: Vec<Segment>,
    pending: String,
}

fn run(config: &SegmenterConfig, deltas: &[&str]) -> Run {
    let mut segmenter = Segmenter::new(config.clone());
    let mut segments = Vec::new();
    for delta in deltas {
        segments.extend(segmenter.push(delta));
    }
    segments.extend(segmenter.finish());
    Run {
        segments,
        pending: segmenter.pending_text().to_owned(),
    }
}

/// The classes of the whole reply, computed in one go with the stream already ended.
fn classify_whole(config: &SegmenterConfig, text: &str) -> ItemLog {
    let mut scanner = MarkupScanner::new(MarkupRules {
        think: config.strip_think,
        markdown: config.strip_markdown,
        emoji: config.strip_emoji,
        stage_directions: config.strip_stage_directions,
    });
    let mut items = ItemLog::default();
    scanner.scan(text, 0, true, &mut items);
    items
}

fn without_whitespace(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The invariants every run must keep, flushes or not.
fn assert_well_formed(text: &str, run: &Run) {
    for (position, segment) in run.segments.iter().enumerate() {
        assert_eq!(
            segment.index as usize, position,
            "indices count the segments from 0 without gaps"
        );
        assert!(
            segment.speak.chars().any(is_speakable),
            "a segment must have something to say: {segment:?}"
        );
        assert_eq!(
            segment.speak.trim(),
            segment.speak,
            "speak is trimmed: {segment:?}"
        );
    }
    let transcript: String = run
        .segments
        .iter()
        .map(|segment| segment.text.as_str())
        .chain([run.pending.as_str()])
        .collect();
    assert_eq!(
        transcript, text,
        "segment texts plus the pending tail must be the reply, byte for byte"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chunking_changes_nothing(
        config in config(),
        text in reply(),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let whole = run(&config, &[&text]);
        let chunked = run(&config, &split_at_chars(&text, &cuts));
        assert_well_formed(&text, &whole);
        prop_assert_eq!(
            &whole.segments, &chunked.segments,
            "the cuts must not depend on where the deltas were split"
        );
        prop_assert_eq!(&whole.pending, &chunked.pending, "nor may the unspoken tail");
    }

    #[test]
    fn one_char_per_delta_changes_nothing(config in config(), text in reply()) {
        let whole = run(&config, &[&text]);
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let deltas: Vec<&str> = chars.iter().map(String::as_str).collect();
        let by_char = run(&config, &deltas);
        prop_assert_eq!(
            &whole.segments, &by_char.segments,
            "one char per delta (mid-tag, mid-word) must cut like one delta"
        );
    }

    #[test]
    fn speak_is_exactly_the_spoken_text(config in config(), text in reply()) {
        let whole = run(&config, &[&text]);
        let items = classify_whole(&config, &text);
        let all = items.range(0, items.end());
        let mut start = 0;
        for segment in &whole.segments {
            let end = start + segment.text.len();
            let spoken = all
                .iter()
                .filter(|item| item.is_spoken() && (start..end).contains(&item.offset))
                .map(|item| item.ch);
            prop_assert_eq!(
                &segment.speak,
                &normalize_speak(spoken),
                "speak is the segment's spoken chars with whitespace normalised"
            );
            start = end;
        }
        // `start` is now where the unspoken tail begins.
        prop_assert!(
            !all.iter().any(|i| i.is_spoken() && i.offset >= start && is_speakable(i.ch)),
            "nothing speakable is left unsaid after finish: {:?}", whole.pending
        );
        let spoken_reply: String = all
            .iter()
            .filter(|i| i.is_spoken() && i.offset < start)
            .map(|i| i.ch)
            .collect();
        let said: String = whole.segments.iter().map(|s| s.speak.as_str()).collect();
        prop_assert_eq!(
            without_whitespace(&said),
            without_whitespace(&spoken_reply),
            "every spoken char of the reply is said once, in order"
        );
    }

    #[test]
    fn flushing_the_first_clause_keeps_the_invariants(
        config in config(),
        text in reply(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        flush_after in any::<Index>(),
    ) {
        let deltas = split_at_chars(&text, &cuts);
        let flush_after = flush_after.index(deltas.len());
        let mut segmenter = Segmenter::new(config);
        let mut segments = Vec::new();
        for (position, delta) in deltas.iter().enumerate() {
            segments.extend(segmenter.push(delta));
            if position == flush_after {
                let flushed = segmenter.flush_first_clause();
                prop_assert!(
                    flushed.is_none() || segments.is_empty(),
                    "only the first segment is ever flushed"
                );
                segments.extend(flushed);
            }
        }
        segments.extend(segmenter.finish());
        let run = Run { segments, pending: segmenter.pending_text().to_owned() };
        for (position, segment) in run.segments.iter().enumerate() {
            prop_assert_eq!(segment.index as usize, position, "indices stay contiguous");
            prop_assert!(segment.speak.chars().any(is_speakable), "never blank: {:?}", segment);
        }
        let transcript: String =
            run.segments.iter().map(|s| s.text.as_str()).chain([run.pending.as_str()]).collect();
        prop_assert_eq!(transcript, text, "a flush loses nothing from the transcript");
    }

    #[test]
    fn markup_is_stripped_and_only_markup(pieces in prop::collection::vec(piece(), 0..24)) {
        let text: String = pieces.iter().map(|(rendered, _)| rendered.as_str()).collect();
        let expected: String = pieces.iter().map(|(_, spoken)| spoken.as_str()).collect();
        let whole = run(&SegmenterConfig::default(), &[&text]);
        assert_well_formed(&text, &whole);
        let said = without_whitespace(
            &whole.segments.iter().map(|s| s.speak.as_str()).collect::<String>(),
        );
        let expected = without_whitespace(&expected);
        // What follows the last segment stays unsaid only if it has nothing to say.
        let unsaid = expected.strip_prefix(said.as_str());
        prop_assert!(
            unsaid.is_some_and(|unsaid| !unsaid.chars().any(is_speakable)),
            "speak must be the reply minus its markup: said {:?}, expected {:?} for {:?}",
            said, expected, text
        );
    }

    #[test]
    fn cjk_segments_stay_within_the_limits(
        config in config(),
        text in prop::collection::vec(
            prop::sample::select(&["天", "気", "の", "한", "。", "，", "\n", "「", "」"][..]),
            0..300,
        ).prop_map(|pieces| pieces.concat()),
    ) {
        let whole = run(&config, &[&text]);
        for segment in &whole.segments {
            let width = segment.text.chars().filter(|&c| is_cjk(c)).count();
            let limit = if segment.index == 0 {
                config.first_clause_max_chars.max(1)
            } else {
                config.max_chars.max(1)
            };
            prop_assert!(
                width <= limit,
                "CJK text is cut at the width limit: {} > {} in {:?}", width, limit, segment
            );
        }
    }
}

/// A piece of a reply and what TTS should say for it (default config).
fn piece() -> impl Strategy<Value = (String, String)> {
    let plain_char = prop::sample::select(
        &[
            '你', '好', '天', 'は', 'ね', 'a', 'b', 'X', 'Y', '1', '2', ' ', ' ', '\n', '，', '。',
            '！', '？', ',', '!', '?', '「', '」',
        ][..],
    );
    let plain = prop::collection::vec(plain_char.clone(), 1..12)
        .prop_map(|chars| chars.into_iter().collect::<String>());
    // Text inside a mark: on one line, starting and ending with a visible char.
    let inline = prop::collection::vec(plain_char, 1..10).prop_filter_map(
        "marks hold visible text on one line",
        |chars| {
            let text: String = chars.into_iter().filter(|&c| c != '\n').collect();
            let visible = |c: Option<char>| c.is_some_and(|c| !c.is_whitespace());
            (visible(text.chars().next()) && visible(text.chars().last())).then_some(text)
        },
    );
    let emoji = prop::sample::select(&["😊", "👍🏽", "👨\u{200d}👩\u{200d}👧", "🚀", "♪", "⭐"][..]);
    prop_oneof![
        4 => plain.clone().prop_map(|text| (text.clone(), text)),
        1 => plain.prop_map(|text| (format!("<think>{text}</think>"), String::new())),
        1 => inline.clone().prop_map(|text| (format!("**{text}**"), text)),
        1 => inline.clone().prop_map(|text| (format!(" *{text}* "), String::new())),
        1 => inline.clone().prop_map(|text| (format!(" [{text}](http://x.y/a_(b).c)"), text)),
        1 => inline.prop_map(|text| (format!("`{text}`"), text)),
        1 => emoji.prop_map(|emoji| (emoji.to_owned(), String::new())),
    ]
}

/// Adversarial replies fed one char per delta: the total work must stay proportional to the
/// length, i.e. nothing rescans the buffer on every push.
#[test]
fn work_is_linear_in_the_reply() {
    let repeat = |piece: &str, times: usize| piece.repeat(times);
    let replies = [
        format!("<think>{}", repeat("a. b! ", 3000)),
        format!("Hello.<think>{}</think> World.", repeat("x", 20_000)),
        repeat(
            "Hello *aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ",
            300,
        ),
        repeat("a", 20_000),
        repeat("天", 20_000),
        repeat(".", 20_000),
        repeat("*", 20_000),
        repeat("[", 20_000),
        repeat("#", 20_000),
        format!("Hi.{}", repeat(" ", 20_000)),
        repeat("Mr. e.g. 3.14 ", 2000),
        repeat("你好。「」\n- ", 3000),
    ];
    for reply in &replies {
        let mut segmenter = Segmenter::new(SegmenterConfig::default());
        let mut buf = [0u8; 4];
        for c in reply.chars() {
            segmenter.push(c.encode_utf8(&mut buf));
        }
        segmenter.finish();
        let work = segmenter.scanner.work + segmenter.boundary.work;
        let n_chars = reply.chars().count() as u64;
        assert!(
            work <= 8 * n_chars + 100,
            "work {work} for {n_chars} chars fed one by one: something rescans ({:?}…)",
            reply.chars().take(20).collect::<String>()
        );
    }
}
