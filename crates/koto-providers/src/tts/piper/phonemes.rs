//! Text → a Piper voice's phoneme ids, for the in-process runtime.
//!
//! Piper voices of `phoneme_type: espeak` are trained on espeak-ng's IPA, clause by clause, with
//! each clause's punctuation kept as a phoneme (`,` `.` `!` `?` `;` `:`) and the result
//! decomposed (NFD) into one codepoint per phoneme. Piper gets the IPA from espeak-ng linked into
//! its Python extension; we run the `espeak-ng` program instead (`-q --ipa`), which keeps
//! espeak-ng (GPL) out of our process. Each of our clauses is phonemized on its own, so the
//! clause ↔ punctuation pairing is exact: espeak-ng prints one line per clause of its own and
//! drops the punctuation, and its clauses are not ours ("Dr." and "e.g." end one), so a whole
//! sentence at once could not be paired back. The clauses go to one warm process per voice
//! ([`super::warm_espeak`]), or, where that cannot work, to a short process each.
//!
//! The ids of a sentence are `^ _ (phoneme _)* $` (BOS, pad after each, EOS), as Piper builds
//! them; phonemes the voice does not know are dropped (and counted in a debug log).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use koto_core::ProviderError;
use tokio::process::Command;
use unicode_normalization::UnicodeNormalization;

use super::warm_espeak::WarmEspeak;

/// espeak-ng processes of one segment running at once: a long paragraph of clauses must not
/// fork dozens of processes on a two-core machine.
const PHONEMIZE_CONCURRENCY: usize = 4;

/// A run longer than this many phonemes is split at a word boundary: memory and the time to a
/// run's first sample grow with its length, and a 2,000-character sentence without a break must
/// neither stall nor take hundreds of megabytes. About 25–30 s of speech.
pub(crate) const MAX_PHONEMES_PER_RUN: usize = 400;

/// Longest wait for one espeak-ng process (it takes ~10 ms per clause).
const PHONEMIZE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a voice's input is written (`phoneme_type` of its `.onnx.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PhonemeType {
    /// espeak-ng IPA in the given espeak voice (`espeak.voice`, e.g. `en-us`).
    Espeak { voice: String },
    /// The text's own codepoints (NFD).
    Text,
}

/// One clause of the text, with the punctuation that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause<'a> {
    pub text: &'a str,
    /// The ending punctuation as Piper writes it (ASCII: `，` → `,`), if any.
    pub terminator: Option<char>,
    /// True after `.` `!` `?` (and `。！？`): the next clause starts a new sentence (a new run).
    pub ends_sentence: bool,
}

/// Splits text into clauses at `, . ! ? ; :` followed by a space or the end (so `3.5` and
/// `a,b` stay whole), and at the full-width `， 。 ！ ？ ； ： 、` wherever they are. A run of
/// marks (`?!`, `...`) ends one clause, named by its first mark.
pub(crate) fn clauses(text: &str) -> Vec<Clause<'_>> {
    let mut result = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let Some((terminator, full_width)) = terminator_of(c) else {
            continue;
        };
        // Swallow the rest of a run of marks (`?!`, `……`, `...`).
        let mut end = at + c.len_utf8();
        let mut ends_sentence = matches!(terminator, '.' | '!' | '?');
        while let Some(&(next_at, next)) = chars.peek() {
            match terminator_of(next) {
                Some((more, _)) => {
                    ends_sentence |= matches!(more, '.' | '!' | '?');
                    end = next_at + next.len_utf8();
                    chars.next();
                }
                None => break,
            }
        }
        let followed_by_break = text[end..].chars().next().is_none_or(char::is_whitespace);
        if !(full_width || followed_by_break) {
            continue;
        }
        result.push(Clause {
            text: &text[start..at],
            terminator: Some(terminator),
            ends_sentence,
        });
        start = end;
    }
    if !text[start..].trim().is_empty() {
        result.push(Clause {
            text: &text[start..],
            terminator: None,
            ends_sentence: true,
        });
    }
    result.retain(|clause| !clause.text.trim().is_empty());
    result
}

/// `c` as a clause terminator in Piper's (ASCII) spelling, and whether it is full-width.
fn terminator_of(c: char) -> Option<(char, bool)> {
    Some(match c {
        ',' | '.' | '!' | '?' | ';' | ':' => (c, false),
        '，' | '、' => (',', true),
        '。' => ('.', true),
        '！' => ('!', true),
        '？' => ('?', true),
        '；' => (';', true),
        '：' => (':', true),
        _ => return None,
    })
}

