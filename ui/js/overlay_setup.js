// The OBS overlay's look: its 14 URL parameters (overlay.js reads them) as a small form, the
// URL to copy, and a live preview (an iframe of /overlay with the unsaved values and
// `preview=1`: a sample line, no sound, not counted as an overlay). Used by the panel's overlay
// card and by the first-run setup.

/** Every parameter overlay.js understands, with its default (a default is left out of the URL). */
export const LOOK = [
  { name: 'audio', label: 'Overlay plays the voice', kind: 'check', def: false, hint: 'OBS plays it; off when the app plays it here' },
  { name: 'session', label: 'Only this session', kind: 'check', def: false },
  { name: 'status', label: 'Show connection problems', kind: 'check', def: false },
  { name: 'size', label: 'Text size (px)', kind: 'number', def: '42', min: 8, max: 300 },
  { name: 'font', label: 'Font', kind: 'text', def: '', placeholder: 'system font' },
  { name: 'color', label: 'Text colour', kind: 'color', def: '#ffffff' },
  { name: 'stroke', label: 'Outline (px)', kind: 'number', def: '3', min: 0, max: 30 },
  { name: 'strokeColor', label: 'Outline colour', kind: 'color', def: '#000000' },
  { name: 'bg', label: 'Background', kind: 'text', def: '', placeholder: 'transparent' },
  { name: 'position', label: 'Position', kind: 'select', def: 'bottom', options: ['bottom', 'middle', 'top'] },
  { name: 'align', label: 'Alignment', kind: 'select', def: 'center', options: ['center', 'left', 'right'] },
  { name: 'width', label: 'Width (% of the source)', kind: 'number', def: '90', min: 10, max: 100 },
  { name: 'hold', label: 'Keep after speaking (ms)', kind: 'number', def: '1500', min: 0, max: 60000 },
  { name: 'fade', label: 'Fade (ms)', kind: 'number', def: '400', min: 0, max: 10000 },
];

const PREVIEW_DELAY_MS = 250;

/**
 * The overlay URL for `values` (name → string|boolean). Only what differs from the default is
 * written, so the URL stays short.
 */
export function overlayUrl(origin, token, values, { sessionId = '', preview = false } = {}) {
  const params = new URLSearchParams({ token });
  for (const spec of LOOK) {
    const value = values[spec.name];
    if (spec.kind === 'check') {
      if (!value) continue;
      if (spec.name === 'session') {
        if (sessionId) params.set('session', sessionId);
      } else if (!(preview && spec.name === 'audio')) {
        params.set(spec.name, '1');
      }
      continue;
    }
    const text = String(value ?? '').trim();
    if (text === '' || text === spec.def) continue;
    if (spec.kind === 'number') {
      const number = Number.parseFloat(text);
      if (!Number.isFinite(number)) continue;
      params.set(spec.name, String(Math.min(spec.max, Math.max(spec.min, number))));
    } else {
      params.set(spec.name, text);
    }
  }
  if (preview) params.set('preview', '1');
  return `${origin}/overlay?${params}`;
}

export class OverlayLook {
  /**
   * @param {object} options
   * @param {HTMLElement} options.form where the inputs go
   * @param {HTMLIFrameElement} [options.preview]
   * @param {HTMLInputElement} [options.urlField] shows the URL to copy
   * @param {string} options.token
   * @param {() => string} options.sessionId the panel's current session
   * @param {string} [options.idPrefix] keeps ids unique when two forms exist (setup + card)
   */
  constructor({ form, preview = null, urlField = null, token, sessionId, idPrefix = 'overlay' }) {
    this.form = form;
    this.preview = preview;
    this.urlField = urlField;
    this.token = token;
    this.sessionId = sessionId;
    this.inputs = new Map();
    this.timer = null;
    for (const spec of LOOK) form.append(this.field(spec, idPrefix));
    this.update();
  }

  field(spec, idPrefix) {
    const label = document.createElement('label');
    let input;
    if (spec.kind === 'select') {
      input = document.createElement('select');
      for (const option of spec.options) input.append(new Option(option, option));
      input.value = spec.def;
    } else {
      input = document.createElement('input');
      input.type = { check: 'checkbox', number: 'number', color: 'color', text: 'text' }[spec.kind];
      if (spec.kind === 'check') input.checked = spec.def;
      else input.value = spec.def;
      if (spec.kind === 'number') {
        input.min = String(spec.min);
        input.max = String(spec.max);
        input.inputMode = 'numeric';
      }
      if (spec.placeholder) input.placeholder = spec.placeholder;
    }
    input.id = `${idPrefix}-${spec.name}`;
    input.dataset.param = spec.name;
    if (spec.hint) label.title = spec.hint;
    if (spec.kind === 'check') {
      label.className = 'check';
      label.append(input, ` ${spec.label}`);
    } else {
      label.append(spec.label, input);
    }
    input.addEventListener('input', () => this.update());
    input.addEventListener('change', () => this.update());
    this.inputs.set(spec.name, input);
    return label;
  }

  values() {
    const values = {};
    for (const [name, input] of this.inputs) values[name] = input.type === 'checkbox' ? input.checked : input.value;
    return values;
  }

  url({ preview = false } = {}) {
    return overlayUrl(window.location.origin, this.token, this.values(), { sessionId: this.sessionId(), preview });
  }

  /** Redraws the URL at once and the preview shortly after (typing a size reloads it once). */
  update() {
    if (this.urlField) this.urlField.value = this.url();
    if (!this.preview) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refreshPreview(), PREVIEW_DELAY_MS);
  }

  refreshPreview() {
    if (!this.preview) return;
    const url = this.url({ preview: true });
    if (this.preview.dataset.src !== url) {
      this.preview.dataset.src = url;
      this.preview.src = url;
    }
  }
}
