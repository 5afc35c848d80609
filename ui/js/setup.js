// The first-run setup: language, the AI (presets + Test connection), voice (the provider's
// list + Test voice through the relay, so the app and the overlay play it), character
// (ready personas, editable, saved as TOML files) and the OBS overlay (URL + live preview).
// It opens by itself while no settings were ever saved and it was not skipped in this browser;
// the Setup button opens it again. Each step saves through `PUT /settings`, whose refusals
// come back as sentences under the step; nothing is saved by a step left with Back or Skip.

import { ApiError, readSse } from './api.js';
import { OverlayLook } from './overlay_setup.js';

const SEEN_KEY = 'kotodama.setup';
const LANG_KEY = 'kotodama.lang';

/** OpenAI-compatible servers a streamer is likely to have: base URL and a model hint. */
export const LLM_PRESETS = [
  { id: 'demo', label: 'Demo (no AI yet)', provider: 'mock', hint: 'Canned demo lines; set up a real AI any time.' },
  { id: 'openai', label: 'OpenAI', base: 'https://api.openai.com/v1', model: 'gpt-4o-mini', key: true, hint: 'Needs an API key from platform.openai.com.' },
  { id: 'ollama', label: 'Ollama', base: 'http://127.0.0.1:11434/v1', model: 'llama3.2', hint: 'Local and free: `ollama pull llama3.2`, then Test connection.' },
  { id: 'lmstudio', label: 'LM Studio', base: 'http://127.0.0.1:1234/v1', model: '', hint: 'Start the local server in LM Studio (Developer tab) with a model loaded.' },
  { id: 'llamacpp', label: 'llama.cpp', base: 'http://127.0.0.1:8080/v1', model: '', hint: 'Run `llama-server -m model.gguf`; any model name works.' },
  { id: 'deepseek', label: 'DeepSeek', base: 'https://api.deepseek.com/v1', model: 'deepseek-chat', key: true, hint: 'Needs an API key from platform.deepseek.com.' },
];

/** What Test voice says, per language. */
const SAMPLES = {
  en: 'Hi chat! This is how I sound on stream.',
  zh: '大家好！我在直播里就是这个声音。',
  ja: 'みんな、こんにちは！配信ではこんな声で話します。',
  ko: '여러분 안녕하세요! 방송에서는 이런 목소리예요.',
};

const $ = (id) => document.getElementById(id);

function say(element, text, tone = '') {
  element.textContent = text;
  element.className = `setup-result ${tone}`.trim();
}

/** A refused `PUT /settings` as one sentence per field, in the settings' own words. */
function refusal(error) {
  if (error instanceof ApiError && error.fields) {
    return Object.entries(error.fields)
      .map(([key, message]) => `${key.replace(/_/g, ' ')}: ${message}`)
      .join(' ');
  }
  return error.message;
}