/// A voice's `phoneme_id_map`, and the multi-codepoint phonemes (vowel clusters) it knows.
#[derive(Debug, Clone)]
pub(crate) struct PhonemeIds {
    ids: HashMap<String, Vec<i64>>,
    /// Lengths (in codepoints) of the multi-codepoint keys, longest first.
    cluster_lengths: Vec<usize>,
    bos: Vec<i64>,
    eos: Vec<i64>,
    pad: Vec<i64>,
}

impl PhonemeIds {
    /// Reads `phoneme_id_map` from a voice config; it must have `^` `$` and `_`.
    pub(crate) fn from_config(config: &serde_json::Value) -> Result<Self, String> {
        let map = config
            .get("phoneme_id_map")
            .and_then(serde_json::Value::as_object)
            .ok_or("it has no phoneme_id_map")?;
        let mut ids = HashMap::with_capacity(map.len());
        for (phoneme, value) in map {
            let list = value
                .as_array()
                .map(|list| list.iter().filter_map(serde_json::Value::as_i64).collect())
                .ok_or_else(|| format!("its phoneme_id_map entry {phoneme:?} is not a list"))?;
            ids.insert(phoneme.clone(), list);
        }
        let special = |key: &str| {
            ids.get(key)
                .cloned()
                .ok_or_else(|| format!("its phoneme_id_map has no {key:?}"))
        };
        let (bos, eos, pad) = (special("^")?, special("$")?, special("_")?);
        let mut cluster_lengths: Vec<usize> = ids
            .keys()
            .map(|key| key.chars().count())
            .filter(|&n| n > 1)
            .collect();
        cluster_lengths.sort_unstable_by(|a, b| b.cmp(a));
        cluster_lengths.dedup();
        Ok(PhonemeIds {
            ids,
            cluster_lengths,
            bos,
            eos,
            pad,
        })
    }

    /// The ids of one run: `^ _ (phoneme _)* $`. Returns how many phonemes were unknown.
    pub(crate) fn encode(&self, phonemes: &[char]) -> (Vec<i64>, usize) {
        let mut out = Vec::with_capacity(phonemes.len() * 2 + 3);
        out.extend(&self.bos);
        out.extend(&self.pad);
        let mut unknown = 0;
        let mut at = 0;
        'phonemes: while at < phonemes.len() {
            for &n in &self.cluster_lengths {
                if at + n <= phonemes.len() {
                    let key: String = phonemes[at..at + n].iter().collect();
                    if let Some(ids) = self.ids.get(&key) {
                        out.extend(ids);
                        out.extend(&self.pad);
                        at += n;
                        continue 'phonemes;
                    }
                }
            }
            let mut buffer = [0u8; 4];
            match self.ids.get(&*phonemes[at].encode_utf8(&mut buffer)) {
                Some(ids) => {
                    out.extend(ids);
                    out.extend(&self.pad);
                }
                None => unknown += 1,
            }
            at += 1;
        }
        out.extend(&self.eos);
        (out, unknown)
    }
}

/// Turns text into runs of phonemes (one per sentence, long ones split).
#[derive(Debug, Clone)]
pub(crate) struct Phonemizer {
    /// The `espeak-ng` program (a name looked up in `PATH`, or a path).
    program: PathBuf,
    kind: PhonemeType,
    /// The voice's warm espeak-ng, for `PhonemeType::Espeak`.
    warm: Option<WarmEspeak>,
}

impl Phonemizer {
    pub(crate) fn new(program: PathBuf, kind: PhonemeType) -> Self {
        let warm = match &kind {
            PhonemeType::Espeak { voice } => Some(WarmEspeak::new(&program, voice)),
            PhonemeType::Text => None,
        };
        Phonemizer {
            program,
            kind,
            warm,
        }
    }

    /// Checks that the program runs and knows the voice, so a missing espeak-ng fails at start.
    pub(crate) async fn check(&self) -> Result<(), ProviderError> {
        if let PhonemeType::Espeak { .. } = &self.kind {
            let phonemes = self.espeak_ipa("test").await?;
            if phonemes.trim().is_empty() {
                return Err(ProviderError::Unavailable(format!(
                    "{} printed no phonemes for a test word",
                    self.program.display()
                )));
            }
        }
        Ok(())
    }

