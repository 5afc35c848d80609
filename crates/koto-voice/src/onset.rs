//! A fast voice onset for barge-in's PAUSE: energy on the *raw* mic, gated against the echo the
//! played audio can cause (an adaptive Geigel-style double-talk detector).
//!
//! Why not the VAD: earshot needs ~130 ms of speech to score it voiced, and on the AEC's output
//! the suppressor attenuates the streamer during double talk (the co-host speaking), so the
//! onset came hundreds of ms late. A PAUSE is reversible, so it may be decided on energy alone;
//! the pipeline resumes it if the VAD does not see voice soon after, and a STOP still needs ASR
//! words on the cleaned signal. It does not decide speech, and it never sees the cleaned audio.

/// Samples per analysis frame (10 ms at 16 kHz, the AEC's frame).
pub const ONSET_FRAME: usize = 160;
/// Length of one frame on the audio clock.
const FRAME_MS: u64 = 10;
/// Frames of far-end audio whose loudest one bounds the echo now (the echo path's delay and
/// the room's reverb; 300 ms covers a device buffer plus a room).
const FAR_WINDOW: usize = 30;
/// Loud frames in a row that are an onset (20 ms: a plosive's burst is one frame).
const ONSET_FRAMES: u32 = 2;
/// Quiet frames in a row before another onset can fire (one onset per utterance, no flapping
/// on a steady noise).
const REARM_FRAMES: u32 = 30;
/// A frame is loud when it is `OnsetConfig::echo_margin_db` over the echo the loudest recent far
/// frame could cause, and this much above the mic's own noise floor (power ratio: 15 dB), and
/// above `OnsetConfig::min_dbfs` at all.
const FLOOR_MARGIN: f32 = 31.6;
/// The noise floor's starting point and the lowest power that is ever taught as audible far
/// end (−50 dBFS: the default minimum level, fixed so tuning the level leaves learning alone).
const MIN_POWER: f32 = 1e-5;
/// Until it has heard the played audio come back (or not) for this many frames, the echo is
/// assumed as loud as what is played (0 dB): no onset on energy into an unknown room.
const ERL_KNOWN: usize = 20;
const ERL_START: f32 = 1.0;
/// The echo estimate is the loudest echo-to-far ratio over this many frames heard while
/// something played (2 s: the echo of the loudest syllable comes back within it)…
const ERL_WINDOW: usize = 200;
/// …where a frame may raise it at most this much (+1 dB / 10 ms): a voice rises faster than
/// that, so the estimate does not learn the streamer's own onset as echo, while a louder room is
/// learnt within a second (false pauses meanwhile are resumed).
const ERL_ATTACK: f32 = 1.26;
/// Frames after a loud one that teach nothing: the quieter start of a voice (a plosive, then
/// the vowel rising) is not echo.
const LEARN_HOLD: u32 = 10;
/// The lowest echo estimate (−60 dB): a headset still leaks something.
const ERL_MIN: f32 = 1e-6;
/// The noise floor rises this much per frame (+0.04 dB / 10 ms: a fan turning on is absorbed in
/// seconds, a voice is not) and falls at once.
const FLOOR_RISE: f32 = 1.01;

/// What a streamer tunes (`ONSET_ECHO_MARGIN_DB`, `ONSET_MIN_DBFS`); the rest of the detector
/// adapts by itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnsetConfig {
    /// The near end must be this much louder than the echo the loudest recent far frame could
    /// cause (dB; the bound is already the loudest frame of the window, not the echo now).
    /// Higher: fewer false pauses from a loud room, a later pause in double talk.
    pub echo_margin_db: f32,
    /// A frame quieter than this (dBFS) is never an onset, whatever the room.
    pub min_dbfs: f32,
}

impl Default for OnsetConfig {
    fn default() -> Self {
        OnsetConfig {
            echo_margin_db: 6.0,
            min_dbfs: -50.0,
        }
    }
}

impl OnsetConfig {
    /// The echo margin as a power ratio.
    fn echo_margin(self) -> f32 {
        10f32.powf(self.echo_margin_db / 10.0)
    }

    /// The minimum level as the power of a full-scale-normalised signal.
    fn min_power(self) -> f32 {
        10f32.powf(self.min_dbfs / 10.0)
    }
}

