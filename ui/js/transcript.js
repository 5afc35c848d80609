// The streaming transcript, drawn from `/ws/live` frames: the user's input (USER_INPUT), the
// reply as it streams (TEXT_DELTA), the segments actually released as audio (SPEECH_CHUNK
// with `segment`), and the turn's end (END) or interruption (STOP → STOP_ACK).
//
// An interrupted reply is cut where the audio stopped: what the app stores is what was heard
// (the segments released before the STOP), not what the LLM had written. The rest stays
// visible only as "not spoken", struck through.

const MAX_TURNS_PER_SESSION = 200;

/** One turn's state. */
class Turn {
  constructor(turn) {
    this.turn = turn;
    this.user = null;
    this.text = '';
    /** Segment texts whose first chunk reached this client, i.e. that were heard. */
    this.heard = [];
    /** 'streaming' | 'written' (eos) | 'completed' (END) | 'stopping' | 'interrupted' | 'failed' */
    this.phase = 'streaming';
    this.error = null;
    this.element = null;
  }

  get finished() {
    return this.phase === 'completed' || this.phase === 'interrupted' || this.phase === 'failed';
  }
}

export class Transcript {
  /** @param {HTMLOListElement} list */
  constructor(list) {
    this.list = list;
    /** sessionId → Map(turn → Turn) */
    this.sessions = new Map();
    this.current = '';
    /** Whether replies are spoken (TTS on): decides what an interrupted turn "heard". */
    this.speech = true;
  }

  show(sessionId) {
    this.current = sessionId;
    this.list.replaceChildren();
    const turns = this.sessions.get(sessionId);
    if (!turns || turns.size === 0) {
      const empty = document.createElement('li');
      empty.className = 'empty';
      empty.textContent = `No messages in ${sessionId} yet. Say something below.`;
      this.list.append(empty);
      return;
    }
    for (const turn of [...turns.values()].sort((a, b) => a.turn - b.turn)) {
      turn.element = null;
      this.render(sessionId, turn);
    }
    this.scroll();
  }

  turnOf(sessionId, number) {
    if (!this.sessions.has(sessionId)) this.sessions.set(sessionId, new Map());
    const turns = this.sessions.get(sessionId);
    if (!turns.has(number)) {
      turns.set(number, new Turn(number));
      if (turns.size > MAX_TURNS_PER_SESSION) {
        const oldest = Math.min(...turns.keys());
        turns.get(oldest).element?.remove();
        turns.delete(oldest);
      }
    }
    return turns.get(number);
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
      case 'SPEECH_CHUNK': {
        if (!frame.segment) return null;
        const turn = this.turnOf(sessionId, frame.turn);
        if (!turn.finished) turn.heard.push(frame.segment.text);
        return null;
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
    if (turn.phase !== 'interrupted') return turn.text;
    return this.speech ? turn.heard.join('') : turn.text;
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
    if (turn.text || turn.phase !== 'streaming' || turn.user === null) {
      const ai = document.createElement('div');
      ai.className = `bubble ai ${turn.phase}`;
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = 'Kotodama';
      const label = {
        interrupted: 'interrupted',
        stopping: 'stopping…',
        failed: 'failed',
      }[turn.phase];
      if (label) {
        const badge = document.createElement('span');
        badge.className = `badge ${turn.phase}`;
        badge.textContent = label;
        who.append(badge);
      }
      const spoken = this.spoken(turn);
      const body = document.createElement('span');
      body.className = 'text';
      body.textContent =
        turn.phase === 'interrupted' && !spoken ? '(interrupted before anything was heard)' : spoken;
      ai.append(who, body);
      if (turn.phase === 'interrupted' && this.speech && turn.text.length > spoken.length) {
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

/**
 * The written text past what was heard. Segments are the LLM's text cut at sentence breaks
 * (whitespace and markup may differ), so match on the heard text with spaces squeezed.
 */
function unspokenPart(written, heard) {
  const squeeze = (text) => text.replace(/\s+/g, '');
  const target = squeeze(heard).length;
  let seen = 0;
  let index = 0;
  while (index < written.length && seen < target) {
    if (!/\s/.test(written[index])) seen += 1;
    index += 1;
  }
  return written.slice(index).trim() || written;
}