    /// The runs of `text`: the phonemes of each sentence, NFD, punctuation kept. Clauses that
    /// give no phonemes (emoji, markup) are skipped; text with none gives no runs.
    pub(crate) async fn runs(&self, text: &str) -> Result<Vec<Vec<char>>, ProviderError> {
        let clauses = clauses(text);
        // Owned per future: a borrowing closure is not `Send` enough for the stream it feeds.
        let texts: Vec<String> = clauses
            .iter()
            .map(|clause| clause.text.to_owned())
            .collect();
        let phonemized: Vec<Result<String, ProviderError>> = stream::iter(texts)
            .map(|text| {
                let phonemizer = self.clone();
                async move { phonemizer.clause_phonemes(&text).await }
            })
            .buffered(PHONEMIZE_CONCURRENCY)
            .collect()
            .await;
        let mut runs = Vec::new();
        let mut sentence = String::new();
        for (clause, phonemes) in clauses.iter().zip(phonemized) {
            let phonemes = phonemes?;
            if !phonemes.is_empty() {
                sentence.push_str(&phonemes);
                if let Some(terminator) = clause.terminator {
                    sentence.push(terminator);
                    if matches!(terminator, ',' | ':' | ';') {
                        sentence.push(' ');
                    }
                }
            }
            if clause.ends_sentence && !sentence.trim().is_empty() {
                runs.extend(split_long(sentence.trim_end().nfd().collect()));
                sentence.clear();
            }
        }
        if !sentence.trim().is_empty() {
            runs.extend(split_long(sentence.trim_end().nfd().collect()));
        }
        Ok(runs)
    }

    async fn clause_phonemes(&self, text: &str) -> Result<String, ProviderError> {
        match &self.kind {
            PhonemeType::Text => Ok(text.trim().to_owned()),
            PhonemeType::Espeak { .. } => Ok(clean_ipa(&self.espeak_ipa(text).await?)),
        }
    }

    async fn espeak_ipa(&self, text: &str) -> Result<String, ProviderError> {
        let PhonemeType::Espeak { voice } = &self.kind else {
            return Ok(String::new());
        };
        if let Some(warm) = &self.warm
            && let Some(ipa) = warm.ipa(text).await
        {
            return Ok(ipa);
        }
        self.espeak_ipa_alone(voice, text).await
    }

