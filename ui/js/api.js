// HTTP calls to the app with the token: JSON requests, errors as `{code, message}`, and
// `POST /chat/stream` read as Server-Sent Events (CONTRACTS §1) through fetch, because
// EventSource can neither POST nor set the Authorization header.

/** An error answer of the API, readable as `message`, with the wire `code` and field errors. */
export class ApiError extends Error {
  constructor(status, code, message, fields = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

export class Api {
  /** @param {string} token */
  constructor(token) {
    this.token = token;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  /** JSON request; resolves to the parsed body, rejects with an ApiError. */
  async json(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: this.headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (error) {
      throw new ApiError(0, 'unreachable', `Kotodama is not reachable (${error.message})`);
    }
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  /** `GET /health` needs no token; still sent, harmlessly. */
  health() {
    return this.json('GET', '/health');
  }

  /** `GET /sessions`: `{sessions: [{sessionId, lastActiveMs, createdMs, turns}]}`, most recent first. */
  sessions(limit = 50) {
    return this.json('GET', `/sessions?limit=${encodeURIComponent(limit)}`);
  }

  /**
   * `GET /sessions/{id}/history`: `{sessionId, turns: [{turn, user, assistant, status, …}], more}`,
   * oldest first; `before` pages back (only turns numbered below it).
   */
  history(sessionId, { before, limit = 50 } = {}) {
    const params = new URLSearchParams({ limit: String(limit) });
    if (before !== undefined) params.set('before', String(before));
    return this.json('GET', `/sessions/${encodeURIComponent(sessionId)}/history?${params}`);
  }

  /** Prometheus text of `/metrics`. */
  async metricsText() {
    const response = await fetch('/metrics', { headers: this.headers(), cache: 'no-store' });
    if (!response.ok) throw await errorOf(response);
    return response.text();
  }

  /**
   * Sends one input and reads its SSE answer.
   * @param {object} request the `/chat/stream` body
   * @param {(name: string, data: object) => void} onEvent called per event, in order
   * @param {AbortSignal} [signal] aborting it cancels the turn (the server treats a closed
   *   stream like a STOP)
   * @returns {Promise<void>} resolves after `done`, rejects with an ApiError before streaming
   */
  async chat(request, onEvent, signal) {
    let response;
    try {
      response = await fetch('/chat/stream', {
        method: 'POST',
        headers: this.headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
        body: JSON.stringify(request),
        signal,
      });
    } catch (error) {
      if (error.name === 'AbortError') return;
      throw new ApiError(0, 'unreachable', `Kotodama is not reachable (${error.message})`);
    }
    if (!response.ok) throw await errorOf(response);
    await readSse(response.body, onEvent);
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's page?): fall back to the status line.
  }
  const code = body?.error?.code ?? `http_${response.status}`;
  const message = body?.error?.message ?? `${response.status} ${response.statusText}`;
  return new ApiError(response.status, code, message, body?.fields ?? null);
}

/** Parses `event:`/`data:` blocks from a byte stream; comments (keep-alives) are skipped. */
export async function readSse(stream, onEvent) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length === 0) continue;
      let parsed;
      try {
        parsed = JSON.parse(data.join('\n'));
      } catch {
        parsed = { raw: data.join('\n') };
      }
      onEvent(name, parsed);
    }
  }
}
