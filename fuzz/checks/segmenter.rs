//! The reply segmenter (koto-core) on any text in any chunking: never a panic, the segments'
//! `text`s followed by `pending_text()` are exactly what was pushed (after every push, not only
//! at the end), `speak` is never blank and its whitespace is normalised, indices count up from
//! 0, and without `flush_first_clause` the cuts do not depend on the chunking.

use koto_core::segmenter::{Segment, Segmenter, SegmenterConfig};

use super::split;

pub fn run(data: &[u8]) {
    let ([first_min, first_max, soft, max, flags, seed_a, seed_b], rest) = split::header(data);
    let config = SegmenterConfig {
        first_clause_min_chars: usize::from(first_min % 8),
        first_clause_max_chars: 1 + usize::from(first_max % 30),
        soft_break_min_chars: usize::from(soft % 30),
        max_chars: 1 + usize::from(max % 80),
        strip_think: flags & 1 == 0,
        strip_markdown: flags & 2 == 0,
        strip_emoji: flags & 4 == 0,
        strip_stage_directions: flags & 8 == 0,
    };
    // The engine's first-audio timer, fired after delta `n`.
    let flush_after = (flags & 0x10 != 0).then_some(usize::from(flags >> 5));
    let text = String::from_utf8_lossy(rest);
    let deltas = split::char_pieces(&text, &[seed_a, seed_b]);
    let chunked = segment(&config, &deltas, flush_after);
    if flush_after.is_none() {
        let whole = segment(&config, &[&text], None);
        assert_eq!(
            chunked, whole,
            "the cuts must not depend on how the reply was split into deltas"
        );
    }
}

fn segment(config: &SegmenterConfig, deltas: &[&str], flush_after: Option<usize>) -> Vec<Segment> {
    let mut segmenter = Segmenter::new(config.clone());
    let mut segments = Vec::new();
    let mut pushed = String::new();
    for (n, delta) in deltas.iter().enumerate() {
        pushed.push_str(delta);
        segments.extend(segmenter.push(delta));
        if flush_after == Some(n) {
            segments.extend(segmenter.flush_first_clause());
        }
        check_transcript(&segments, segmenter.pending_text(), &pushed);
    }
    segments.extend(segmenter.finish());
    check_transcript(&segments, segmenter.pending_text(), &pushed);
    for (index, segment) in segments.iter().enumerate() {
        assert_eq!(segment.index as usize, index, "indices count up from 0");
        let speak = &segment.speak;
        assert!(
            !speak.trim().is_empty(),
            "speak is never blank: {segment:?}"
        );
        assert_eq!(speak.trim(), speak, "speak is trimmed: {segment:?}");
        assert!(
            !speak.contains("  ") && !speak.chars().any(|c| c.is_whitespace() && c != ' '),
            "each whitespace run in speak is one space: {segment:?}"
        );
    }
    segments
}

fn check_transcript(segments: &[Segment], pending: &str, pushed: &str) {
    let mut transcript: String = segments.iter().map(|s| s.text.as_str()).collect();
    transcript.push_str(pending);
    assert_eq!(
        transcript, pushed,
        "segment texts + pending text are exactly the reply so far"
    );
}
