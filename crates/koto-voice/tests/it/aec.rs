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