export class Setup {
  /**
   * @param {import('./api.js').Api} api
   * @param {object} options
   * @param {string} options.token
   * @param {() => string} options.sessionId
   * @param {() => void} options.onSaved the settings changed (the form reloads)
   * @param {(event: object) => void} [options.observe] test hook
   */
  constructor(api, { token, sessionId, onSaved, observe = () => {} }) {
    this.api = api;
    this.token = token;
    this.onSaved = onSaved;
    this.observe = observe;
    this.dialog = $('setup');
    this.steps = [...this.dialog.querySelectorAll('.setup-step')];
    this.index = 0;
    this.preset = null;
    this.persona = null;
    this.renderStepList();
    this.renderLlmPresets();
    $('setup-open').addEventListener('click', () => this.open());
    $('setup-skip').addEventListener('click', () => this.close('skipped'));
    $('setup-back').addEventListener('click', () => this.go(this.index - 1));
    $('setup-next').addEventListener('click', () => this.next());
    $('setup-llm-test').addEventListener('click', () => this.testLlm());
    $('setup-voice-provider').addEventListener('change', () => this.loadVoices());
    $('setup-voice-test').addEventListener('click', () => this.testVoice());
    $('setup-persona-save').addEventListener('click', () => this.savePersona());
    for (const id of ['setup-persona-name', 'setup-persona-lang', 'setup-persona-style']) {
      $(id).addEventListener('input', () => this.composePrompt());
    }
    $('setup-persona-prompt').addEventListener('input', () => {
      this.promptEdited = true;
    });
    this.look = new OverlayLook({
      form: $('setup-overlay-options'),
      urlField: $('setup-overlay-url'),
      token,
      sessionId,
      idPrefix: 'setup-overlay',
    });
    $('setup-overlay-copy').addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText($('setup-overlay-url').value);
        $('setup-overlay-copied').textContent = 'Copied. Paste it into an OBS Browser source.';
      } catch {
        $('setup-overlay-url').select();
        $('setup-overlay-copied').textContent = 'Press Ctrl+C to copy the selected URL.';
      }
    });
  }

  /** Opens by itself on a first run (no settings saved yet, not skipped in this browser). */
  async maybeOpen() {
    if (localStorage.getItem(SEEN_KEY)) return;
    try {
      const view = await this.api.json('GET', '/settings');
      if (!view.fileExists) this.open();
    } catch {
      // No settings API answer: the panel shows why elsewhere.
    }
  }

  async open() {
    const view = await this.api.json('GET', '/settings').catch(() => null);
    this.running = new Map((view?.keys ?? []).map((spec) => [spec.key, spec.saved ?? spec.value]));
    $('setup-lang').value = localStorage.getItem(LANG_KEY) ?? this.running.get('default_lang') ?? 'auto';
    if ($('setup-lang').selectedIndex < 0) $('setup-lang').value = 'auto';
    const provider = this.running.get('llm_provider');
    this.choosePreset(provider === 'openai' ? this.presetFor(this.running.get('openai_base_url')) : 'demo', { keepFields: provider === 'openai' });
    $('setup-voice-provider').value = this.running.get('tts_provider') ?? 'auto';
    this.go(0);
    // Not modal: STOP (drawn above it) must stay clickable while the setup is open.
    if (!this.dialog.open) this.dialog.show();
    this.observe({ kind: 'setup-open' });
  }

  close(how) {
    localStorage.setItem(SEEN_KEY, how);
    $('setup-overlay-preview').removeAttribute('src');
    if (this.dialog.open) this.dialog.close();
    this.observe({ kind: 'setup-close', how });
  }

  renderStepList() {
    $('setup-steps').replaceChildren(
      ...this.steps.map((step, index) => {
        const item = document.createElement('li');
        item.textContent = step.dataset.title;
        item.dataset.index = String(index);
        return item;
      }),
    );
  }

  go(index) {
    this.index = Math.max(0, Math.min(this.steps.length - 1, index));
    this.steps.forEach((step, i) => {
      step.hidden = i !== this.index;
    });
    for (const item of $('setup-steps').children) {
      item.classList.toggle('current', Number(item.dataset.index) === this.index);
    }
    $('setup-back').disabled = this.index === 0;
    const last = this.index === this.steps.length - 1;
    $('setup-next').textContent = last ? 'Finish' : 'Next';
    const step = this.steps[this.index].dataset.step;
    if (step === 'voice') this.loadVoices();
    if (step === 'character') this.loadPersonas();
    if (step === 'obs') {
      this.look.preview = $('setup-overlay-preview');
      this.look.refreshPreview();
    }
    this.observe({ kind: 'setup-step', step });
  }

  /** Saves what the current step chose; moves on only if that worked. */
  async next() {
    const step = this.steps[this.index].dataset.step;
    const saved = await this.saveStep(step);
    if (!saved) return;
    if (this.index === this.steps.length - 1) {
      this.close('done');
      return;
    }
    this.go(this.index + 1);
  }

  async put(changes, result) {
    const entries = Object.entries(changes).filter(([key, value]) => value !== undefined && this.running.get(key) !== value);
    if (entries.length === 0) return true;
    try {
      await this.api.json('PUT', '/settings', Object.fromEntries(entries));
    } catch (error) {
      say(result, `Not saved: ${refusal(error)}`, 'bad');
      return false;
    }
    for (const [key, value] of entries) this.running.set(key, value);
    this.onSaved();
    return true;
  }

  async saveStep(step) {
    switch (step) {
      case 'language': {
        const lang = $('setup-lang').value;
        localStorage.setItem(LANG_KEY, lang);
        const picker = $('composer-lang');
        if (picker) picker.value = lang;
        return this.put({ default_lang: lang }, $('setup-lang-result'));
      }
      case 'brain':
        return this.saveLlm();
      case 'voice':
        return this.saveVoice($('setup-voice-result'));
      case 'character': {
        const prompt = $('setup-persona-prompt').value.trim();
        if (!prompt) return true;
        // A character's own quick "hmm…" comes with it; an empty field keeps the global one.
        const quickAck = this.personaQuickAck();
        return this.put(
          { system_prompt: prompt, quick_ack_ms: quickAck === null ? undefined : String(quickAck) },
          $('setup-persona-result'),
        );
      }
      default:
        return true;
    }
  }

  // ---- the AI ---------------------------------------------------------------------------------

  presetFor(base) {
    return LLM_PRESETS.find((preset) => preset.base && preset.base === base)?.id ?? 'openai';
  }

  renderLlmPresets() {
    $('setup-llm-presets').replaceChildren(
      ...LLM_PRESETS.map((preset) => {
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'preset';
        button.dataset.preset = preset.id;
        button.textContent = preset.label;
        button.addEventListener('click', () => this.choosePreset(preset.id));
        return button;
      }),
    );
  }

  choosePreset(id, { keepFields = false } = {}) {
    const preset = LLM_PRESETS.find((entry) => entry.id === id) ?? LLM_PRESETS[0];
    this.preset = preset;
    for (const button of $('setup-llm-presets').children) {
      button.setAttribute('aria-pressed', String(button.dataset.preset === preset.id));
    }
    const demo = preset.provider === 'mock';
    $('setup-llm-fields').hidden = demo;
    if (keepFields) {
      $('setup-llm-base').value = this.running?.get('openai_base_url') ?? preset.base ?? '';
      $('setup-llm-model').value = this.running?.get('llm_model') ?? preset.model ?? '';
    } else if (!demo) {
      $('setup-llm-base').value = preset.base;
      $('setup-llm-model').value = preset.model;
      $('setup-llm-model').placeholder = preset.model ? '' : 'pick one after Test connection';
    }
    $('setup-llm-key').placeholder = preset.key ? 'paste your API key' : 'not needed for local servers';
    say($('setup-llm-result'), preset.hint.replace(/`/g, ''));
  }

  async testLlm() {
    const result = $('setup-llm-result');
    say(result, 'Testing…');
    const body = { baseUrl: $('setup-llm-base').value, model: $('setup-llm-model').value };
    if ($('setup-llm-key').value) body.apiKey = $('setup-llm-key').value;
    let answer;
    try {
      answer = await this.api.json('POST', '/settings/test/llm', body);
    } catch (error) {
      say(result, error.message, 'bad');
      return;
    }
    if (answer.ok) {
      $('setup-llm-models').replaceChildren(...answer.models.map((model) => new Option(model, model)));
      if (!$('setup-llm-model').value && answer.models.length > 0) {
        $('setup-llm-model').value = answer.models[0];
        answer.message += ` Using ${answer.models[0]}; change it above if you like.`;
      }
    }
    say(result, answer.message, answer.ok ? (answer.modelListed ? 'ok' : 'warn') : 'bad');
    this.observe({ kind: 'llm-test', ok: answer.ok, problem: answer.problem, models: answer.models });
  }

  saveLlm() {
    const result = $('setup-llm-result');
    if (this.preset.provider === 'mock') return this.put({ llm_provider: 'mock' }, result);
    const changes = {
      llm_provider: 'openai',
      openai_base_url: $('setup-llm-base').value.trim(),
      llm_model: $('setup-llm-model').value.trim(),
    };
    if ($('setup-llm-key').value) changes.openai_api_key = $('setup-llm-key').value;
    return this.put(changes, result);
  }

  // ---- the voice --------------------------------------------------------------------------------

  async loadVoices() {
    const provider = $('setup-voice-provider').value;
    const select = $('setup-voice');
    let answer;
    try {
      answer = await this.api.json('GET', `/voices?provider=${encodeURIComponent(provider)}`);
    } catch (error) {
      $('setup-voice-note').textContent = error.message;
      return;
    }
    const current = this.running?.get('tts_voice') ?? '';
    const lang = $('setup-lang').value;
    const options = [new Option('Automatic (by the language)', '')];
    // The stream's language first: that is the voice most streamers want.
    const voices = [...answer.voices].sort((a, b) => Number(b.lang === lang) - Number(a.lang === lang));
    for (const voice of voices) {
      if (voice.id === '') continue;
      options.push(new Option(voice.lang ? `${voice.label} (${voice.id})` : voice.label, voice.id));
    }
    select.replaceChildren(...options);
    select.value = voices.some((voice) => voice.id === current) ? current : '';
    $('setup-voice-note').textContent = answer.note ?? `${answer.voices.length} voices from ${answer.provider}.`;
    this.observe({ kind: 'voices', provider: answer.provider, count: answer.voices.length });
  }

  saveVoice(result) {
    return this.put({ tts_provider: $('setup-voice-provider').value, tts_voice: $('setup-voice').value }, result);
  }

  /** Saves the voice (a voice that does not start is refused), then speaks a sample through the relay. */
  async testVoice() {
    const result = $('setup-voice-result');
    say(result, 'Starting the voice…');
    if (!(await this.saveVoice(result))) {
      this.observe({ kind: 'voice-test', ok: false });
      return;
    }
    const lang = $('setup-lang').value;
    const text = SAMPLES[lang] ?? SAMPLES.en;
    let failed = null;
    try {
      const response = await fetch('/tts/speak', {
        method: 'POST',
        headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        body: JSON.stringify({ sessionId: 'setup', text }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        failed = body?.error?.message ?? `HTTP ${response.status}`;
      } else {
        await readSse(response.body, (name, data) => {
          if (name === 'error') failed = data.message;
        });
      }
    } catch (error) {
      failed = `Kotodama is not reachable (${error.message})`;
    }
    if (failed) {
      say(result, `The voice failed its test: ${failed}. Pick another voice or engine.`, 'bad');
    } else {
      say(result, `Spoken: “${text}” — heard in the app, and in OBS when the overlay plays audio.`, 'ok');
    }
    this.observe({ kind: 'voice-test', ok: !failed });
  }

  // ---- the character ------------------------------------------------------------------------------

  async loadPersonas() {
    let answer;
    try {
      answer = await this.api.json('GET', '/personas');
    } catch (error) {
      say($('setup-persona-errors'), error.message, 'bad');
      return;
    }
    const all = [...answer.saved.filter((persona) => !persona.error), ...answer.presets];
    $('setup-personas').replaceChildren(
      ...all.map((persona) => {
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'preset';
        button.dataset.persona = persona.id;
        button.textContent = persona.preset ? persona.name : `${persona.name} (saved)`;
        button.title = persona.style;
        button.addEventListener('click', () => this.choosePersona(persona));
        return button;
      }),
    );
    const broken = answer.saved.filter((persona) => persona.error).map((persona) => persona.error);
    say($('setup-persona-errors'), broken.join(' '), 'bad');
    this.observe({ kind: 'personas', count: all.length, broken });
  }

  choosePersona(persona) {
    this.persona = persona;
    $('setup-persona-name').value = persona.name;
    $('setup-persona-lang').value = persona.lang;
    $('setup-persona-style').value = persona.style;
    $('setup-persona-prompt').value = persona.systemPrompt;
    $('setup-persona-quick-ack').value = persona.quickAckMs ?? '';
    this.promptEdited = false;
    for (const button of $('setup-personas').children) {
      button.setAttribute('aria-pressed', String(button.dataset.persona === persona.id));
    }
  }

  /** Name, language and style make the prompt until the prompt itself is edited. */
  composePrompt() {
    if (this.promptEdited) return;
    const name = $('setup-persona-name').value.trim() || 'Kotodama';
    const lang = { zh: ' Always answer in Chinese.', ja: ' Always answer in Japanese.', en: ' Always answer in English.', ko: ' Always answer in Korean.' }[
      $('setup-persona-lang').value
    ] ?? ' Answer in the language you are spoken to.';
    $('setup-persona-prompt').value =
      `You are ${name}, a co-host on a live stream. ${$('setup-persona-style').value.trim()}${lang} Keep replies short and natural: they are read aloud.`;
  }

  /** The persona form's quick acknowledgment: a whole number of ms, or null (the global setting). */
  personaQuickAck() {
    const text = $('setup-persona-quick-ack').value.trim();
    return text === '' ? null : Math.round(Number(text));
  }

  async savePersona() {
    const result = $('setup-persona-result');
    const name = $('setup-persona-name').value.trim();
    const id = (name.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '') || this.persona?.id || 'persona').slice(0, 64);
    try {
      const answer = await this.api.json('PUT', `/personas/${encodeURIComponent(id)}`, {
        name,
        lang: $('setup-persona-lang').value,
        style: $('setup-persona-style').value.trim(),
        system_prompt: $('setup-persona-prompt').value.trim(),
        ...(this.personaQuickAck() === null ? {} : { quick_ack_ms: this.personaQuickAck() }),
      });
      say(result, `Saved as ${answer.file} in the data folder.`, 'ok');
      this.observe({ kind: 'persona-saved', file: answer.file });
    } catch (error) {
      say(result, error.message, 'bad');
      this.observe({ kind: 'persona-saved', error: error.message });
    }
  }
}
