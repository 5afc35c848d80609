//! The speech recognizer the running app hears with, swappable while it runs: saving an ASR key
//! (`asr_provider`, `asr_base_url`, …) builds the new provider and swaps it in here, and the next
//! upload and the microphone's next utterance use it. An utterance already being transcribed
//! finishes on the provider it started with. The upload bounds (`ASR_MAX_UPLOAD_BYTES`,
//! `ASR_MAX_SECONDS`) live here too, read by each new upload (and by the guard's early 413).

use std::sync::{Arc, PoisonError, RwLock};

use koto_core::ProviderError;
use koto_core::asr::{AsrProvider, AsrRequest, AsrStream};
use koto_providers::audio::decode::DecodeLimits;

/// The ASR in use (`None`: `ASR_PROVIDER=off`) and the bounds of what is uploaded to it. Cheap
/// to share (`Arc`); one per app.
#[derive(Default)]
pub struct LiveAsr {
    current: RwLock<Option<Arc<dyn AsrProvider>>>,
    limits: RwLock<DecodeLimits>,
}

impl std::fmt::Debug for LiveAsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveAsr")
            .field("provider", &self.name())
            .field("limits", &self.limits())
            .finish()
    }
}

impl LiveAsr {
    pub fn new(provider: Option<Arc<dyn AsrProvider>>, limits: DecodeLimits) -> Arc<LiveAsr> {
        Arc::new(LiveAsr {
            current: RwLock::new(provider),
            limits: RwLock::new(limits),
        })
    }

    /// The upload bounds now: a request reads them once, at its start.
    pub fn limits(&self) -> DecodeLimits {
        *self.limits.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the bounds a saved setting set; uploads already begun keep theirs.
    pub fn set_limits(&self, limits: DecodeLimits) {
        *self.limits.write().unwrap_or_else(PoisonError::into_inner) = limits;
    }

    /// The provider now; `None` when off.
    pub fn current(&self) -> Option<Arc<dyn AsrProvider>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Swaps in the provider a saved setting built.
    pub fn replace(&self, provider: Option<Arc<dyn AsrProvider>>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = provider;
    }

    pub fn is_off(&self) -> bool {
        self.current().is_none()
    }
}

/// The microphone's pipeline holds the switch itself as its provider, so it follows each swap.
impl AsrProvider for LiveAsr {
    /// `off`, `mock`, `openai`.
    fn name(&self) -> &'static str {
        self.current().map_or("off", |provider| provider.name())
    }

    fn transcribe(&self, request: AsrRequest) -> AsrStream {
        match self.current() {
            Some(provider) => provider.transcribe(request),
            None => Box::pin(futures_util::stream::once(async {
                Err(ProviderError::Unavailable(
                    "voice input is off: set ASR_PROVIDER to mock or openai".to_owned(),
                ))
            })),
        }
    }
}
