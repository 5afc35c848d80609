//! The quick acknowledgment (`QUICK_ACK_MS`, off by default): a short filler in the reply's
//! language ("嗯……", "えっと…", "Hmm…"), synthesised once per voice when the voice is set (at
//! start-up, after a voice change), and played when a turn's first clause has not reached TTS
//! within the wait. It is the turn's audio (its chunks come first in the turn's sequence, so a
//! STOP fences them like any other), but it is never a segment: never in the heard text, the
//! transcript or the store, and its time is reported as `quick_ack_ms`, apart from first audio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use koto_core::tts::{AudioChunk, TtsRequest, Voice};

/// The filler per language; a language not here uses English's.
const FILLERS: &[(&str, &str)] = &[
    ("zh", "嗯……"),
    ("ja", "えっと…"),
    ("ko", "음…"),
    ("en", "Hmm…"),
];
/// A filler longer than this is not quick (a voice that reads "…" aloud): it is cut here.
const MAX_FILLER: Duration = Duration::from_millis(900);

/// The fillers of one voice, ready to play.
#[derive(Debug, Default)]
pub(crate) struct QuickAcks {
    by_lang: HashMap<&'static str, Arc<[AudioChunk]>>,
}

impl QuickAcks {
    /// The filler for `lang` (`zh-CN` → `zh`), else English's.
    pub fn for_lang(&self, lang: Option<&str>) -> Option<Arc<[AudioChunk]>> {
        let primary = lang
            .and_then(|lang| lang.split(['-', '_']).next())
            .map(str::to_ascii_lowercase);
        primary
            .as_deref()
            .and_then(|lang| self.by_lang.get(lang))
            .or_else(|| self.by_lang.get("en"))
            .cloned()
    }

    /// Synthesises every filler with `voice`; a language the voice cannot speak has none.
    pub async fn prepare(voice: &dyn Voice) -> QuickAcks {
        let mut by_lang = HashMap::new();
        let max_samples = (MAX_FILLER.as_secs_f64() * f64::from(voice.sample_rate())) as usize;
        for (lang, text) in FILLERS {
            let mut stream = voice.speak(TtsRequest {
                text: (*text).to_owned(),
                lang: Some((*lang).to_owned()),
                correlation_id: "quick-ack".to_owned(),
            });
            let mut chunks = Vec::new();
            let mut samples = 0;
            let mut failed = false;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(chunk) if chunk.samples.is_empty() => {}
                    Ok(chunk) => {
                        samples += chunk.samples.len();
                        chunks.push(chunk);
                        if samples >= max_samples {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(lang, %error, "no quick acknowledgment in this language");
                        failed = true;
                        break;
                    }
                }
            }
            if !failed && !chunks.is_empty() {
                by_lang.insert(*lang, chunks.into());
            }
        }
        QuickAcks { by_lang }
    }
}

/// The fillers of the voice in use, made in the background when the voice is set.
#[derive(Default)]
pub(crate) struct QuickAckCache {
    /// The voice they were made with (held, so its address is never reused by another) and
    /// the fillers, once ready.
    ready: Mutex<Option<Made>>,
}

type Made = (Arc<dyn Voice>, Arc<QuickAcks>);

impl QuickAckCache {
    /// Starts making `voice`'s fillers unless they exist. Needs a tokio runtime.
    pub fn prepare(self: &Arc<Self>, voice: &Arc<dyn Voice>) {
        if self
            .lock()
            .as_ref()
            .is_some_and(|(made, _)| Arc::ptr_eq(made, voice))
        {
            return;
        }
        let cache = self.clone();
        let voice = voice.clone();
        tokio::spawn(async move {
            let acks = QuickAcks::prepare(voice.as_ref()).await;
            tracing::info!(
                languages = acks.by_lang.len(),
                "quick acknowledgments ready"
            );
            *cache.lock() = Some((voice, Arc::new(acks)));
        });
    }

    /// The fillers for `voice`, if they are ready (a turn in the first second after start may
    /// have none: it simply gets no filler).
    pub fn get(&self, voice: &Arc<dyn Voice>) -> Option<Arc<QuickAcks>> {
        self.lock()
            .as_ref()
            .filter(|(made, _)| Arc::ptr_eq(made, voice))
            .map(|(_, acks)| acks.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Made>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
