// The streaming transcript, drawn from `/ws/live` frames: the user's input (USER_INPUT), the
// reply as it streams (TEXT_DELTA), the segments actually released as audio (SPEECH_CHUNK
// with `segment`), a reasoning model's thinking (REASONING_DELTA, dimmed), and the turn's end (END) or interruption (STOP → STOP_ACK). Above the live
// turns sit the stored ones (`GET /sessions/{id}/history`, merged by `addHistory`), paged back
// with a "load earlier" button. Turns are keyed by number, so a turn that is both stored and
// live is drawn once.
//
// An interrupted reply is cut where the audio stopped: what the app stores is what was heard
// (the segments released before the STOP), not what the LLM had written. The rest stays
// visible only as "not spoken", struck through.

/** Live turns kept per session; older ones are dropped (and can be loaded again). */
const MAX_TURNS_PER_SESSION = 200;

/** A stored turn's status (the history API) → the phase drawn. */
const STORED_PHASE = {
  completed: 'completed',
  interrupted: 'interrupted',
  failed: 'failed',
  abandoned: 'abandoned',
  open: 'streaming',
};

/** One turn's state. */
class Turn {
  constructor(turn) {
    this.turn = turn;
    this.user = null;
    this.text = '';
    /** A reasoning model's thinking (REASONING_DELTA, with SHOW_REASONING): drawn dimmed. */
    this.reasoning = '';
    /** Segment texts whose first chunk reached this client, i.e. that were heard. */
    this.heard = [];
    /**
     * 'streaming' | 'written' (eos) | 'completed' (END) | 'stopping' | 'interrupted' | 'failed'
     * | 'abandoned' (stored only: the app stopped during the turn)
     */
    this.phase = 'streaming';
    this.error = null;
    this.element = null;
    /** Drawn from the store: `text` is what was stored (for a cut reply, what was heard). */
    this.stored = false;
    /** Stored as still running when loaded: the reply's start streamed before we looked. */
    this.joinedLate = false;
    /**
     * An interrupted live turn: what the store kept as heard (cut at a word boundary), once
     * known. Until then the heard segments stand in for it.
     */
    this.heardText = null;
  }

  get finished() {
    return (
      this.phase === 'completed' || this.phase === 'interrupted' || this.phase === 'failed' || this.phase === 'abandoned'
    );
  }
}

/** Per session: what the history API said, for the "load earlier" row. */
class HistoryState {
  constructor() {
    /** Whether any page arrived (until then the empty-session text would be premature). */
    this.loaded = false;
    this.loading = false;
    /** Older turns exist below the oldest one drawn. */
    this.more = false;
    this.error = '';
    /** Whether the failed request was for older turns (what "retry" asks for again). */
    this.failedOlder = false;
  }
}

export class Transcript {
  /**
   * @param {HTMLOListElement} list
   * @param {{load?: (sessionId: string, options: {older: boolean}) => void}} [options]
   *   called by the "load earlier" and "retry" buttons; the answer comes back through
   *   `addHistory` (or `historyFailed`)
   */
  constructor(list, { load = () => {} } = {}) {
    this.list = list;
    this.load = load;
    /** sessionId → Map(turn → Turn) */
    this.sessions = new Map();
    /** sessionId → HistoryState */
    this.history = new Map();
    this.current = '';
    /** Whether replies are spoken (TTS on): decides what an interrupted turn "heard". */
    this.speech = true;
    /** Whether the app answers with its demo LLM: new live turns are marked "demo". */
    this.demo = false;
  }

  show(sessionId) {
    this.current = sessionId;
    this.list.replaceChildren();
    this.renderHistoryRow(sessionId);
    const turns = this.sessions.get(sessionId);
    if (!turns || turns.size === 0) {
      this.renderEmpty(sessionId);
      return;
    }
    for (const turn of [...turns.values()].sort((a, b) => a.turn - b.turn)) {
      turn.element = null;
      this.render(sessionId, turn);
    }
    this.scroll();
  }

