// The settings form over `GET/PUT /settings`. The server validates (it builds the whole
// configuration the next start would use) and answers every failing key; the form shows each
// message under its field and keeps what the user typed, while the saved settings stay as
// they were. The server applies what it can at once (persona, memory, LLM, voice, and in the
// desktop app the output device, volume and hotkey) and says which keys need a restart; each
// field shows which kind it is. Device choices come from the server (the desktop app's list).

// The page's sections, in order; each key's group and plain label come from the server
// (`settings_words.rs`), so a key added there shows up without a change here. Advanced is
// folded: internals (limits, event delivery, Redis) stay out of the way of the basics.
const GROUPS = [
  { id: 'voice', title: 'Voice', hint: 'How the co-host sounds and where it is heard.' },
  { id: 'brain', title: 'Brain', hint: 'The AI that writes the replies, and what it remembers.' },
  { id: 'character', title: 'Character', hint: 'Who the co-host is.' },
  { id: 'stream', title: 'Stream', hint: 'Controls while you are live.' },
  { id: 'advanced', title: 'Advanced', hint: 'Internals: limits, event delivery, network. The defaults are fine for streaming.' },
];

/** Keys shown first in their group, in this order (the rest follow in the server's order). */
const FIRST = ['llm_provider', 'openai_base_url', 'llm_model', 'openai_api_key', 'tts_provider', 'tts_voice', 'default_lang'];

const CHOICES = {
  llm_provider: ['mock', 'openai'],
  tts_provider: ['auto', 'mock', 'espeak', 'piper', 'edge', 'openai'],
  log_format: ['text', 'json'],
  openai_tts_format: ['pcm', 'mp3'],
};

const TRUE_WORDS = ['true', '1', 'yes', 'on'];

function isFlag(spec) {
  return ['true', 'false', 'on', 'off'].includes(spec.default);
}

