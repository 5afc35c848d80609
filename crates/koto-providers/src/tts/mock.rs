//! `MockTts`: a fast, deterministic "babble" voice for tests, demos and machines without a TTS.
//! It does not speak words; it makes speech-shaped sound of a realistic duration.
//!
//! Every CJK character is a 180 ms syllable, every Latin word `letters × 65 ms` with a syllable
//! about every three letters; spaces, commas and full stops are pauses. Each syllable is a
//! harmonic-rich tone (pitch derived from its characters, falling slightly) under a rise-and-fall
//! envelope, so mouth visemes open and close like speech. Same text, same samples. Audio is
//! generated at 24 kHz as fast as it is polled; optional per-block delays (through `tokio::time`,
//! so paused-clock tests stay instant) simulate a slow synthesiser.

use std::f64::consts::PI;
use std::time::Duration;

use futures_util::stream;
use koto_core::tts::{PcmBlock, PcmStream, TtsProvider, TtsRequest};

/// Knobs of the mock voice. The defaults are what the module docs describe.
#[derive(Debug, Clone, PartialEq)]
pub struct MockTtsConfig {
    pub sample_rate: u32,
    /// Audio per `PcmBlock`.
    pub block: Duration,
    /// One Han character, kana or hangul syllable.
    pub cjk_char: Duration,
    /// One Latin letter or digit.
    pub latin_char: Duration,
    /// A run of whitespace.
    pub word_gap: Duration,
    /// `,` `;` `:` `，` `、` `；` `：`.
    pub clause_pause: Duration,
    /// `.` `!` `?` `。` `！` `？` `…`.
    pub sentence_pause: Duration,
    /// Waited before the first block: simulated time to first audio.
    pub first_block_delay: Duration,
    /// Waited before every later block: simulated synthesis speed.
    pub block_delay: Duration,
}

impl Default for MockTtsConfig {
    fn default() -> Self {
        Self {
            sample_rate: 24_000,
            block: Duration::from_millis(100),
            cjk_char: Duration::from_millis(180),
            latin_char: Duration::from_millis(65),
            word_gap: Duration::from_millis(40),
            clause_pause: Duration::from_millis(150),
            sentence_pause: Duration::from_millis(300),
            first_block_delay: Duration::ZERO,
            block_delay: Duration::ZERO,
        }
    }
}

/// The mock provider.
#[derive(Debug, Clone, Default)]
pub struct MockTts {
    config: MockTtsConfig,
}

impl MockTts {
    pub fn new(config: MockTtsConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &MockTtsConfig {
        &self.config
    }

    /// Exactly how long the audio for `text` will be.
    pub fn duration_of(&self, text: &str) -> Duration {
        let samples: u64 = script(&self.config, text)
            .iter()
            .map(|unit| unit.samples() as u64)
            .sum();
        Duration::from_nanos(samples * 1_000_000_000 / u64::from(self.config.sample_rate.max(1)))
    }
}

impl TtsProvider for MockTts {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn synthesize(&self, request: TtsRequest) -> PcmStream {
        let babble = Babble::new(&self.config, &request.text);
        let first_delay = self.config.first_block_delay;
        let block_delay = self.config.block_delay;
        Box::pin(stream::unfold(
            (babble, true),
            move |(mut babble, first)| async move {
                if babble.is_done() {
                    return None;
                }
                let delay = if first { first_delay } else { block_delay };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let block = babble.next_block()?;
                Some((Ok(block), (babble, false)))
            },
        ))
    }
}

/// One piece of the timeline.
#[derive(Debug, Clone, PartialEq)]
enum Unit {
    Voiced {
        samples: usize,
        syllables: u32,
        pitch_hz: f64,
    },
    Silence {
        samples: usize,
    },
}

impl Unit {
    fn samples(&self) -> usize {
        match self {
            Unit::Voiced { samples, .. } | Unit::Silence { samples } => *samples,
        }
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FFFF) // CJK extensions B–F
}

fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '。' | '！' | '？' | '…')
}