  turnsOf(sessionId) {
    if (!this.sessions.has(sessionId)) this.sessions.set(sessionId, new Map());
    return this.sessions.get(sessionId);
  }

  historyOf(sessionId) {
    if (!this.history.has(sessionId)) this.history.set(sessionId, new HistoryState());
    return this.history.get(sessionId);
  }

  /** A live turn (created on its first frame); the oldest is dropped past the cap. */
  turnOf(sessionId, number) {
    const turns = this.turnsOf(sessionId);
    if (!turns.has(number)) {
      const fresh = new Turn(number);
      fresh.demo = this.demo;
      turns.set(number, fresh);
      if (turns.size > MAX_TURNS_PER_SESSION) {
        const oldest = Math.min(...turns.keys());
        turns.get(oldest).element?.remove();
        turns.delete(oldest);
        // It is still stored: offer it again.
        this.historyOf(sessionId).more = true;
        this.renderHistoryRow(sessionId);
      }
    }
    return turns.get(number);
  }

  /** The lowest turn number drawn for `sessionId` (the `before` of the next older page). */
  oldestTurn(sessionId) {
    const turns = this.sessions.get(sessionId);
    if (!turns || turns.size === 0) return undefined;
    return Math.min(...turns.keys());
  }

  /** A history request for `sessionId` started. */
  historyLoading(sessionId) {
    const state = this.historyOf(sessionId);
    state.loading = true;
    state.error = '';
    this.renderHistoryRow(sessionId);
  }

  /** A history request failed; the row offers a retry. */
  historyFailed(sessionId, message, { older = false } = {}) {
    const state = this.historyOf(sessionId);
    state.loading = false;
    state.error = message;
    state.failedOlder = older;
    this.renderHistoryRow(sessionId);
  }

  /**
   * Merges one page of `GET /sessions/{id}/history` (`{turns, more}`, oldest first).
   * A turn already here from live frames keeps its live state unless the stored one is final
   * and the live one is not (a missed END, or a reply whose start streamed before we looked).
   * @param {{older?: boolean}} options `older`: the page asked for turns before the oldest drawn
   */
  addHistory(sessionId, page, { older = false } = {}) {
    const turns = this.turnsOf(sessionId);
    const state = this.historyOf(sessionId);
    const stored = page.turns ?? [];
    const oldestBefore = this.oldestTurn(sessionId);
    // Turns added above the view must not push what the reader looks at away.
    const shown = sessionId === this.current;
    const fromBottom = shown && older ? this.list.scrollHeight - this.list.scrollTop : null;
    for (const entry of stored) {
      const phase = STORED_PHASE[entry.status] ?? 'completed';
      const existing = turns.get(entry.turn);
      if (existing && existing.phase === 'interrupted' && !existing.stored && phase === 'interrupted') {
        // The same cut live as after a reload: the store's heard text, the written rest
        // still shown as not spoken.
        existing.heardText = entry.assistant ?? '';
        existing.reason = entry.reason ?? null;
        if (existing.user === null) existing.user = entry.user;
        this.render(sessionId, existing);
        continue;
      }
      if (existing) {
        const storedFinal = phase !== 'streaming';
        const replace = storedFinal && (!existing.finished || existing.joinedLate);
        if (!replace) {
          if (existing.user === null) {
            existing.user = entry.user;
            this.render(sessionId, existing);
          }
          continue;
        }
      }
      const turn = existing ?? new Turn(entry.turn);
      turn.user = entry.user;
      turn.text = entry.assistant ?? '';
      turn.heard = [];
      turn.phase = phase;
      turn.stored = phase !== 'streaming';
      turn.joinedLate = phase === 'streaming';
      // Why it ended so (`user_interrupt`, `tts_failed`, `llm_timeout`, …), or null.
      turn.reason = entry.reason ?? null;
      turn.error = phase === 'failed' ? failedNote(turn.text) : null;
      turns.set(entry.turn, turn);
      this.render(sessionId, turn);
    }
    // `more` speaks about turns below this page's first one: it is news only if this page
    // reaches at least as far back as what was drawn before.
    const first = stored[0]?.turn;
    if (older || oldestBefore === undefined || (first !== undefined && first <= oldestBefore)) {
      state.more = Boolean(page.more) && stored.length > 0;
    }
    state.loaded = true;
    state.loading = false;
    state.error = '';
    this.renderHistoryRow(sessionId);
    if (shown && turns.size === 0) this.renderEmpty(sessionId);
    if (fromBottom !== null) this.list.scrollTop = this.list.scrollHeight - fromBottom;
  }