/// An onset on energy: `at_ms` is the first loud frame on the mic's audio clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnergyOnset {
    pub at_ms: u64,
}

#[derive(Debug, Clone)]
pub struct OnsetDetector {
    /// The thresholds as power ratios (from [`OnsetConfig`]).
    echo_margin: f32,
    min_power: f32,
    /// Power of the far frames last rendered, newest last (a ring of `FAR_WINDOW`).
    far: [f32; FAR_WINDOW],
    far_next: usize,
    /// Near power / loudest recent far power of the frames that taught (a ring), its max the
    /// echo estimate.
    ratios: Box<[f32; ERL_WINDOW]>,
    ratios_next: usize,
    ratios_seen: usize,
    erl: f32,
    floor: f32,
    loud_run: u32,
    quiet_run: u32,
    armed: bool,
    frame: u64,
}

impl Default for OnsetDetector {
    fn default() -> Self {
        Self::new(OnsetConfig::default())
    }
}

impl OnsetDetector {
    pub fn new(config: OnsetConfig) -> Self {
        OnsetDetector {
            echo_margin: config.echo_margin(),
            min_power: config.min_power(),
            far: [0.0; FAR_WINDOW],
            far_next: 0,
            ratios: Box::new([0.0; ERL_WINDOW]),
            ratios_next: 0,
            ratios_seen: 0,
            erl: ERL_START,
            floor: MIN_POWER,
            loud_run: 0,
            quiet_run: REARM_FRAMES,
            armed: true,
            frame: 0,
        }
    }

    /// New thresholds (a saved setting): what was learnt of the room and the noise floor, the
    /// clock and the arming stay, so the next frame is judged by the new margins at once.
    pub fn set_config(&mut self, config: OnsetConfig) {
        self.echo_margin = config.echo_margin();
        self.min_power = config.min_power();
    }

    /// The echo estimate in dB (near power over the loudest recent far power), for logs/tests.
    pub fn erl_db(&self) -> f32 {
        10.0 * self.erl.log10()
    }

    /// One 10 ms frame: the raw mic and the far-end audio rendered with it (empty: nothing
    /// played). The clock starts at 0 and moves one frame per call.
    pub fn push(&mut self, near: &[i16], far: &[i16]) -> Option<EnergyOnset> {
        let frame = self.frame;
        self.frame += 1;
        self.far[self.far_next] = power(far);
        self.far_next = (self.far_next + 1) % FAR_WINDOW;
        let far_max = self.far.iter().copied().fold(0.0, f32::max);
        let near_power = power(near);
        let echo_bound = self.erl * far_max;
        let loud = near_power > self.min_power
            && near_power > self.floor * FLOOR_MARGIN
            && near_power > echo_bound * self.echo_margin;
        if loud {
            self.quiet_run = 0;
            self.loud_run += 1;
        } else {
            self.loud_run = 0;
            self.quiet_run = self.quiet_run.saturating_add(1);
            if self.quiet_run >= REARM_FRAMES {
                self.armed = true;
            }
            if self.quiet_run >= LEARN_HOLD {
                self.learn(near_power, far_max);
            }
        }
        if self.armed && self.loud_run >= ONSET_FRAMES {
            self.armed = false;
            let first = frame + 1 - u64::from(self.loud_run);
            return Some(EnergyOnset {
                at_ms: first * FRAME_MS,
            });
        }
        None
    }

    /// A frame that was not an onset teaches the echo level and the noise floor.
    fn learn(&mut self, near_power: f32, far_max: f32) {
        self.floor = if near_power < self.floor {
            near_power.max(1e-9)
        } else {
            self.floor * FLOOR_RISE
        };
        // Only while something audible plays is the ratio an echo measurement.
        if far_max > MIN_POWER {
            let observed = (near_power / far_max).min(self.erl * ERL_ATTACK);
            self.ratios[self.ratios_next] = observed;
            self.ratios_next = (self.ratios_next + 1) % ERL_WINDOW;
            self.ratios_seen += 1;
            self.erl = if self.ratios_seen < ERL_KNOWN {
                ERL_START
            } else {
                self.ratios.iter().copied().fold(ERL_MIN, f32::max)
            };
        }
    }
}