fn is_clause_break(c: char) -> bool {
    matches!(c, ',' | ';' | ':' | '，' | '、' | '；' | '：')
}

/// A stable pitch per syllable (FNV-1a of its characters), 110–200 Hz.
fn pitch_for(chars: &[char]) -> f64 {
    let mut hash: u32 = 0x811c_9dc5;
    for &c in chars {
        hash ^= c as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    110.0 + f64::from(hash % 90)
}

/// Text → timeline of voiced syllables and pauses.
fn script(config: &MockTtsConfig, text: &str) -> Vec<Unit> {
    let samples_for = |d: Duration| {
        ((d.as_nanos() * u128::from(config.sample_rate) + 500_000_000) / 1_000_000_000) as usize
    };
    let mut units = Vec::new();
    let mut word: Vec<char> = Vec::new();
    let flush_word = |word: &mut Vec<char>, units: &mut Vec<Unit>| {
        if word.is_empty() {
            return;
        }
        let letters = word.len() as u32;
        units.push(Unit::Voiced {
            samples: samples_for(config.latin_char * letters),
            syllables: letters.div_ceil(3),
            pitch_hz: pitch_for(word),
        });
        word.clear();
    };
    // Consecutive pause characters make one pause, as long as the longest of them.
    let pause = |units: &mut Vec<Unit>, length: Duration| {
        let samples = samples_for(length);
        if let Some(Unit::Silence { samples: last }) = units.last_mut() {
            *last = (*last).max(samples);
        } else if samples > 0 {
            units.push(Unit::Silence { samples });
        }
    };
    for c in text.trim().chars() {
        if is_cjk(c) {
            flush_word(&mut word, &mut units);
            units.push(Unit::Voiced {
                samples: samples_for(config.cjk_char),
                syllables: 1,
                pitch_hz: pitch_for(&[c]),
            });
        } else if c.is_alphanumeric() {
            word.push(c);
        } else if c.is_whitespace() {
            flush_word(&mut word, &mut units);
            pause(&mut units, config.word_gap);
        } else if is_sentence_end(c) {
            flush_word(&mut word, &mut units);
            pause(&mut units, config.sentence_pause);
        } else if is_clause_break(c) {
            flush_word(&mut word, &mut units);
            pause(&mut units, config.clause_pause);
        }
        // Anything else (quotes, brackets, apostrophes, emoji) is silent and takes no time.
    }
    flush_word(&mut word, &mut units);
    units.retain(|unit| unit.samples() > 0);
    units
}

/// Renders the timeline block by block.
struct Babble {
    units: Vec<Unit>,
    unit_index: usize,
    position: usize,
    phase: f64,
    sample_rate: u32,
    block_samples: usize,
}

/// Relative strengths of the harmonics: a buzzy, vowel-like tone rather than a pure whistle.
const HARMONICS: [f64; 6] = [1.0, 0.7, 0.5, 0.35, 0.2, 0.12];
/// Share of each syllable that is a silent closure before its vowel.
const CLOSURE: f64 = 0.15;
/// Peak level: about −9 dBFS, so the RMS of a syllable sits where real speech does.
const PEAK: f64 = 0.35 * 32_767.0;

impl Babble {
    fn new(config: &MockTtsConfig, text: &str) -> Self {
        let sample_rate = config.sample_rate.max(1);
        let block_samples =
            ((config.block.as_nanos() * u128::from(sample_rate) / 1_000_000_000) as usize).max(1);
        Self {
            units: script(config, text),
            unit_index: 0,
            position: 0,
            phase: 0.0,
            sample_rate,
            block_samples,
        }
    }

    fn is_done(&self) -> bool {
        self.unit_index >= self.units.len()
    }

    fn next_block(&mut self) -> Option<PcmBlock> {
        let mut samples = Vec::with_capacity(self.block_samples);
        let harmonics_sum: f64 = HARMONICS.iter().sum();
        while samples.len() < self.block_samples {
            let Some(unit) = self.units.get(self.unit_index) else {
                break;
            };
            match *unit {
                Unit::Silence { samples: length } => {
                    let take = (length - self.position).min(self.block_samples - samples.len());
                    samples.extend(std::iter::repeat_n(0i16, take));
                    self.position += take;
                }
                Unit::Voiced {
                    samples: length,
                    syllables,
                    pitch_hz,
                } => {
                    // Each syllable starts with a short closure (a consonant) and swells into a
                    // vowel, so the level dips deeply between syllables and the mouth follows.
                    let syllable_x =
                        (self.position as f64 * f64::from(syllables) / length as f64).fract();
                    let envelope = if syllable_x < CLOSURE {
                        0.0
                    } else {
                        (PI * (syllable_x - CLOSURE) / (1.0 - CLOSURE))
                            .sin()
                            .powf(0.8)
                    };
                    let x = self.position as f64 / length as f64;
                    let frequency = pitch_hz * (1.0 - 0.1 * x);
                    self.phase = (self.phase + 2.0 * PI * frequency / f64::from(self.sample_rate))
                        % (2.0 * PI);
                    let tone: f64 = HARMONICS
                        .iter()
                        .enumerate()
                        .map(|(k, weight)| weight * ((k + 1) as f64 * self.phase).sin())
                        .sum::<f64>()
                        / harmonics_sum;
                    samples.push((PEAK * envelope * tone).round() as i16);
                    self.position += 1;
                }
            }
            if self.position >= self.units[self.unit_index].samples() {
                self.unit_index += 1;
                self.position = 0;
            }
        }
        (!samples.is_empty()).then_some(PcmBlock {
            sample_rate: self.sample_rate,
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn render(config: &MockTtsConfig, text: &str) -> Vec<PcmBlock> {
        let mut babble = Babble::new(config, text);
        std::iter::from_fn(|| babble.next_block()).collect()
    }

    #[test]
    fn durations_follow_the_script() {
        let tts = MockTts::default();
        assert_eq!(tts.duration_of("你好"), Duration::from_millis(360));
        assert_eq!(tts.duration_of("hello"), Duration::from_millis(325));
        assert_eq!(
            tts.duration_of("hello, world."),
            Duration::from_millis(325 + 150 + 325 + 300),
            "a comma followed by a space is one clause pause, not two"
        );
        assert_eq!(
            tts.duration_of("こんにちは。"),
            Duration::from_millis(5 * 180 + 300)
        );
        assert_eq!(
            tts.duration_of("  "),
            Duration::ZERO,
            "blank text is silent"
        );
        assert_eq!(
            tts.duration_of("\"(hi)\""),
            Duration::from_millis(130),
            "quotes and brackets take no time"
        );
    }

    #[test]
    fn rendering_matches_the_duration_and_is_deterministic() {
        let config = MockTtsConfig::default();
        let text = "今天天气很好。Let's go to the park!";
        let first = render(&config, text);
        let samples: usize = first.iter().map(|b| b.samples.len()).sum();
        let expected = MockTts::default().duration_of(text).as_micros() as usize * 24 / 1000;
        assert_eq!(
            samples, expected,
            "the audio is as long as duration_of says"
        );
        assert!(
            first[..first.len() - 1]
                .iter()
                .all(|b| b.samples.len() == 2_400),
            "blocks are 100 ms at 24 kHz, the last may be shorter"
        );
        assert_eq!(first, render(&config, text), "same text, same samples");
    }

    #[test]
    fn syllables_rise_and_fall() {
        let samples: Vec<i16> = render(&MockTtsConfig::default(), "你")
            .into_iter()
            .flat_map(|b| b.samples)
            .collect();
        let peak = |range: std::ops::Range<usize>| {
            samples[range]
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap()
        };
        // 180 ms = 4 320 samples: quiet edges, loud middle, so a mouth would open and close.
        assert!(peak(0..200) < peak(2_000..2_300) / 3, "soft onset");
        assert!(peak(4_120..4_320) < peak(2_000..2_300) / 3, "soft release");
        assert!(peak(2_000..2_300) > 5_000, "the middle is speech-loud");
    }
}
