//! The one lock around the player's state, the flush generation, and `PlaybackSource`: the
//! reading end through which every sink pulls audio at its real-time rate.
//!
//! Why a generation: a sink may hold a few already-mixed samples between pulls (the rodio
//! adapter keeps one small block). Every operation that removes queued audio bumps the
//! generation under the lock, and a reader discards a block whose generation is old, so after
//! a flush nothing already pulled can still come out of this crate. What the OS audio buffer
//! already holds is beyond reach; the device sink keeps that to two short periods.
//!
//! It does not decide what plays (`playback`) nor when to pull (the sinks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::playback::Playback;
use crate::player::PlaybackStatus;

/// State shared by the `Player` handles, the output thread and the sinks.
pub(crate) struct Shared {
    playback: Mutex<Playback>,
    /// Bumped (under the `playback` lock) whenever queued audio is removed.
    generation: AtomicU64,
    pub(crate) status: Mutex<PlaybackStatus>,
    /// Woken whenever the queue becomes empty (`Player::drained`).
    drained: Notify,
}

impl Shared {
    pub(crate) fn new(playback: Playback, status: PlaybackStatus) -> Self {
        Shared {
            playback: Mutex::new(playback),
            generation: AtomicU64::new(0),
            status: Mutex::new(status),
            drained: Notify::new(),
        }
    }

    /// The player's state. Held for microseconds (one push or one block); a panic while held
    /// leaves it consistent enough to go on, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Playback> {
        self.playback.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, PlaybackStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `step` on the state; if it removed audio (returns `true`), bump the generation
    /// before the lock is released, so no reader can pull the old audio after this returns.
    pub(crate) fn remove_audio(&self, step: impl FnOnce(&mut Playback) -> bool) -> bool {
        let mut playback = self.lock();
        let removed = step(&mut playback);
        if removed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        let idle = !playback.is_busy();
        drop(playback);
        if idle {
            self.drained.notify_waiters();
        }
        removed
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn drained(&self) -> &Notify {
        &self.drained
    }
}

/// The reading end of a player, handed to a [`Sink`](crate::Sink): call [`fill`] at the
/// output's real-time rate. Cheap to clone.
///
/// [`fill`]: PlaybackSource::fill
#[derive(Clone)]
pub struct PlaybackSource {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for PlaybackSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackSource")
            .field("sample_rate", &self.sample_rate())
            .finish_non_exhaustive()
    }
}

impl PlaybackSource {
    /// The rate (Hz) of the mono samples `fill` produces.
    pub fn sample_rate(&self) -> u32 {
        self.shared.lock().rate()
    }

    /// Fill `out` with the next `out.len()` mono samples in `-1.0..=1.0` (silence where
    /// nothing is due) and advance the player's clock by as much. Returns the flush generation
    /// the block belongs to: a caller that holds on to samples must drop them once
    /// [`generation`](Self::generation) differs.
    pub fn fill(&self, out: &mut [f32]) -> u64 {
        let mut playback = self.shared.lock();
        let was_busy = playback.is_busy();
        playback.fill(out);
        let generation = self.shared.generation();
        let became_idle = was_busy && !playback.is_busy();
        drop(playback);
        if became_idle {
            self.shared.drained.notify_waiters();
        }
        generation
    }

    /// The current flush generation (one atomic load: cheap enough to check per sample).
    pub fn generation(&self) -> u64 {
        self.shared.generation()
    }
}