  /** The first row: "load earlier", "loading…", or why the history is missing. */
  renderHistoryRow(sessionId) {
    if (sessionId !== this.current) return;
    const state = this.historyOf(sessionId);
    const old = this.list.querySelector(':scope > .history-row');
    let row = null;
    if (state.loading || state.error || state.more) {
      row = document.createElement('li');
      row.className = 'history-row';
      if (state.loading) {
        row.textContent = 'Loading history…';
      } else {
        if (state.error) {
          const note = document.createElement('span');
          note.className = 'history-error';
          note.textContent = `History unavailable: ${state.error} `;
          row.append(note);
        }
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'load-earlier';
        button.textContent = state.error ? 'Retry' : 'Load earlier';
        const older = state.error ? state.failedOlder : true;
        button.addEventListener('click', () => this.load(sessionId, { older }));
        row.append(button);
      }
    }
    if (old && row) old.replaceWith(row);
    else if (old) old.remove();
    else if (row) this.list.prepend(row);
  }

  renderEmpty(sessionId) {
    if (sessionId !== this.current || this.list.querySelector(':scope > .empty')) return;
    const state = this.historyOf(sessionId);
    if (state.loading && !state.loaded) return;
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = `No messages in ${sessionId} yet. Say something below.`;
    this.list.append(empty);
  }

  /** Applies one live frame; returns the turn it touched (or null). */
  apply(frame) {
    const { sessionId } = frame;
    if (!sessionId) return null;
    switch (frame.type) {
      case 'USER_INPUT': {
        const turn = this.turnOf(sessionId, frame.turn);
        turn.user = frame.content;
        return this.render(sessionId, turn);
      }
      case 'TEXT_DELTA': {
        const turn = this.turnOf(sessionId, frame.turn);
        if (turn.finished) return turn;
        turn.text += frame.content;
        if (frame.eos && turn.phase === 'streaming') turn.phase = 'written';
        return this.render(sessionId, turn);
      }
      case 'REASONING_DELTA': {
        const turn = this.turnOf(sessionId, frame.turn);
        if (turn.finished) return turn;
        turn.reasoning += frame.content;
        return this.render(sessionId, turn);
      }
      case 'SPEECH_CHUNK': {
        if (!frame.segment) return null;
        const turn = this.turnOf(sessionId, frame.turn);
        if (turn.finished) return null;
        turn.heard.push(frame.segment.text);
        // The text runs ahead of the voice: redraw where the voice has got to.
        return this.render(sessionId, turn);
      }
      case 'CONTROL':
        return this.control(frame);
      default:
        return null;
    }
  }

  control(frame) {
    const turns = this.sessions.get(frame.sessionId);
    if (!turns) return null;
    if (frame.action === 'END') {
      const turn = turns.get(frame.turn);
      if (turn && !turn.finished) {
        turn.phase = 'completed';
        this.render(frame.sessionId, turn);
      }
      return turn ?? null;
    }
    if (frame.action === 'STOP') {
      for (const turn of turns.values()) {
        if (!turn.finished && (frame.turn === undefined || turn.turn <= frame.turn)) {
          turn.phase = 'stopping';
          this.render(frame.sessionId, turn);
        }
      }
      return null;
    }
    if (frame.action === 'STOP_ACK') {
      // Every unfinished turn up to the acknowledged one ended here: cut it to what was heard.
      let last = null;
      for (const turn of turns.values()) {
        const covered = frame.turn === undefined || turn.turn <= frame.turn;
        if (!covered || turn.finished) continue;
        // A reply whose text was complete is still interrupted if its audio was playing.
        turn.phase = turn.phase === 'written' && !this.speech ? 'completed' : 'interrupted';
        if (turn.phase === 'interrupted') last = turn;
        this.render(frame.sessionId, turn);
      }
      return last;
    }
    return null;
  }

