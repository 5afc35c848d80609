//! The echo canceller on a synthetic echo path: the played audio, delayed and attenuated, is
//! what the mic hears; the near-end talker must survive.

use koto_voice::aec::EchoCanceller;

use crate::support::*;

/// Run `mic` through an AEC whose reference is `played`, both in 10 ms blocks in step.
fn cancel(played: &[i16], mic: &[i16]) -> Vec<i16> {
    let mut aec = EchoCanceller::new();
    let block = ms_to_samples(10);
    let mut out = Vec::with_capacity(mic.len());
    for (i, near) in mic.chunks(block).enumerate() {
        let far = played
            .get(i * block..((i + 1) * block).min(played.len()))
            .unwrap_or(&[]);
        aec.push_far(far, RATE);
        aec.process(near, &mut out);
    }
    out
}

fn cohost_speech() -> Vec<i16> {
    let mut played = Vec::new();
    for sentence in [
        "Welcome back everyone, today we are going to play the forest level.",
        "I heard there is a secret room behind the waterfall, so let us find it together.",
        "Remember to keep your health above half before the boss fight begins.",
    ] {
        played.extend(speech(sentence, "en"));
        played.extend(silence(200));
    }
    played
}

#[test]
fn the_co_hosts_echo_is_attenuated_by_more_than_20_db() {
    let played = cohost_speech();
    let mic = echo_path(&played, 60, 0.5);
    let cleaned = cancel(&played, &mic);
    // After the first two seconds (AEC3 converges), compare what is left.
    let from = ms_to_samples(2_000);
    let to = cleaned.len().min(mic.len());
    let before = rms_db(&mic[from..to]);
    let after = rms_db(&cleaned[from..to]);
    eprintln!(
        "aec: echo {before:.1} dBFS → {after:.1} dBFS ({:.1} dB removed)",
        before - after
    );
    assert!(
        before - after > 20.0,
        "echo reduced by {:.1} dB",
        before - after
    );
}

#[test]
fn the_near_end_talker_survives_double_talk() {
    let played = cohost_speech();
    let echo = echo_path(&played, 60, 0.5);
    let user = speech("Hey, wait a second, stop there please.", "en");
    let user_at = ms_to_samples(6_000);
    let mut near = silence(6_000);
    near.extend_from_slice(&user);
    let mic = mix(&echo, &near);
    let cleaned = cancel(&played, &mic);
    let user_part = user_at..(user_at + user.len()).min(cleaned.len());
    let kept = rms_db(&cleaned[user_part.clone()]);
    let original = rms_db(&user);
    eprintln!("aec double talk: user {original:.1} dBFS in, {kept:.1} dBFS out");
    assert!(
        kept > original - 12.0,
        "the user's voice keeps most of its level: {kept:.1} vs {original:.1}"
    );
}

#[test]
fn the_cancellers_latency_is_the_one_the_vad_is_told() {
    use koto_voice::aec::AEC_LATENCY;
    let clip = speech("Hello everyone, welcome back to the stream.", "en");
    let mut mic = silence(1_000);
    mic.extend_from_slice(&clip);
    mic.extend(silence(500));
    let mut aec = EchoCanceller::new();
    let (mut cleaned, mut raw) = (Vec::new(), Vec::new());
    for block in mic.chunks(ms_to_samples(10)) {
        aec.process_with_reference(block, &mut cleaned, &mut Vec::new(), &mut raw);
    }
    assert_eq!(
        raw.len(),
        cleaned.len(),
        "one raw sample per cleaned sample"
    );
    let window = ms_to_samples(1_200)..ms_to_samples(2_800);
    let correlation = |lag: usize| {
        let a = &mic[window.clone()];
        let b = &cleaned[window.start + lag..window.end + lag];
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        let norm = |v: &[i16]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    };
    let best = (0..400)
        .max_by(|&a, &b| correlation(a).total_cmp(&correlation(b)))
        .expect("lags to try");
    eprintln!(
        "aec latency: {best} samples (correlation {:.3})",
        correlation(best)
    );
    assert!(
        best.abs_diff(AEC_LATENCY) <= 8,
        "the canceller runs {best} samples behind, not {AEC_LATENCY}"
    );
    // The raw samples handed back are in step with the cleaned ones.
    let delayed = &raw[window.clone()];
    let matches = delayed
        .iter()
        .zip(&mic[window.start - AEC_LATENCY..])
        .all(|(a, b)| a == b);
    assert!(matches, "raw_out is the mic delayed by AEC_LATENCY");
}

#[test]
fn a_held_reference_waits_and_a_flushed_one_is_never_rendered() {
    let played = cohost_speech();
    let block = ms_to_samples(10);
    let mut aec = EchoCanceller::new();
    aec.push_far(&played[..ms_to_samples(1_000)], RATE);
    let render = |aec: &mut EchoCanceller, blocks: usize| {
        let mut rendered = Vec::new();
        for _ in 0..blocks {
            aec.process_with_reference(
                &silence(10),
                &mut Vec::new(),
                &mut rendered,
                &mut Vec::new(),
            );
        }
        rendered
    };
    assert_eq!(render(&mut aec, 10), played[..10 * block], "plays in order");
    aec.hold_far(true);
    assert!(
        render(&mut aec, 30).iter().all(|&s| s == 0),
        "paused: nothing comes out of the speaker"
    );
    aec.hold_far(false);
    assert_eq!(
        render(&mut aec, 10),
        played[10 * block..20 * block],
        "resumed where it held"
    );
    aec.flush_far();
    assert!(
        render(&mut aec, 90).iter().all(|&s| s == 0),
        "stopped: the rest never plays"
    );
}
