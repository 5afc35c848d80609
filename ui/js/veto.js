// The veto window (`VETO_WINDOW_MS`): a `VETO_PENDING` frame shows the reply's first line in the
// STOP dock with a countdown and a Veto button; the line goes away when its audio starts, the
// turn ends or is stopped. Veto is `POST /control/stop` with reason `vetoed`: the reply is
// dropped before anyone hears it and stored as vetoed.

export class VetoBar {
  /**
   * @param {import('./api.js').Api} api
   * @param {HTMLElement} host where the bar goes (the STOP dock's extra row)
   */
  constructor(api, host) {
    this.api = api;
    this.bar = document.createElement('div');
    this.bar.id = 'veto';
    this.bar.className = 'veto';
    this.bar.hidden = true;
    this.bar.setAttribute('role', 'alert');
    this.line = document.createElement('p');
    this.line.className = 'veto-line';
    this.count = document.createElement('span');
    this.count.className = 'veto-count';
    this.button = document.createElement('button');
    this.button.type = 'button';
    this.button.id = 'veto-button';
    this.button.className = 'veto-button';
    this.button.textContent = 'Veto';
    this.button.title = 'Drop this reply before it is heard';
    this.bar.append(this.line, this.count, this.button);
    host.append(this.bar);
    this.pending = null;
    this.timer = null;
    this.button.addEventListener('click', () => this.veto());
  }

  /** Every `/ws/live` frame; draws or clears the pending line. */
  apply(frame) {
    if (frame.type === 'VETO_PENDING') {
      this.show(frame);
      return;
    }
    const held = this.pending;
    if (!held || frame.sessionId !== held.sessionId) return;
    const itsAudio = frame.type === 'SPEECH_CHUNK' && frame.turn === held.turn;
    const itsEnd = frame.type === 'CONTROL' && ['STOP', 'STOP_ACK', 'END'].includes(frame.action);
    if (itsAudio || itsEnd) this.clear();
  }

  show(frame) {
    this.pending = { sessionId: frame.sessionId, turn: frame.turn, until: performance.now() + frame.windowMs };
    this.line.textContent = frame.text;
    this.button.disabled = false;
    this.bar.hidden = false;
    clearInterval(this.timer);
    const tick = () => {
      const left = Math.max(0, this.pending ? this.pending.until - performance.now() : 0);
      this.count.textContent = `heard in ${(left / 1000).toFixed(1)} s`;
    };
    tick();
    this.timer = setInterval(tick, 100);
  }

  clear() {
    this.pending = null;
    clearInterval(this.timer);
    this.bar.hidden = true;
  }

  async veto() {
    const held = this.pending;
    if (!held) return;
    this.button.disabled = true;
    try {
      await this.api.json('POST', '/control/stop', { sessionId: held.sessionId, reason: 'vetoed' });
      this.count.textContent = 'vetoed: not said';
    } catch (error) {
      this.count.textContent = `veto failed: ${error.message}`;
      this.button.disabled = false;
    }
  }
}
