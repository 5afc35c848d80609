// The `/ws/live` client (CONTRACTS §3): JSON frames, optional binary audio frames, STOP from
// the client, and reconnection by itself with capped exponential backoff and jitter.
//
// A refused upgrade looks like any dropped connection to a browser (close code 1006, no
// status), so after a connection that never opened it asks the server over plain HTTP what
// is wrong: the same URL without the upgrade headers answers 401 for a wrong token.

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10_000;

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped, with "equal
 * jitter" (half fixed, half random) so overlays that lost the same server do not return in
 * lockstep.
 */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * Decodes a binary SPEECH_CHUNK (koto-relay `framing.rs`): u32 LE header length, the JSON
 * header (the §2 frame without `pcm`, with `sampleRate`), then raw s16le mono PCM.
 */
export function decodeBinaryChunk(buffer) {
  const headerLength = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
  header.samples = new Int16Array(buffer.slice(4 + headerLength));
  return header;
}

/** Base64 s16le (the JSON form's `pcm`) → samples. */
export function decodeBase64Pcm(base64) {
  if (!base64) return new Int16Array(0);
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Int16Array(bytes.buffer, 0, bytes.length >> 1);
}

/**
 * States reported to `onState`: 'connecting', 'open', 'reconnecting' (with `retryInMs`),
 * 'token_missing', 'token_rejected', 'refused' (another 4xx, with `message`), 'unreachable'.
 */
export class LiveSocket {
  /**
   * @param {object} options
   * @param {string} options.token
   * @param {string} [options.session] only this session's frames
   * @param {boolean} options.audio PCM in SPEECH_CHUNKs (else they come without it)
   * @param {boolean} [options.binary] audio as binary frames (smaller, no base64)
   * @param {string} [options.role] who this client is (`overlay`, `panel`): the server counts
   *   overlays by it
   * @param {(frame: object) => void} options.onFrame
   * @param {(state: string, detail: object) => void} options.onState
   */
  constructor({ token, session = '', audio, binary = false, role = '', onFrame, onState }) {
    this.options = { token, session, audio, binary, role };
    this.onFrame = onFrame;
    this.onState = onState;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.closed = false;
    this.connections = 0;
  }

  url() {
    const params = new URLSearchParams({
      token: this.options.token,
      audio: this.options.audio ? '1' : '0',
      binary: this.options.binary ? '1' : '0',
    });
    if (this.options.session) params.set('session', this.options.session);
    if (this.options.role) params.set('role', this.options.role);
    return `/ws/live?${params}`;
  }

  start() {
    if (!this.options.token) {
      this.onState('token_missing', {});
      return;
    }
    this.connect();
  }

  connect() {
    if (this.closed) return;
    this.onState('connecting', { attempt: this.attempt });
    const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${window.location.host}${this.url()}`);
    socket.binaryType = 'arraybuffer';
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.connections += 1;
      this.onState('open', { connections: this.connections });
    };
    socket.onmessage = (event) => {
      let frame;
      try {
        frame =
          typeof event.data === 'string' ? JSON.parse(event.data) : decodeBinaryChunk(event.data);
      } catch (error) {
        console.warn('kotodama: unreadable frame', error);
        return;
      }
      this.onFrame(frame);
    };
    socket.onclose = (event) => {
      if (this.socket === socket) this.socket = null;
      if (this.closed) return;
      if (opened) {
        this.scheduleReconnect({ code: event.code, reason: event.reason });
      } else {
        this.diagnose();
      }
    };
    this.socket = socket;
  }

  /** After a connection that never opened: find out whether retrying can help. */
  async diagnose() {
    let status = 0;
    let body = null;
    try {
      const response = await fetch(this.url(), { cache: 'no-store' });
      status = response.status;
      body = await response.json().catch(() => null);
    } catch {
      this.scheduleReconnect({ unreachable: true });
      return;
    }
    if (this.closed) return;
    if (status === 401) {
      // The server is up and says no: keep trying slowly (a restarted app may take this
      // token again), but say clearly what to do.
      this.onState('token_rejected', { message: body?.error?.message ?? '' });
      this.scheduleReconnect({ quiet: true, attempt: 16 });
    } else if (status >= 400 && status < 500 && status !== 426 && status !== 400) {
      this.onState('refused', { status, message: body?.error?.message ?? `HTTP ${status}` });
      this.scheduleReconnect({ quiet: true, attempt: 16 });
    } else if (body?.error?.code === 'invalid_session_id') {
      this.onState('refused', { status, message: body.error.message });
      this.scheduleReconnect({ quiet: true, attempt: 16 });
    } else {
      this.scheduleReconnect({});
    }
  }

  scheduleReconnect({ unreachable = false, quiet = false, attempt, code, reason }) {
    if (this.closed) return;
    const delay = backoffDelay(attempt ?? this.attempt);
    this.attempt += 1;
    if (!quiet) {
      this.onState(unreachable ? 'unreachable' : 'reconnecting', { retryInMs: delay, code, reason });
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  get isOpen() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** Sends a JSON frame; false if the socket is not open. */
  send(frame) {
    if (!this.isOpen) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Reconnects now with new options (e.g. audio on/off). */
  reconfigure(options) {
    Object.assign(this.options, options);
    clearTimeout(this.timer);
    const old = this.socket;
    this.socket = null;
    if (old) {
      old.onclose = null;
      old.close(1000, 'reconfigured');
    }
    this.attempt = 0;
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.socket?.close(1000, 'closed');
  }
}
