// In-page audio: s16le PCM chunks scheduled back to back on one AudioContext clock (gapless),
// dropped at once on STOP / STOP_ACK. Used by the overlay (`&audio=1`) and by the panel's
// opt-in "play audio here" (the desktop app plays audio in Rust instead).

/** Lead added when playback (re)starts after silence, absorbing network jitter. */
const START_LEAD_S = 0.05;

export class PcmPlayer {
  constructor() {
    this.context = null;
    this.nextTime = 0;
    /** Per session: sources scheduled and not yet ended, to stop them on a STOP. */
    this.sources = new Map();
    /** Per session: the turn of the last chunk played. */
    this.lastTurn = new Map();
    /** Per session: the highest fenced turn (no audio of a turn ≤ it is played again). */
    this.fences = new Map();
  }

  /** Creates (or resumes) the AudioContext. Browsers may need a user gesture first. */
  ensureContext() {
    if (!this.context) {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return null;
      this.context = new Context({ latencyHint: 'interactive' });
    }
    if (this.context.state === 'suspended') this.context.resume().catch(() => {});
    return this.context;
  }

  /** True when the browser keeps audio suspended until the user clicks. */
  get blocked() {
    return this.context?.state === 'suspended';
  }

  /** Whether `turn` of `session` was fenced by a STOP/STOP_ACK. */
  fenced(session, turn) {
    const fence = this.fences.get(session);
    return fence !== undefined && turn <= fence;
  }

  /**
   * Schedules one chunk right after the previous one.
   * @returns {number|null} the context time it starts at, or null if not played
   */
  play(session, turn, samples, sampleRate) {
    if (!samples || samples.length === 0 || this.fenced(session, turn)) return null;
    const context = this.ensureContext();
    if (!context) return null;
    const buffer = context.createBuffer(1, samples.length, sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i += 1) channel[i] = samples[i] / 32768;
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    const startAt = Math.max(this.nextTime, context.currentTime + START_LEAD_S);
    source.start(startAt);
    this.nextTime = startAt + buffer.duration;
    if (!this.sources.has(session)) this.sources.set(session, new Set());
    const playing = this.sources.get(session);
    playing.add(source);
    source.onended = () => playing.delete(source);
    this.lastTurn.set(session, turn);
    return startAt;
  }

  /** Seconds until the scheduled audio ends (0 when silent). */
  remaining() {
    if (!this.context) return 0;
    return Math.max(0, this.nextTime - this.context.currentTime);
  }

  /**
   * Silences `session` now and fences it up to `turn` (default: the turn it was playing), so
   * late chunks of that turn are dropped; later turns play again.
   */
  stop(session, turn) {
    const fence = turn ?? this.lastTurn.get(session);
    if (fence !== undefined) {
      this.fences.set(session, Math.max(this.fences.get(session) ?? -1, fence));
    }
    for (const source of this.sources.get(session) ?? []) {
      try {
        source.stop();
      } catch {
        // Already ended.
      }
    }
    this.sources.delete(session);
    let anyPlaying = false;
    for (const playing of this.sources.values()) anyPlaying ||= playing.size > 0;
    if (!anyPlaying) this.nextTime = 0;
  }

  /** Releases the audio device. */
  close() {
    for (const session of [...this.sources.keys()]) this.stop(session);
    this.context?.close();
    this.context = null;
  }
}
