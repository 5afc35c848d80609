// The panel's live chat view: the queue with its scores (GET /chat/queue, refreshed), the latest
// decisions with their reasons (CHAT_DECISION frames from /ws/live), the streamer's pin / skip /
// answer-now buttons, and the chat adapters' health chips (GET /health → `chat.adapters`, shown
// as they come: an array of {platform, state, reason} or an object of platform → health).
// Viewer text only ever goes into the page as textContent.

/** How often the queue is re-read while nothing else asks for it. */
const REFRESH_MS = 2000;
/** Decisions kept on screen. */
const MAX_DECISIONS = 50;

export class ChatView {
  /**
   * @param {{api: import('./api.js').Api, queue: HTMLElement, decisions: HTMLElement,
   *   summary: HTMLElement, adapters: HTMLElement, observe?: (event: object) => void}} parts
   */
  constructor({ api, queue, decisions, summary, adapters, observe = () => {} }) {
    this.api = api;
    this.queueList = queue;
    this.decisionList = decisions;
    this.summary = summary;
    this.adapterList = adapters;
    this.observe = observe;
    this.seeded = false;
    this.refreshing = null;
    this.queueList.addEventListener('click', (event) => this.onClick(event));
  }

  start() {
    this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  /** A /ws/live frame: decisions are drawn at once, and the queue re-read. */
  apply(frame) {
    if (frame.type !== 'CHAT_DECISION') return;
    this.addDecision(frame);
    this.refreshSoon();
  }

  refreshSoon() {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      this.refresh();
    }, 150);
  }

  async refresh() {
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      try {
        const view = await this.api.json('GET', '/chat/queue');
        this.drawQueue(view);
        if (!this.seeded) {
          this.seeded = true;
          for (const decision of view.decisions ?? []) this.addDecision(decision);
        }
      } catch (error) {
        this.summary.textContent = `Chat queue unavailable: ${error.message}`;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  drawQueue(view) {
    const { stats = {}, waiting = [], answering } = view;
    const hold = view.hold ? ` · ${holdText(view.hold)}` : '';
    this.summary.textContent =
      `${waiting.length}/${view.capacity} waiting · received ${stats.received ?? 0} · ` +
      `picked ${stats.picked ?? 0} · dropped ${stats.dropped ?? 0} · retracted ${stats.retracted ?? 0}${hold}`;
    const rows = [];
    if (answering) rows.push(this.row(answering, { answering: true }));
    for (const message of waiting) rows.push(this.row(message, {}));
    if (rows.length === 0) {
      const empty = document.createElement('li');
      empty.className = 'muted';
      empty.textContent = 'No chat messages waiting.';
      rows.push(empty);
    }
    this.queueList.replaceChildren(...rows);
    this.observe({ kind: 'chat-queue', waiting: waiting.map((m) => m.messageId), answering: answering?.messageId });
  }

  row(message, { answering }) {
    const item = document.createElement('li');
    item.className = answering ? 'chat-row answering' : message.pinned ? 'chat-row pinned' : 'chat-row';
    item.dataset.messageId = message.messageId;
    const head = document.createElement('div');
    head.className = 'chat-head';
    const who = document.createElement('strong');
    who.textContent = message.userName || message.userId;
    const meta = document.createElement('span');
    meta.className = 'muted';
    const count = message.count > 1 ? ` ×${message.count}` : '';
    meta.textContent = answering
      ? ` ${message.platform} · answering`
      : ` ${message.platform} · ${message.kind}${count} · score ${message.score} · ${Math.round(message.waitedMs / 1000)} s`;
    head.append(who, meta);
    const text = document.createElement('div');
    text.className = 'chat-text';
    text.textContent = message.text;
    item.append(head, text);
    if (!answering) {
      const actions = document.createElement('div');
      actions.className = 'chat-actions';
      for (const [action, label] of [['pin', 'Pin'], ['skip', 'Skip'], ['answer', 'Answer now']]) {
        const button = document.createElement('button');
        button.type = 'button';
        button.dataset.action = action;
        button.textContent = label;
        if (action === 'pin' && message.pinned) button.disabled = true;
        actions.append(button);
      }
      item.append(actions);
    }
    return item;
  }

  async onClick(event) {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const row = button.closest('[data-message-id]');
    const messageId = row?.dataset.messageId;
    if (!messageId) return;
    const action = button.dataset.action;
    button.disabled = true;
    try {
      await this.api.json('POST', `/chat/queue/${encodeURIComponent(messageId)}/${action}`);
      this.observe({ kind: 'chat-action', action, messageId, ok: true });
    } catch (error) {
      this.summary.textContent = `${action} failed: ${error.message}`;
      this.observe({ kind: 'chat-action', action, messageId, ok: false, code: error.code });
    }
    await this.refresh();
  }

  addDecision(frame) {
    const item = document.createElement('li');
    item.className = `chat-decision ${frame.decision}`;
    item.dataset.messageId = frame.messageId;
    const what = document.createElement('strong');
    what.textContent = frame.decision;
    const detail = document.createElement('span');
    const who = frame.userName ? `${frame.userName}: ` : '';
    detail.textContent = ` ${frame.platform}/${frame.messageId} — ${who}${frame.reason}`;
    item.append(what, detail);
    this.decisionList.prepend(item);
    while (this.decisionList.children.length > MAX_DECISIONS) this.decisionList.lastElementChild.remove();
    this.observe({ kind: 'chat-decision', messageId: frame.messageId, decision: frame.decision, reason: frame.reason });
  }

  /** Health chips from `/health`'s `chat.adapters`, whatever is there. */
  adapters(health) {
    const raw = health?.chat?.adapters;
    const entries = Array.isArray(raw)
      ? raw.map((a) => [a.platform ?? a.name ?? '?', a.health ?? a])
      : raw && typeof raw === 'object'
        ? Object.entries(raw)
        : [];
    const chips = entries.map(([name, state]) => {
      const chip = document.createElement('li');
      const value = typeof state === 'string' ? state : (state?.state ?? 'unknown');
      const reason = typeof state === 'object' && state?.reason ? ` (${state.reason})` : '';
      chip.className = `chip chat-adapter ${value}`;
      chip.textContent = `${name}: ${value}${reason}`;
      return chip;
    });
    if (chips.length === 0) {
      const none = document.createElement('li');
      none.className = 'chip muted';
      none.textContent = 'no chat adapters (local API only)';
      chips.push(none);
    }
    this.adapterList.replaceChildren(...chips);
  }
}

function holdText(hold) {
  return (
    {
      empty: 'nothing to answer',
      answering: 'answering one now',
      streamer_talking: 'waiting: the streamer talks',
      cadence: 'waiting for the answer cadence',
    }[hold] ?? hold
  );
}
