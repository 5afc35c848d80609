// The panel's microphone card: mode switch (off / push-to-talk / hands-free), a hold-to-talk
// button (mouse, touch, or Space on the focused button), the live level from MIC_LEVEL frames,
// the partial transcript (ASR_PARTIAL), and why the last voice input was dropped
// (VOICE_DROPPED). The audio itself never passes through the browser: the app captures it.

/** What a drop reason means, for people. */
const REASONS = {
  echo: 'echo — that was the co-host’s own voice',
  too_short: 'too short',
  false_alarm: 'false alarm — no words, the co-host went on',
  empty: 'nothing heard',
  asr_failed: 'speech recognition failed',
  asr_off: 'no speech recognition (ASR provider off)',
  refused: 'refused by the app',
};

/** Frame types this card draws (the transcript ignores them). */
export const MIC_FRAMES = new Set(['MIC_LEVEL', 'ASR_PARTIAL', 'VOICE_DROPPED']);

/** Maps a dBFS level to the meter's 0–1 (−60 dBFS and below is empty). */
export function levelFraction(dbfs) {
  if (!Number.isFinite(dbfs)) return 0;
  return Math.min(1, Math.max(0, (dbfs + 60) / 60));
}

export class MicPanel {
  /**
   * @param {object} options
   * @param {import('./api.js').Api} options.api
   * @param {() => string} options.session the panel's current session
   * @param {(event: object) => void} options.observe test hook
   */
  constructor({ api, session, observe }) {
    const $ = (id) => document.getElementById(id);
    this.api = api;
    this.session = session;
    this.observe = observe;
    this.mode = $('mic-mode');
    this.button = $('mic-ptt');
    this.state = $('mic-state');
    this.level = $('mic-level');
    this.levelBar = $('mic-level-bar');
    this.partial = $('mic-partial');
    this.dropped = $('mic-dropped');
    this.held = false;
    this.mode.addEventListener('change', () => this.setMode(this.mode.value));
    const press = (event) => {
      event.preventDefault();
      this.press(true);
    };
    const release = () => this.press(false);
    this.button.addEventListener('pointerdown', press);
    this.button.addEventListener('pointerup', release);
    this.button.addEventListener('pointerleave', release);
    this.button.addEventListener('pointercancel', release);
    this.button.addEventListener('keydown', (event) => {
      if (event.key === ' ' && !event.repeat) press(event);
    });
    this.button.addEventListener('keyup', (event) => {
      if (event.key === ' ') release();
    });
    this.apply(null);
  }

  /**
   * The desktop app's push-to-talk hotkey (`/desktop` → `status.pttHotkey`): the button says
   * which keys also hold it, or why they do not.
   */
  showHotkey(hotkey) {
    const base = 'Hold to talk (mouse, touch, or Space)';
    const works = hotkey && ['registered', 'limited'].includes(hotkey.state);
    this.button.title = works ? `${base}, or hold ${hotkey.accelerator} anywhere` : [base, hotkey?.message].filter(Boolean).join('. ');
    this.button.dataset.hotkey = works ? hotkey.accelerator : '';
  }

  /** The mic's state from `/health` (`mic`) or a `/voice` answer. */
  apply(status) {
    this.status = status;
    const mode = status?.mode ?? 'off';
    if (document.activeElement !== this.mode) this.mode.value = mode;
    this.button.disabled = mode !== 'ptt';
    const state = status?.state ?? 'off';
    const text = {
      off: 'Microphone off',
      listening: mode === 'vad' ? `Listening hands-free${status?.device ? ` · ${status.device}` : ''}` : `Ready · ${status?.device ?? ''}`,
      no_device: 'No microphone found',
      lost: 'Microphone lost',
      asr_off: 'Mic on, but no speech recognition',
    }[state] ?? state;
    this.state.textContent = status?.warning ? `${text} — ${status.warning}` : text;
    this.state.dataset.state = state;
    if (state === 'off') this.showLevel(-100, false);
  }

  async setMode(mode) {
    try {
      const status = await this.api.json('POST', '/voice/mode', { mode, sessionId: this.session() });
      this.apply(status);
      this.observe({ kind: 'mic-mode', mode, state: status.state });
    } catch (error) {
      this.state.textContent = `Cannot switch the microphone: ${error.message}`;
      this.observe({ kind: 'mic-error', code: error.code, message: error.message });
    }
  }

  /** The panel switched sessions: voice turns go there from now on. */
  sessionChanged() {
    const mode = this.status?.mode;
    if (mode && mode !== 'off') this.setMode(mode);
  }

  async press(pressed) {
    if (this.held === pressed || this.button.disabled) return;
    this.held = pressed;
    this.button.classList.toggle('held', pressed);
    this.button.setAttribute('aria-pressed', String(pressed));
    if (pressed) this.partial.textContent = '';
    try {
      await this.api.json('POST', '/voice/ptt', { pressed, sessionId: this.session() });
      this.observe({ kind: 'ptt', pressed });
    } catch (error) {
      this.state.textContent = `Push-to-talk failed: ${error.message}`;
      this.observe({ kind: 'mic-error', code: error.code, message: error.message });
    }
  }

  showLevel(dbfs, speaking) {
    const fraction = levelFraction(dbfs);
    this.levelBar.style.width = `${Math.round(fraction * 100)}%`;
    this.level.setAttribute('aria-valuenow', String(Math.round(dbfs)));
    this.level.classList.toggle('speaking', Boolean(speaking));
  }

  /** A live frame of the mic's kinds; `true` if it was one. */
  onFrame(frame) {
    if (frame.type === 'USER_INPUT') {
      this.partial.textContent = '';
      return false;
    }
    if (!MIC_FRAMES.has(frame.type)) return false;
    if (frame.type === 'MIC_LEVEL') {
      this.showLevel(frame.rmsDbfs, frame.speaking);
    } else if (frame.type === 'ASR_PARTIAL') {
      this.partial.textContent = frame.text;
      this.observe({ kind: 'mic-partial', text: frame.text });
    } else if (frame.type === 'VOICE_DROPPED') {
      const reason = REASONS[frame.reason] ?? frame.reason;
      this.dropped.textContent = frame.text ? `Dropped (${reason}): “${frame.text}”` : `Dropped: ${reason}`;
      this.dropped.dataset.reason = frame.reason;
      this.partial.textContent = '';
      this.observe({ kind: 'mic-dropped', reason: frame.reason });
    }
    return true;
  }
}
