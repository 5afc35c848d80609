// The status bar: providers and relay clients from `GET /health`, outbox health from
// `/metrics`, local audio and the stop hotkey from `/desktop` (the desktop app), the panel's
// own connection, and the last turn's latency from `done.stats`.

const HEALTH_EVERY_MS = 3000;
const METRICS_EVERY_MS = 10_000;
/** Undelivered events older than this are worth a warning. */
const OUTBOX_STALE_S = 60;

/**
 * A failover chain (`/health` `llm.chain` / `tts.chain`) in a chip: the provider in use, a
 * note when it is not the first or a breaker is open, every provider's state in the title.
 * `null` for a single provider.
 */
export function chainSummary(chain) {
  if (!Array.isArray(chain) || chain.length === 0) return null;
  const current = chain.find((link) => link.current) ?? chain[0];
  const open = chain.filter((link) => link.state !== 'closed');
  const fallback = current !== chain[0];
  const note = fallback ? ' (failover)' : open.length > 0 ? ` (${open.length} skipped)` : '';
  const title = chain
    .map((link, n) => `${n + 1}. ${link.label}: ${link.state.replace('_', '-')}${link.lastError ? ` — ${link.lastError}` : ''}`)
    .join('\n');
  return { current: current.label, note, tone: fallback || open.length > 0 ? 'warn' : 'ok', title };
}

function chip(id, text, tone = '', title) {
  const element = document.getElementById(id);
  if (!element) return;
  element.textContent = text;
  // A chip drawn while the server is gone stays grey: its value is a last-known one.
  const stale = document.body.classList.contains('server-down') && id !== 'status-live';
  element.className = `chip ${stale ? 'stale' : tone}`.trim();
  if (title !== undefined) element.title = title;
}

/** `HH:MM:SS` in local time. */
export function clockTime(date) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

/**
 * Greys every status chip (also ones other modules add to `#status`) while the server is
 * unreachable, and says since when; `since = null` lifts it.
 */
export function markDisconnected(since) {
  const down = since !== null;
  document.body.classList.toggle('server-down', down);
  for (const element of document.querySelectorAll('#status .chip')) {
    if (element.id === 'status-live') continue;
    if (down) {
      element.dataset.tone = element.dataset.tone ?? element.className;
      element.className = 'chip stale';
      element.dataset.staleSince = clockTime(since);
    } else if (element.dataset.tone !== undefined) {
      element.className = element.dataset.tone;
      delete element.dataset.tone;
      delete element.dataset.staleSince;
    }
  }
}

/** One sample's value from Prometheus text (first series of `name`), or null. */
export function metricValue(text, name) {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) {
      const value = Number.parseFloat(line.slice(line.lastIndexOf(' ') + 1));
      if (Number.isFinite(value)) return value;
    }
  }
  return null;
}

function ms(value) {
  return typeof value === 'number' ? `${Math.round(value)} ms` : '–';
}

export class StatusBar {
  /**
   * @param {import('./api.js').Api} api
   * @param {(health: object) => void} onHealth every successful health answer
   */
  constructor(api, onHealth) {
    this.api = api;
    this.onHealth = onHealth;
    this.liveOpen = false;
    this.health = null;
    /** When the server stopped answering (null while it answers). */
    this.downSince = null;
    this.events = { mode: null, reason: '' };
  }

  start() {
    this.pollHealth();
    this.pollMetrics();
    this.pollDesktop();
    setInterval(() => this.pollHealth(), HEALTH_EVERY_MS);
    setInterval(() => this.pollDesktop(), HEALTH_EVERY_MS);
    setInterval(() => this.pollMetrics(), METRICS_EVERY_MS);
  }

  async pollHealth() {
    let health;
    try {
      health = await this.api.health();
    } catch (error) {
      this.serverDown(error.status ? `health check failed: ${error.message}` : 'Kotodama is not running or not reachable');
      return;
    }
    this.serverUp();
    this.health = health;
    const llm = health.llm ?? {};
    const llmChain = chainSummary(llm.chain);
    if (llmChain) {
      chip('status-llm', `LLM: ${llmChain.current}${llmChain.note}`, llmChain.tone, llmChain.title);
    } else if (llm.provider === 'mock') {
      chip('status-llm', 'LLM: demo (no AI set up)', 'demo', 'The built-in demo answers with sample lines. Open Setup to connect a real AI.');
    } else {
      chip('status-llm', `LLM: ${llm.provider ?? '?'}${llm.model && llm.model !== llm.provider ? ` · ${llm.model}` : ''}`, 'ok', 'LLM provider and model');
    }
    const ttsChain = chainSummary(health.tts?.chain);
    if (ttsChain) {
      chip('status-tts', `TTS: ${ttsChain.current}${ttsChain.note}`, ttsChain.tone, ttsChain.title);
    } else if (health.tts?.warning) {
      chip('status-tts', 'TTS: no voice (test tone)', 'warn', health.tts.warning);
    } else if (health.tts) {
      chip('status-tts', `TTS: ${health.tts.provider} · ${Math.round(health.tts.sampleRate / 100) / 10} kHz`, 'ok');
    } else {
      chip('status-tts', 'TTS: off (text only)', 'warn', 'SYNC_TTS_STREAMING is off: replies are not spoken');
    }
    const vtsChip = document.getElementById('status-vts');
    if (vtsChip) {
      vtsChip.hidden = !health.vts;
      if (health.vts) {
        const words = { connected: 'connected', waitingForUser: 'allow Kotodama in VTube Studio', refused: 'refused', disconnected: 'not connected', connecting: 'connecting', authenticating: 'connecting', failed: 'failed' };
        chip('status-vts', `VTS: ${words[health.vts.state] ?? health.vts.state}`, health.vts.state === 'connected' ? 'ok' : 'warn', health.vts.message);
      }
    }
    this.events = health.events ?? this.events;
    this.renderEvents();
    const overlays = health.relay?.overlaysConnected;
    if (typeof overlays === 'number') {
      // Only pages that say they are an overlay count (not this panel, the app's own window
      // or its audio player).
      chip('status-overlays', `overlays: ${overlays}`, overlays > 0 ? 'ok' : '', `OBS overlays connected now (${health.relay.clientsConnected} live clients in all)`);
    }
    this.onHealth(health);
  }