/// Mean square of `samples` normalised to full scale (0 for none).
fn power(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f32 = samples
        .iter()
        .map(|&s| {
            let x = f32::from(s) / 32_768.0;
            x * x
        })
        .sum();
    sum / samples.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amplitude: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((i as f32 * 0.3).sin() * amplitude * 32_767.0) as i16)
            .collect()
    }

    fn run(detector: &mut OnsetDetector, near: &[i16], far: &[i16]) -> Vec<u64> {
        near.chunks(ONSET_FRAME)
            .enumerate()
            .filter_map(|(i, block)| {
                let from = (i * ONSET_FRAME).min(far.len());
                let to = ((i + 1) * ONSET_FRAME).min(far.len());
                detector.push(block, &far[from..to])
            })
            .map(|onset| onset.at_ms)
            .collect()
    }

    #[test]
    fn a_voice_over_silence_is_an_onset_after_two_frames_dated_to_the_first() {
        let mut detector = OnsetDetector::default();
        let mut near = vec![0i16; 50 * ONSET_FRAME];
        near.extend(tone(0.3, 20 * ONSET_FRAME));
        assert_eq!(
            run(&mut detector, &near, &[]),
            vec![500],
            "one onset, at the first loud frame, however long the voice lasts"
        );
    }

    #[test]
    fn the_echo_of_what_plays_is_no_onset_once_learnt_but_a_louder_voice_is() {
        let mut detector = OnsetDetector::default();
        let far = tone(0.5, 300 * ONSET_FRAME);
        // The room gives the played audio back 20 dB down, 40 ms late.
        let mut near = vec![0i16; 4 * ONSET_FRAME];
        near.extend(tone(0.05, 296 * ONSET_FRAME));
        assert!(
            run(&mut detector, &near, &far).is_empty(),
            "the echo alone never fires"
        );
        assert!(
            detector.erl_db() < -15.0,
            "learnt about −20 dB: {}",
            detector.erl_db()
        );
        // Now the streamer speaks 10 dB above the loudest played frame.
        let voice: Vec<i16> = tone(0.9, 20 * ONSET_FRAME);
        let onsets = run(&mut detector, &voice, &far[..20 * ONSET_FRAME]);
        assert_eq!(onsets.len(), 1, "double talk is an onset: {onsets:?}");
    }

    #[test]
    fn before_the_room_is_known_the_played_audio_blocks_energy_onsets() {
        let mut detector = OnsetDetector::default();
        let far = tone(0.5, 10 * ONSET_FRAME);
        let near = tone(0.5, 10 * ONSET_FRAME);
        assert!(
            run(&mut detector, &near, &far).is_empty(),
            "as loud as the played audio: maybe its echo"
        );
    }

    #[test]
    fn a_steady_noise_fires_once_then_never_again() {
        let mut detector = OnsetDetector::default();
        let mut near = vec![0i16; 40 * ONSET_FRAME];
        near.extend(tone(0.2, 500 * ONSET_FRAME));
        assert_eq!(
            run(&mut detector, &near, &[]).len(),
            1,
            "a fan turning on is one onset at most"
        );
    }

    #[test]
    fn a_new_minimum_level_applies_to_the_next_frame_and_keeps_what_was_learnt() {
        let mut detector = OnsetDetector::default();
        let quiet_voice = tone(0.008, 20 * ONSET_FRAME); // about −45 dBFS
        let mut near = vec![0i16; 50 * ONSET_FRAME];
        detector.set_config(OnsetConfig {
            min_dbfs: -40.0,
            ..OnsetConfig::default()
        });
        near.extend(&quiet_voice);
        assert!(
            run(&mut detector, &near, &[]).is_empty(),
            "under a −40 dBFS minimum a −45 dBFS voice is no onset"
        );
        detector.set_config(OnsetConfig::default());
        let mut again = vec![0i16; 40 * ONSET_FRAME];
        again.extend(&quiet_voice);
        assert_eq!(
            run(&mut detector, &again, &[]).len(),
            1,
            "back at −50 dBFS the same voice is an onset: the floor learnt in silence stayed"
        );
    }
}
