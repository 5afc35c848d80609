//! Relay counters. Kept under the relay's one lock (every event that counts already holds it);
//! this module does no exporting — the server turns a [`RelayMetrics`] snapshot into its format.

use std::time::Duration;

/// Count, sum, max and last of a latency (STOP → STOP_ACK).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub total: Duration,
    pub max: Duration,
    pub last: Option<Duration>,
}

impl LatencySummary {
    pub(crate) fn record(&mut self, latency: Duration) {
        self.count += 1;
        self.total += latency;
        self.max = self.max.max(latency);
        self.last = Some(latency);
    }

    /// Mean latency, `None` before the first sample.
    pub fn mean(&self) -> Option<Duration> {
        let count = u32::try_from(self.count).ok().filter(|n| *n > 0)?;
        Some(self.total / count)
    }
}

/// A snapshot of the relay's counters (monotonic) and gauges (current values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayMetrics {
    /// SPEECH_CHUNK frames offered by producers, valid or not.
    pub chunks_in: u64,
    /// SPEECH_CHUNK frames released to clients by the pacer.
    pub chunks_released: u64,
    /// Chunks (and ENDs) that arrived for a stopping session or a fenced turn.
    pub dropped_fenced: u64,
    /// Chunks that were queued in the relay when a STOP or a fence cleared them.
    pub dropped_queued_on_stop: u64,
    /// Chunks refused for a seq gap or duplicate.
    pub dropped_bad_seq: u64,
    /// Chunks/ENDs refused for an older or already ended turn.
    pub dropped_stale_turn: u64,
    /// Frames refused as malformed: bad pcm/sampleRate, invalid JSON, unknown type/action,
    /// binary frames on `/ws/ingest`, oversized frames, producer-sent STOP.
    pub frames_malformed: u64,
    /// Frames a slow client did not get (its queue was full).
    pub client_frames_dropped: u64,
    /// Clients disconnected for being too slow.
    pub clients_disconnected_slow: u64,
    /// Messages from live clients that were not a valid CONTROL STOP.
    pub client_messages_rejected: u64,
    /// STOP requests (clients, HTTP, tray), including repeats.
    pub stops: u64,
    /// STOP_ACKs received from producers (solicited or not).
    pub stop_acks: u64,
    /// STOPs whose producer did not answer in `stop_ack_timeout` (the relay fenced by itself).
    pub stop_timeouts: u64,
    /// STOPs for a session no producer could take (the relay fenced by itself).
    pub stop_no_producer: u64,
    /// Pauses asked for (voice barge-in ducks), and those lifted by their own limit.
    pub pauses: u64,
    pub pause_timeouts: u64,
    /// The most audio ever held ahead of a session's playback clock right after a release
    /// (≤ `audio_lead`, unless a single chunk is longer than the lead).
    pub max_audio_lead: Duration,
    /// STOP → STOP_ACK latency of acknowledged stops.
    pub stop_ack_latency: LatencySummary,
    /// Gauge: live clients connected.
    pub clients_connected: usize,
    /// Gauge: of those, the ones that said they are an OBS overlay (`ClientRole::Overlay`).
    pub overlays_connected: usize,
    /// Gauge: producers attached.
    pub producers: usize,
    /// Gauge: sessions with relay state.
    pub sessions: usize,
    /// Gauge: pacer tasks running.
    pub pacers_active: usize,
}
