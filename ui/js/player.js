// In-page audio: s16le PCM chunks scheduled back to back on one AudioContext clock (gapless),
// dropped at once on STOP / STOP_ACK, held where they are on PAUSE (a voice barge-in: the relay
// holds what it has not sent; this holds what it had scheduled) and played on from there on
// RESUME. Used by the overlay (`&audio=1`) and by the panel's opt-in "play audio here" (the
// desktop app plays audio in Rust instead).

/** Lead added when playback (re)starts after silence, absorbing network jitter. */
const START_LEAD_S = 0.05;

export class PcmPlayer {
  constructor() {
    this.context = null;
    this.nextTime = 0;
    /**
     * Per session: sources scheduled and not yet ended (`{source, startAt, buffer, turn}`), to
     * stop them on a STOP and to keep what they had not played on a PAUSE.
     */
    this.sources = new Map();
    /** Per session, while paused: the audio held, in order (`{turn, channel, sampleRate, onStart}`). */
    this.held = new Map();
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
   * @param {(startAt: number) => void} [onStart] told the context time the chunk starts at once
   *   it is on the clock: now, or at RESUME for a chunk held by a pause
   * @returns {number|null} the context time it starts at, or null if not played (yet)
   */
  play(session, turn, samples, sampleRate, onStart) {
    if (!samples || samples.length === 0 || this.fenced(session, turn)) return null;
    const channel = new Float32Array(samples.length);
    for (let i = 0; i < samples.length; i += 1) channel[i] = samples[i] / 32768;
    this.lastTurn.set(session, turn);
    const held = this.held.get(session);
    if (held) {
      held.push({ turn, channel, sampleRate, onStart });
      return null;
    }
    return this.schedule(session, turn, channel, sampleRate, onStart);
  }

  /** Puts one chunk (float samples) on the clock right after the audio already scheduled. */
  schedule(session, turn, channel, sampleRate, onStart) {
    const context = this.ensureContext();
    if (!context) return null;
    const buffer = context.createBuffer(1, channel.length, sampleRate);
    buffer.copyToChannel(channel, 0);
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    const startAt = Math.max(this.nextTime, context.currentTime + START_LEAD_S);
    source.start(startAt);
    this.nextTime = startAt + buffer.duration;
    if (!this.sources.has(session)) this.sources.set(session, new Set());
    const playing = this.sources.get(session);
    const entry = { source, startAt, buffer, turn, onStart };
    playing.add(entry);
    source.onended = () => playing.delete(entry);
    onStart?.(startAt);
    return startAt;
  }

  /** Seconds of `session`'s audio a PAUSE holds (0 when not paused). */
  heldSeconds(session) {
    let seconds = 0;
    for (const { channel, sampleRate } of this.held.get(session) ?? []) seconds += channel.length / sampleRate;
    return seconds;
  }

  /** Whether `session` is held by a PAUSE. */
  paused(session) {
    return this.held.has(session);
  }

  /**
   * Holds `session` where it is (CONTROL PAUSE): what it had scheduled and not yet played is
   * kept, in order, with every chunk that arrives until `resume`.
   */
  pause(session) {
    if (this.held.has(session)) return;
    const held = [];
    const now = this.context?.currentTime ?? 0;
    const entries = [...(this.sources.get(session) ?? [])].sort((a, b) => a.startAt - b.startAt);
    for (const { source, startAt, buffer, turn, onStart } of entries) {
      const playedSamples = Math.max(0, Math.floor((now - startAt) * buffer.sampleRate));
      if (playedSamples < buffer.length) {
        held.push({
          turn,
          channel: buffer.getChannelData(0).slice(playedSamples),
          sampleRate: buffer.sampleRate,
          // A chunk not yet begun is told its new start at RESUME (its subtitle waits for it).
          onStart: playedSamples === 0 ? onStart : undefined,
        });
      }
      stopSource(source);
    }
    this.sources.delete(session);
    this.held.set(session, held);
    this.retime();
  }

  /** Plays on from where `pause` held `session` (CONTROL RESUME). */
  resume(session) {
    const held = this.held.get(session);
    if (!held) return;
    this.held.delete(session);
    for (const { turn, channel, sampleRate, onStart } of held) {
      if (!this.fenced(session, turn)) this.schedule(session, turn, channel, sampleRate, onStart);
    }
  }

  /** After sources were taken off the clock: the next chunk starts after what is left. */
  retime() {
    let end = 0;
    for (const playing of this.sources.values()) {
      for (const entry of playing) end = Math.max(end, entry.startAt + entry.buffer.duration);
    }
    this.nextTime = end;
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
    for (const { source } of this.sources.get(session) ?? []) stopSource(source);
    this.sources.delete(session);
    // A STOP during a pause drops what the pause held: none of it may play after the STOP.
    this.held.delete(session);
    this.retime();
  }

  /** Releases the audio device. */
  close() {
    for (const session of new Set([...this.sources.keys(), ...this.held.keys()])) this.stop(session);
    this.context?.close();
    this.context = null;
  }
}

function stopSource(source) {
  try {
    source.stop();
  } catch {
    // Already ended.
  }
}