  async pollDesktop() {
    let desktop;
    try {
      desktop = await this.api.json('GET', '/desktop');
    } catch (error) {
      // Unreachable: the status bar already says so; keep the last value (greyed).
      if (error.status === 0) return;
      chip('status-audio', 'audio: ?', 'bad', `cannot read the desktop status: ${error.message}`);
      return;
    }
    this.onDesktop?.(desktop);
    if (!desktop.available) {
      chip('status-audio', 'audio: overlay only', '', 'kotodama serve plays nothing itself: add the overlay with &audio=1 to OBS, or run the desktop app');
      return;
    }
    const playback = desktop.status?.playback;
    const hotkey = desktop.status?.hotkey;
    const hotkeyText = hotkey ? ` · stop key: ${hotkey.accelerator ?? 'off'}` : '';
    const hotkeyWorks = !hotkey || ['registered', 'limited', 'off'].includes(hotkey.state);
    const notes = [hotkey?.message].filter(Boolean);
    if (!playback) {
      chip('status-audio', `audio: off here${hotkeyText}`, hotkeyWorks ? '' : 'warn', ['Local playback is off (playback = off).', ...notes].join(' '));
      return;
    }
    const { status, volume } = playback;
    const level = `${Math.round(volume * 100)}%`;
    if (status.nullSink) {
      // Never silent about being silent: the streamer must see that nothing is heard here.
      chip('status-audio', `audio: SILENT (no device)${hotkeyText}`, 'warn', [status.warning ?? 'No sound device: audio goes to a null sink.', ...notes].join(' '));
    } else {
      chip('status-audio', `audio: ${status.device} · ${level}${hotkeyText}`, status.warning || !hotkeyWorks ? 'warn' : 'ok', [status.warning, ...notes].filter(Boolean).join(' '));
    }
  }

  async pollMetrics() {
    try {
      const text = await this.api.metricsText();
      this.outbox = {
        backlog: metricValue(text, 'koto_outbox_backlog'),
        oldest: metricValue(text, 'koto_outbox_oldest_undelivered_age_seconds'),
        deadLetters: metricValue(text, 'koto_events_dead_letters'),
      };
    } catch {
      this.outbox = null;
    }
    this.renderEvents();
  }

  renderEvents() {
    const mode = this.events.mode ?? '?';
    const outbox = this.outbox;
    let text = `events: ${mode}`;
    let tone = 'ok';
    let title = this.events.reason ?? '';
    if (outbox && outbox.backlog !== null) {
      text += ` · outbox ${outbox.backlog}`;
      if (outbox.oldest !== null && outbox.oldest > OUTBOX_STALE_S) {
        tone = 'warn';
        text += ` (oldest ${Math.round(outbox.oldest)} s)`;
      }
      if (outbox.deadLetters) {
        tone = 'warn';
        title += ` · ${outbox.deadLetters} dead letters`;
      }
    }
    chip('status-events', text, tone, title);
  }

  /** The server stopped answering: every chip greys out, the first one says since when. */
  serverDown(reason) {
    if (this.downSince === null) this.downSince = new Date();
    markDisconnected(this.downSince);
    const since = clockTime(this.downSince);
    chip('status-live', `disconnected since ${since}`, 'bad', `${reason}. The values beside are the last known ones.`);
    this.onDown?.(this.downSince);
  }

  serverUp() {
    if (this.downSince === null) return;
    this.downSince = null;
    markDisconnected(null);
    if (this.liveOpen) chip('status-live', 'live: connected', 'ok');
    this.pollDesktop();
    this.pollMetrics();
  }

  /** The panel's own /ws/live state. */
  live(state, detail = {}) {
    const opened = state === 'open' && !this.liveOpen;
    this.liveOpen = state === 'open';
    // Count again once the server counts this panel too (the overlay count subtracts it).
    if (opened) this.pollHealth();
    const tones = { open: 'ok', connecting: '', reconnecting: 'warn', unreachable: 'bad' };
    const texts = {
      open: 'live: connected',
      connecting: 'live: connecting…',
      reconnecting: `live: reconnecting in ${Math.ceil((detail.retryInMs ?? 0) / 1000)} s`,
      unreachable: 'live: server unreachable',
      token_missing: 'live: no token',
      token_rejected: 'live: token rejected',
      refused: 'live: refused',
    };
    if ((state === 'reconnecting' || state === 'unreachable') && this.liveWasOpen) {
      // The socket dropped: the server is gone (or going). Say so at once, not at the next poll.
      this.serverDown('the live connection dropped');
      return;
    }
    if (state === 'open') this.liveWasOpen = true;
    if (this.downSince !== null && state !== 'open') return;
    chip('status-live', texts[state] ?? `live: ${state}`, tones[state] ?? 'bad');
  }

  /** `done.stats` of the last turn sent from this panel. */
  turn(stats) {
    const text = `last turn: TTFT ${ms(stats.ttft_ms)} · first audio ${ms(stats.first_audio_ms)}${stats.interrupted ? ' · interrupted' : ''}`;
    chip('status-turn', text, 'ok', `${stats.tokens ?? 0} tokens`);
  }
}