  /** Marks a turn failed (an SSE `error` of the request that made it). */
  fail(sessionId, number, message) {
    const turn = this.turnOf(sessionId, number);
    turn.phase = 'failed';
    turn.error = message;
    this.render(sessionId, turn);
  }

  /** What an interrupted turn really said: the heard segments (text-only: what was written). */
  spoken(turn) {
    if (turn.phase !== 'interrupted' || turn.stored) return turn.text;
    if (turn.heardText !== null) return turn.heardText;
    return this.speech ? turn.heard.join('') : turn.text;
  }

  /** A live turn that was interrupted and whose stored (heard) text is not drawn yet. */
  needsStoredCut(sessionId, number) {
    const turn = this.sessions.get(sessionId)?.get(number);
    return Boolean(turn && turn.phase === 'interrupted' && !turn.stored && turn.heardText === null);
  }

  render(sessionId, turn) {
    if (sessionId !== this.current) return turn;
    this.list.querySelector('.empty')?.remove();
    const stuckToBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    const item = document.createElement('li');
    item.className = 'turn';
    item.dataset.turn = String(turn.turn);
    item.dataset.phase = turn.phase;
    if (turn.user !== null) {
      const user = document.createElement('div');
      user.className = 'bubble user';
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = `you · turn ${turn.turn}`;
      user.append(who, turn.user);
      item.append(user);
    }
    if (turn.text || turn.reasoning || turn.phase !== 'streaming' || turn.user === null) {
      const ai = document.createElement('div');
      ai.className = `bubble ai ${turn.phase}`;
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = 'Kotodama';
      const label = {
        interrupted: 'interrupted',
        stopping: 'stopping…',
        failed: 'failed',
        abandoned: 'abandoned',
      }[turn.phase];
      if (label) {
        const badge = document.createElement('span');
        badge.className = `badge ${turn.phase}`;
        badge.textContent = label;
        who.append(badge);
      }
      if (turn.demo) {
        const demo = document.createElement('span');
        demo.className = 'badge demo';
        demo.textContent = 'demo';
        demo.title = 'A sample line of the built-in demo: no AI is set up yet (Setup).';
        who.append(demo);
      }
      // A completed turn can carry one too (`tts_failed`: not all of it was spoken).
      if (turn.reason) {
        const reason = document.createElement('span');
        reason.className = 'badge reason';
        reason.textContent = reasonLabel(turn.reason);
        reason.title = turn.reason;
        who.append(reason);
      }
      const spoken = this.spoken(turn);
      const body = document.createElement('span');
      body.className = 'text';
      const speaking = this.speech && !turn.finished && !turn.stored
        && (turn.phase === 'streaming' || turn.phase === 'written');
      if (speaking && turn.text) {
        // Written but not yet spoken is drawn apart from what the voice has reached.
        // The segment heard last is the one being spoken now: highlighted.
        const before = turn.heard.slice(0, -1).join('');
        const [said, rest] = splitSpoken(turn.text, before);
        const [current, ahead] = splitSpoken(rest, turn.heard.at(-1) ?? '');
        const pending = document.createElement('span');
        pending.className = 'ahead';
        pending.title = 'written, not spoken yet';
        pending.textContent = ahead;
        body.append(said);
        if (current) {
          const now = document.createElement('mark');
          now.className = 'speaking';
          now.title = 'being spoken now';
          now.textContent = current;
          body.append(now);
        }
        body.append(pending);
      } else {
        body.textContent = spoken || emptyReply(turn.phase);
      }
      if (turn.reasoning) {
        // Thinking is shown, never spoken or stored: it sits dimmed above the reply, open while
        // the model thinks and folded once the reply begins.
        const thinking = document.createElement('details');
        thinking.className = 'reasoning';
        thinking.open = !turn.text;
        const summary = document.createElement('summary');
        summary.textContent = 'thinking (not spoken)';
        const thought = document.createElement('p');
        thought.textContent = turn.reasoning;
        thinking.append(summary, thought);
        ai.append(who, thinking, body);
      } else {
        ai.append(who, body);
      }
      if (turn.joinedLate && !turn.stored) {
        const late = document.createElement('p');
        late.className = 'joined-late';
        late.textContent = 'This reply started before the panel loaded; its beginning is not shown.';
        ai.append(late);
      }
      if (turn.phase === 'interrupted' && !turn.stored && this.speech && turn.text.length > spoken.length) {
        const unspoken = document.createElement('details');
        unspoken.className = 'unspoken';
        const summary = document.createElement('summary');
        summary.textContent = 'not spoken (not stored)';
        const rest = document.createElement('p');
        rest.textContent = unspokenPart(turn.text, spoken);
        unspoken.append(summary, rest);
        ai.append(unspoken);
      }
      if (turn.error) {
        const error = document.createElement('p');
        error.className = 'turn-error';
        error.textContent = turn.error;
        ai.append(error);
      }
      item.append(ai);
    }
    if (turn.element?.isConnected) {
      turn.element.replaceWith(item);
    } else {
      // Rows without a turn number (the history row) never match: it stays first.
      const after = [...this.list.children].find((child) => Number(child.dataset.turn) > turn.turn);
      this.list.insertBefore(item, after ?? null);
    }
    turn.element = item;
    if (stuckToBottom) this.scroll();
    return turn;
  }

