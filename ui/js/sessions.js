// Session picker: the sessions the app stored (`GET /sessions`, most recently active first,
// with their turn counts), the ones this browser used (localStorage) and any seen on the live
// socket. Ids follow CONTRACTS §1.

const SESSION_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const KNOWN_KEY = 'kotodama.sessions';
const CURRENT_KEY = 'kotodama.session';
const DEFAULT_SESSION = 'live-001';
const MAX_KNOWN = 50;

/** Why `id` is not a valid sessionId, or '' if it is. */
export function sessionIdProblem(id) {
  if (!id) return 'enter a session id';
  if (id.length > 64) return 'at most 64 characters';
  if (!SESSION_ID.test(id)) return 'only letters, digits and . _ : - are allowed';
  return '';
}

/** A fresh id like `live-20261125-1830`. */
export function suggestSessionId(now = new Date()) {
  const pad = (n) => String(n).padStart(2, '0');
  return `live-${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}`;
}

function load(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key) ?? 'null') ?? fallback;
  } catch {
    return fallback;
  }
}

function save(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage disabled: the picker still works for this page's life.
  }
}

export class Sessions {
  /**
   * @param {HTMLSelectElement} select
   * @param {(id: string) => void} onChange called when the user picks another session
   */
  constructor(select, onChange) {
    this.select = select;
    this.onChange = onChange;
    this.known = load(KNOWN_KEY, []).filter((id) => !sessionIdProblem(id));
    /** sessionId → `{turns, lastActiveMs}` from `GET /sessions` (labels only). */
    this.stored = new Map();
    const current = load(CURRENT_KEY, DEFAULT_SESSION);
    this.current = sessionIdProblem(current) ? DEFAULT_SESSION : current;
    this.add(this.current);
    select.addEventListener('change', () => this.choose(select.value));
  }

  /** Adds ids to the list (newest first), keeping the current selection. */
  add(...ids) {
    let changed = false;
    for (const id of ids) {
      if (sessionIdProblem(id) || this.known.includes(id)) continue;
      this.known.unshift(id);
      changed = true;
    }
    if (!changed && this.select.options.length > 0) return;
    this.known = this.known.slice(0, MAX_KNOWN);
    save(KNOWN_KEY, this.known);
    this.render();
  }

  /**
   * The app's stored sessions (`GET /sessions` entries, most recent first) go to the top in
   * that order; ids only this browser knows (new, unused ones) stay below them.
   */
  addRecent(entries) {
    const listed = entries.filter((entry) => !sessionIdProblem(entry.sessionId));
    for (const entry of listed) {
      this.stored.set(entry.sessionId, { turns: entry.turns, lastActiveMs: entry.lastActiveMs });
    }
    const ids = listed.map((entry) => entry.sessionId);
    this.known = [...ids, ...this.known.filter((id) => !ids.includes(id))].slice(0, MAX_KNOWN);
    save(KNOWN_KEY, this.known);
    this.render();
  }

  choose(id) {
    if (sessionIdProblem(id)) return;
    this.add(id);
    this.current = id;
    save(CURRENT_KEY, id);
    this.render();
    this.onChange(id);
  }

  render() {
    // The current session is always offered, even when the list was cut at MAX_KNOWN.
    const ids = this.known.includes(this.current) ? this.known : [this.current, ...this.known];
    const options = ids.map((id) => new Option(this.label(id), id, false, id === this.current));
    this.select.replaceChildren(...options);
    this.select.value = this.current;
  }

  label(id) {
    const stored = this.stored.get(id);
    if (!stored) return id;
    const when = Number.isFinite(stored.lastActiveMs) ? ` · ${new Date(stored.lastActiveMs).toLocaleString()}` : '';
    return `${id} (${stored.turns} ${stored.turns === 1 ? 'turn' : 'turns'}${when})`;
  }
}