    /// `text` phonemized by a process of its own.
    async fn espeak_ipa_alone(&self, voice: &str, text: &str) -> Result<String, ProviderError> {
        let output = Command::new(&self.program)
            .args(["-q", "--ipa", "-v", voice, "--"])
            .arg(text)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PHONEMIZE_TIMEOUT, output)
            .await
            .map_err(|_| {
                ProviderError::Timeout(format!(
                    "{} took over {PHONEMIZE_TIMEOUT:?} to phonemize a clause",
                    self.program.display()
                ))
            })?
            .map_err(|error| espeak_unavailable(&self.program, &error))?;
        if !output.status.success() {
            return Err(ProviderError::Unavailable(format!(
                "{} -v {voice} failed ({}): {}",
                self.program.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// espeak-ng's lines (its own clauses) joined by spaces, without the `(en)` … `(cmn)` language
/// switch marks it puts around foreign words (Piper drops them too).
fn clean_ipa(ipa: &str) -> String {
    let mut out = String::with_capacity(ipa.len());
    let mut in_flag = false;
    for c in ipa.chars() {
        match c {
            '(' => in_flag = true,
            ')' if in_flag => in_flag = false,
            _ if in_flag => {}
            '\n' | '\r' | '\t' => out.push(' '),
            _ => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits a run over [`MAX_PHONEMES_PER_RUN`] at its last word gap before the limit (or hard at
/// the limit when a "word" is longer).
fn split_long(mut phonemes: Vec<char>) -> Vec<Vec<char>> {
    let mut runs = Vec::new();
    while phonemes.len() > MAX_PHONEMES_PER_RUN {
        let cut = phonemes[..MAX_PHONEMES_PER_RUN]
            .iter()
            .rposition(|&c| c == ' ')
            .filter(|&at| at > 0)
            .unwrap_or(MAX_PHONEMES_PER_RUN);
        let rest = phonemes.split_off(cut);
        runs.push(phonemes);
        phonemes = rest.into_iter().skip_while(|&c| c == ' ').collect();
    }
    if !phonemes.is_empty() {
        runs.push(phonemes);
    }
    runs
}

fn espeak_unavailable(program: &Path, error: &std::io::Error) -> ProviderError {
    if error.kind() == std::io::ErrorKind::NotFound {
        ProviderError::Unavailable(format!(
            "{} is not installed; the in-process Piper voice phonemizes with it: install \
             espeak-ng (`apt-get install espeak-ng`; scripts/deps.sh does this)",
            program.display()
        ))
    } else {
        ProviderError::Unavailable(format!("cannot run {}: {error}", program.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> Vec<(&str, Option<char>, bool)> {
        clauses(text)
            .into_iter()
            .map(|c| (c.text, c.terminator, c.ends_sentence))
            .collect()
    }

    #[test]
    fn clauses_end_at_punctuation_before_a_break() {
        assert_eq!(
            shape("Welcome back, everyone! It is 3.5 km, a,b. Ok"),
            vec![
                ("Welcome back", Some(','), false),
                (" everyone", Some('!'), true),
                (" It is 3.5 km", Some(','), false),
                (" a,b", Some('.'), true),
                (" Ok", None, true),
            ]
        );
        assert_eq!(
            shape("Really?! Yes... fine"),
            vec![
                ("Really", Some('?'), true),
                (" Yes", Some('.'), true),
                (" fine", None, true)
            ],
            "a run of marks ends one clause"
        );
    }

    #[test]
    fn full_width_marks_end_clauses_without_a_space() {
        assert_eq!(
            shape("大家好，今天、天气很好。走吧！"),
            vec![
                ("大家好", Some(','), false),
                ("今天", Some(','), false),
                ("天气很好", Some('.'), true),
                ("走吧", Some('!'), true),
            ]
        );
    }

    #[test]
    fn emoji_and_empty_text_have_no_clauses_worth_phonemizing() {
        assert!(clauses("").is_empty());
        assert!(clauses("  ,  . ").is_empty(), "marks alone are not clauses");
        assert_eq!(shape("🎉🎉"), vec![("🎉🎉", None, true)]);
    }

    #[test]
    fn ipa_loses_language_flags_and_line_breaks() {
        assert_eq!(clean_ipa("(en)wɒz(cmn) dˈa\nhəlˈoʊ\n"), "wɒz dˈa həlˈoʊ");
    }

    #[test]
    fn long_runs_are_cut_at_a_word_gap() {
        let word: Vec<char> = "abcdefghi ".chars().collect();
        let long: Vec<char> = word.iter().cycle().take(1_000).copied().collect();
        let runs = split_long(long);
        assert!(runs.len() >= 3, "1,000 phonemes make several runs");
        for run in &runs {
            assert!(run.len() <= MAX_PHONEMES_PER_RUN);
            assert_ne!(run.first(), Some(&' '), "no run starts with a gap");
        }
        let total: usize = runs.iter().map(Vec::len).sum();
        assert!(
            total >= 1_000 - runs.len(),
            "only the gaps at the cuts are lost"
        );
        let unbroken = split_long(vec!['a'; 900]);
        assert_eq!(
            unbroken.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![400, 400, 100],
            "no gap: a hard cut"
        );
    }

    #[test]
    fn ids_are_bos_pad_interleaved_eos_with_clusters_and_unknowns() {
        let config = serde_json::json!({"phoneme_id_map": {
            "_": [0], "^": [1], "$": [2], " ": [3], "a": [14], "ɪ": [74], "aɪ": [161], "k": [23]
        }});
        let ids = PhonemeIds::from_config(&config).expect("a valid map");
        let (encoded, unknown) = ids.encode(&['k', 'a', 'ɪ', ' ', 'a', 'ʒ']);
        assert_eq!(encoded, vec![1, 0, 23, 0, 161, 0, 3, 0, 14, 0, 2]);
        assert_eq!(unknown, 1, "ʒ is not in this voice");
        let missing = PhonemeIds::from_config(&serde_json::json!({"phoneme_id_map": {"_": [0]}}));
        assert!(missing.expect_err("no BOS").contains("\"^\""));
    }

    /// With the real espeak-ng (`scripts/test.sh` installs it): punctuation comes back as
    /// phonemes, sentences are runs, and 2,000 characters without a break are bounded runs.
    #[tokio::test]
    async fn real_espeak_phonemes_keep_the_marks_and_bound_the_runs() {
        let phonemizer = Phonemizer::new(
            PathBuf::from("espeak-ng"),
            PhonemeType::Espeak {
                voice: "en-us".into(),
            },
        );
        if phonemizer.check().await.is_err() {
            println!("SKIP: espeak-ng is not installed (scripts/test.sh installs it)");
            return;
        }
        let runs = phonemizer
            .runs("Welcome back, everyone! How are you?")
            .await
            .expect("phonemes");
        let runs: Vec<String> = runs.iter().map(|run| run.iter().collect()).collect();
        assert_eq!(runs.len(), 2, "two sentences, two runs: {runs:?}");
        assert!(runs[0].contains(", ") && runs[0].ends_with('!'), "{runs:?}");
        assert!(runs[1].ends_with('?'), "{runs:?}");
        assert!(
            runs[0].contains('\u{2c8}'),
            "espeak-ng's stress marks are kept: {runs:?}"
        );

        let endless = "and then another block ".repeat(90);
        assert!(endless.len() > 2_000);
        let runs = phonemizer.runs(&endless).await.expect("phonemes");
        assert!(runs.len() >= 3, "cut into several runs, got {}", runs.len());
        assert!(runs.iter().all(|run| run.len() <= MAX_PHONEMES_PER_RUN));
    }
}