  scroll() {
    this.list.scrollTop = this.list.scrollHeight;
  }
}

/** Stored end reasons (the history API's `reason`) → a short label; the code is the title. */
const REASON_LABELS = {
  user_interrupt: 'stopped by you',
  client_disconnected: 'viewer left',
  shutdown: 'app shut down',
  tts_failed: 'speech failed',
  speech_crashed: 'speech crashed',
  llm_timeout: 'LLM timed out',
  llm_rate_limited: 'LLM rate-limited',
  llm_auth: 'LLM refused the key',
  llm_transport: 'LLM unreachable',
  llm_protocol: 'LLM answer unreadable',
  llm_unavailable: 'LLM unavailable',
  storage_error: 'storage error',
  internal: 'internal error',
};

/** A reason code without a label (a newer server's) is still readable: `foo_bar` → "foo bar". */
function reasonLabel(code) {
  return REASON_LABELS[code] ?? String(code).replace(/_/g, ' ');
}

/** The note under a stored failed reply: with or without what was heard before it failed. */
function failedNote(heard) {
  return heard ? 'The reply failed here; the text above is what was heard.' : 'The reply failed; nothing was heard.';
}

/** The body of a reply bubble that has no text. */
function emptyReply(phase) {
  switch (phase) {
    case 'interrupted':
      return '(interrupted before anything was heard)';
    case 'failed':
      return '(no reply)';
    case 'abandoned':
      return '(no reply: the app stopped during this turn)';
    default:
      return '';
  }
}

/**
 * `written` cut where the voice has got to: [the part spoken (or being spoken), the rest].
 * Segments are the LLM's text cut at sentence breaks (whitespace and markup may differ), so
 * match on the heard text with spaces squeezed.
 */
export function splitSpoken(written, heard) {
  const squeeze = (text) => text.replace(/\s+/g, '');
  const target = squeeze(heard).length;
  let seen = 0;
  let index = 0;
  while (index < written.length && seen < target) {
    if (!/\s/.test(written[index])) seen += 1;
    index += 1;
  }
  return [written.slice(0, index), written.slice(index)];
}

/** The written text past what was heard (all of it when nothing matched). */
function unspokenPart(written, heard) {
  return splitSpoken(written, heard)[1].trim() || written;
}
