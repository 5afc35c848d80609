// The settings form over `GET/PUT /settings`. The server validates (it builds the whole
// configuration the next start would use) and answers every failing key; the form shows each
// message under its field and keeps what the user typed, while the saved settings stay as
// they were. The server applies what it can at once (persona, memory, LLM, voice, and in the
// desktop app the output device, volume and hotkey) and says which keys need a restart; each
// field shows which kind it is. Device choices come from the server (the desktop app's list).

const GROUPS = [
  { title: 'LLM', keys: ['llm_provider', 'openai_base_url', 'llm_model', 'openai_api_key', 'llm_temperature', 'llm_max_tokens'] },
  { title: 'Speech', keys: ['tts_provider', 'tts_voice', 'default_lang', 'tts_voices', 'tts_rate'] },
  { title: 'Persona and memory', keys: ['system_prompt', 'persona_file', 'stm_context_turns'] },
  { title: 'Audio and stop hotkey (desktop app)', keys: ['output_device', 'output_volume', 'stop_hotkey', 'playback'] },
  { title: 'Flags', keys: ['enable_sync_core', 'sync_tts_streaming', 'sync_tts_barge_in', 'enable_async_ext', 'enable_ltm_inline'] },
  { title: 'Server', keys: ['bind'] },
];

const CHOICES = {
  llm_provider: ['mock', 'openai'],
  tts_provider: ['auto', 'mock', 'espeak', 'piper', 'edge', 'openai'],
  log_format: ['text', 'json'],
  openai_tts_format: ['pcm', 'mp3'],
};

const LABELS = {
  llm_provider: 'LLM provider',
  openai_base_url: 'LLM endpoint (base URL with /v1)',
  llm_model: 'Model',
  openai_api_key: 'API key',
  llm_temperature: 'Temperature',
  llm_max_tokens: 'Max tokens',
  tts_provider: 'TTS provider',
  tts_voice: 'Voice',
  default_lang: 'Spoken language (auto = by the reply)',
  tts_voices: 'Voice per language (zh=…,ja=…)',
  tts_rate: 'Speaking rate',
  system_prompt: 'Persona (system prompt)',
  persona_file: 'Persona file',
  stm_context_turns: 'Memory window (earlier turns in the prompt)',
  bind: 'Listen address (host:port)',
  output_device: 'Output device',
  output_volume: 'Volume',
  stop_hotkey: 'Stop hotkey (push-to-interrupt)',
  playback: 'Play the voice on this computer',
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
      this.say(`Saved but not running yet (restart to apply): ${view.pendingRestart.join(', ')}`, 'error');
    } else this.say('');
  }

  render(view) {
    this.inputs.clear();
    this.initial.clear();
    this.specs = new Map(view.keys.map((spec) => [spec.key, spec]));
    const pending = new Set(view.pendingRestart);
    const grouped = new Set(GROUPS.flatMap((group) => group.keys));
    const sections = GROUPS.map((group) => {
      const fieldset = document.createElement('fieldset');
      const legend = document.createElement('legend');
      legend.textContent = group.title;
      fieldset.append(legend);
      for (const key of group.keys) {
        const spec = this.specs.get(key);
        if (spec) fieldset.append(this.field(spec, pending.has(key)));
      }
      return fieldset;
    });
    const advanced = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = 'Advanced';
    advanced.append(summary);
    for (const spec of view.keys) {
      if (!grouped.has(spec.key)) advanced.append(this.field(spec, pending.has(spec.key)));
    }
    const where = document.createElement('p');
    where.className = 'muted';
    where.textContent = `Saved to ${view.path} (owner-only, may hold keys). Environment variables, --config and flags override it.`;
    this.fieldsRoot.replaceChildren(...sections, advanced, where);
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
      label.append(input, ` ${spec.key}`);
      this.initial.set(spec.key, input.checked);
    } else {
      label.textContent = LABELS[spec.key] ?? spec.key;
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
    doc.textContent = spec.doc;
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
          .map(([key, message]) => `${key}: ${message}`);
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
    const overridden = Object.entries(answer.overridden ?? {}).map(
      ([key, by]) => `${key} is overridden by ${by}`,
    );
    const notes = Object.entries(answer.notes ?? {}).map(([key, note]) => `${key}: ${note}`);
    this.say([answer.message, ...overridden, ...notes].join(' — '), 'ok');
  }
}