export class SettingsForm {
  /**
   * @param {import('./api.js').Api} api
   * @param {HTMLFormElement} form
   */
  constructor(api, form) {
    this.api = api;
    this.form = form;
    this.fieldsRoot = form.querySelector('#settings-fields');
    this.summary = form.querySelector('#settings-summary');
    this.inputs = new Map();
    this.initial = new Map();
    this.specs = new Map();
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.save();
    });
    form.querySelector('#settings-reload').addEventListener('click', () => this.load());
  }

  say(text, tone = '') {
    this.summary.textContent = text;
    this.summary.className = `settings-summary ${tone}`.trim();
  }

  async load() {
    let view;
    try {
      view = await this.api.json('GET', '/settings');
    } catch (error) {
      this.say(`Cannot load settings: ${error.message}`, 'error');
      return;
    }
    this.render(view);
    if (view.fileError) this.say(view.fileError, 'error');
    else if (view.pendingRestart.length > 0) {
      const names = view.pendingRestart.map((key) => this.specs.get(key)?.label ?? key);
      this.say(`Saved but not running yet (restart to apply): ${names.join(', ')}`, 'error');
    } else this.say('');
  }

  render(view) {
    this.inputs.clear();
    this.initial.clear();
    this.specs = new Map(view.keys.map((spec) => [spec.key, spec]));
    const pending = new Set(view.pendingRestart);
    const known = new Set(GROUPS.map((group) => group.id));
    const order = (spec) => {
      const first = FIRST.indexOf(spec.key);
      return first >= 0 ? first : FIRST.length;
    };
    const sections = GROUPS.map((group) => {
      const specs = view.keys
        .filter((spec) => (known.has(spec.group) ? spec.group : 'advanced') === group.id)
        .map((spec, index) => ({ spec, index }))
        .sort((a, b) => order(a.spec) - order(b.spec) || a.index - b.index)
        .map(({ spec }) => spec);
      const section = document.createElement(group.id === 'advanced' ? 'details' : 'fieldset');
      section.className = `settings-group group-${group.id}`;
      section.dataset.group = group.id;
      const title = document.createElement(group.id === 'advanced' ? 'summary' : 'legend');
      title.textContent = group.title;
      const hint = document.createElement('p');
      hint.className = 'group-hint muted';
      hint.textContent = group.hint;
      section.append(title, hint);
      for (const spec of specs) section.append(this.field(spec, pending.has(spec.key)));
      return section;
    });
    const where = document.createElement('p');
    where.className = 'muted';
    where.textContent = `Saved to ${view.path} (owner-only, may hold keys). Environment variables, --config and flags override it.`;
    this.fieldsRoot.replaceChildren(...sections, where);
  }

  field(spec, pending) {
    const wrapper = document.createElement('div');
    wrapper.className = 'field';
    wrapper.dataset.key = spec.key;
    const id = `setting-${spec.key}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    const current = spec.saved ?? spec.value;
    let input;
    if (isFlag(spec)) {
      wrapper.classList.add('flag');
      input = document.createElement('input');
      input.type = 'checkbox';
      input.checked = TRUE_WORDS.includes(String(current).toLowerCase());
      label.append(input, ` ${spec.label ?? spec.key}`);
      this.initial.set(spec.key, input.checked);
    } else {
      label.textContent = spec.label ?? spec.key;
      if (spec.choices) {
        input = document.createElement('select');
        for (const choice of spec.choices) input.append(new Option(choice.label, choice.value));
        if (!spec.choices.some((choice) => choice.value === current)) {
          // A saved device that is not plugged in now: keep it visible rather than silently
          // switching the selection to another one.
          input.append(new Option(`${current} (not found)`, current));
        }
        input.value = current;
      } else if (spec.key === 'output_volume') {
        input = document.createElement('input');
        input.type = 'range';
        input.min = '0';
        input.max = '2';
        input.step = '0.05';
        input.value = current;
        const shown = document.createElement('output');
        shown.className = 'range-value';
        shown.textContent = `${Math.round(Number(current) * 100)}%`;
        input.addEventListener('input', () => {
          shown.textContent = `${Math.round(Number(input.value) * 100)}%`;
        });
        // Volume is heard, not read: apply it when the slider is let go.
        input.addEventListener('change', () => this.save(['output_volume']));
        label.append(shown);
      } else if (CHOICES[spec.key]) {
        input = document.createElement('select');
        const choices = CHOICES[spec.key].includes(current) ? CHOICES[spec.key] : [current, ...CHOICES[spec.key]];
        for (const choice of choices) input.append(new Option(choice, choice));
        input.value = current;
      } else if (spec.key === 'system_prompt') {
        input = document.createElement('textarea');
        input.value = current;
      } else {
        input = document.createElement('input');
        input.type = spec.secret ? 'password' : 'text';
        input.autocomplete = 'off';
        input.spellcheck = false;
        if (spec.secret) {
          input.placeholder = current === 'set' ? 'set — type to replace' : 'not set';
          input.value = '';
        } else {
          input.value = current;
          if (spec.default) input.placeholder = spec.default;
        }
      }
      this.initial.set(spec.key, input.value);
    }
    input.id = id;
    input.name = spec.key;
    const env = document.createElement('span');
    env.className = 'env';
    env.textContent = spec.env;
    label.append(env);
    const error = document.createElement('span');
    error.className = 'field-error';
    error.id = `${id}-error`;
    error.setAttribute('role', 'alert');
    input.setAttribute('aria-describedby', error.id);
    input.addEventListener('input', () => this.clearError(spec.key));
    wrapper.append(label);
    if (!isFlag(spec)) wrapper.append(input);
    if (spec.secret && spec.saved === 'set') {
      const clear = document.createElement('button');
      clear.type = 'button';
      clear.textContent = 'Remove saved key';
      clear.addEventListener('click', () => {
        this.clearing = new Set([...(this.clearing ?? []), spec.key]);
        input.value = '';
        input.placeholder = 'will be removed on save';
      });
      wrapper.append(clear);
    }
    wrapper.append(error);
    const doc = document.createElement('p');
    doc.className = 'doc';
    doc.append(...plainDoc(spec.doc));
    wrapper.append(doc);
    const notes = [];
    if (spec.overriddenBy) notes.push(`Overridden by ${spec.overriddenBy}: a saved value takes effect only without it.`);
    if (pending) notes.push('Saved; restart Kotodama to apply.');
    if (spec.desktopOnly && !spec.choices && spec.key === 'output_device') {
      notes.push('Only the desktop app plays audio; it lists the devices here.');
    }
    const applies = document.createElement('span');
    applies.className = spec.restartRequired ? 'applies restart' : 'applies live';
    applies.textContent = spec.restartRequired ? 'restart to apply' : 'applies at once';
    label.append(applies);
    if (notes.length > 0) {
      const note = document.createElement('p');
      note.className = 'note';
      note.textContent = notes.join(' ');
      wrapper.append(note);
    }
    this.inputs.set(spec.key, input);
    return wrapper;
  }

  clearError(key) {
    const input = this.inputs.get(key);
    if (!input) return;
    input.removeAttribute('aria-invalid');
    const error = document.getElementById(`${input.id}-error`);
    if (error) error.textContent = '';
  }

  /** Only what the user changed is sent. */
  changes() {
    const changes = {};
    for (const [key, input] of this.inputs) {
      const spec = this.specs.get(key);
      if (input.type === 'checkbox') {
        const [yes, no] = ['on', 'off'].includes(spec.default) ? ['on', 'off'] : ['true', 'false'];
        if (input.checked !== this.initial.get(key)) changes[key] = input.checked ? yes : no;
      } else if (spec.secret) {
        if (input.value !== '') changes[key] = input.value;
        else if (this.clearing?.has(key)) changes[key] = null;
      } else if (input.value !== this.initial.get(key)) {
        changes[key] = input.value;
      }
    }
    return changes;
  }

  /** Saves what changed (or only `only`, e.g. the volume slider). */
  async save(only = null) {
    for (const key of this.inputs.keys()) this.clearError(key);
    const changes = this.changes();
    if (only) {
      for (const key of Object.keys(changes)) if (!only.includes(key)) delete changes[key];
    }
    if (Object.keys(changes).length === 0) {
      this.say('Nothing changed.');
      return;
    }
    let answer;
    try {
      answer = await this.api.json('PUT', '/settings', changes);
    } catch (error) {
      if (error.fields) {
        let first = null;
        for (const [key, message] of Object.entries(error.fields)) {
          const input = this.inputs.get(key);
          if (!input) continue;
          input.setAttribute('aria-invalid', 'true');
          document.getElementById(`${input.id}-error`).textContent = message;
          first ??= input;
        }
        const elsewhere = Object.entries(error.fields)
          .filter(([key]) => !this.inputs.has(key))
          .map(([key, message]) => `${this.specs.get(key)?.label ?? key}: ${message}`);
        this.say([error.message, ...elsewhere].join(' — '), 'error');
        first?.closest('details')?.setAttribute('open', '');
        first?.focus();
      } else {
        this.say(`Not saved: ${error.message}`, 'error');
      }
      return;
    }
    this.clearing = null;
    await this.load();
    const name = (key) => this.specs.get(key)?.label ?? key;
    const overridden = Object.entries(answer.overridden ?? {}).map(
      ([key, by]) => `${name(key)} is overridden by ${by}`,
    );
    const notes = Object.entries(answer.notes ?? {}).map(([key, note]) => `${name(key)}: ${note}`);
    this.say([answer.message, ...overridden, ...notes].join(' — '), 'ok');
  }
}

/**
 * A key's doc as nodes: `code` spans become <code> (the backticks are markup, not text).
 * Text nodes only, never HTML, so a doc cannot inject anything.
 */
export function plainDoc(doc) {
  const nodes = [];
  String(doc ?? '').split('`').forEach((part, index) => {
    if (part === '') return;
    if (index % 2 === 1) {
      const code = document.createElement('code');
      code.textContent = part;
      nodes.push(code);
    } else {
      nodes.push(document.createTextNode(part));
    }
  });
  return nodes;
}
