// The control panel (`/?token=…`): transcript (stored history + live turns), input,
// push-to-interrupt, sessions, status, settings, overlay URL. It runs in the desktop app's window and in any browser on the same
// URL. In the app the audio plays in Rust, so the panel never plays audio unless the user
// asks for it in a plain browser ("Play audio here").

import { Api } from './api.js';
import { ChatView } from './chat.js';
import { HelpCard, showVoiceWarning } from './help.js';
import { LiveSocket } from './live.js';
import { OverlayLook } from './overlay_setup.js';
import { MicPanel } from './mic.js';
import { PcmPlayer } from './player.js';
import { Sessions, sessionIdProblem, suggestSessionId } from './sessions.js';
import { SettingsForm } from './settings.js';
import { Setup } from './setup.js';
import { StatusBar } from './status.js';
import { takeToken } from './token.js';
import { Transcript } from './transcript.js';
import { VetoBar } from './veto.js';

/** A STOP over the socket not answered (STOP or STOP_ACK) within this goes over HTTP too. */
const STOP_FALLBACK_MS = 400;
/** Stored turns per history page (the API allows up to 200). */
const HISTORY_PAGE = 50;

const $ = (id) => document.getElementById(id);
const token = takeToken({ strip: true });
/** Tauri injects `window.__TAURI__` (withGlobalTauri) into the app's window only. */
const inDesktopApp = typeof window.__TAURI__ === 'object' && window.__TAURI__ !== null;

// Test/debug hook, as in the overlay: state to read, and an optional observer.
const hook = { state: 'starting', token: Boolean(token), desktop: inDesktopApp };
window.__koto = hook;
function observe(event) {
  if (typeof window.__kotoObserve === 'function') {
    window.__kotoObserve({ t: performance.now(), ...event });
  }
}

if (!token) {
  const fatal = $('fatal');
  fatal.hidden = false;
  fatal.textContent =
    'No access token. Open the panel from the Kotodama app, or use the URL that `kotodama serve` prints ' +
    '(http://127.0.0.1:<port>/?token=…; the token is also in <data dir>/token).';
}

const api = new Api(token);
const transcript = new Transcript($('transcript'), {
  load: (sessionId, { older }) => loadHistory(sessionId, { older }),
});
const chat = new ChatView({
  api,
  queue: $('chat-queue'),
  decisions: $('chat-decisions'),
  summary: $('chat-summary'),
  adapters: $('chat-adapters'),
  observe,
});
// Before the status bar and the session list: both call into it.
const mic = new MicPanel({ api, session: () => sessions.current, observe });
hook.mic = mic;
/** Seconds of "play audio here" audio on the clock, and held by a pause, for `session`. */
hook.audio = (session) => ({
  scheduled: player?.remaining() ?? 0,
  held: player?.heldSeconds(session) ?? 0,
  paused: player?.paused(session) ?? false,
});
const status = new StatusBar(api, (health) => {
  transcript.speech = Boolean(health.tts);
  // Replies of the built-in demo LLM are marked as such.
  transcript.demo = health.llm?.provider === 'mock';
  mic.apply(health.mic ?? null);
  chat.adapters(health);
  showVoiceWarning($('audio-no-voice'), health);
});
new HelpCard(api, {
  open: $('logs-open'),
  copy: $('diagnostics-copy'),
  result: $('help-result'),
  text: $('diagnostics-text'),
});
let player = null;
/** Sends from this panel waiting for their USER_INPUT frame (to learn their turn number). */
const pending = [];
/** Sessions with a STOP in flight: resolve when STOP/STOP_ACK comes back. */
const stopWaiters = new Map();

const sessions = new Sessions($('session-select'), (id) => {
  showSession(id);
  updateOverlayUrl();
  mic.sessionChanged();
});

// ---- stored history ------------------------------------------------------------------------

/**
 * Loads one page of a session's stored turns into the transcript: the newest page, or with
 * `older` the page before the oldest turn drawn. `quiet`: no "loading" row (a catch-up).
 */
async function loadHistory(sessionId, { older = false, quiet = false } = {}) {
  if (!token) return;
  const before = older ? transcript.oldestTurn(sessionId) : undefined;
  if (!quiet) transcript.historyLoading(sessionId);
  try {
    const page = await api.history(sessionId, { before, limit: HISTORY_PAGE });
    transcript.addHistory(sessionId, page, { older });
    observe({ kind: 'history', sessionId, older, turns: page.turns.map((turn) => turn.turn), more: page.more });
  } catch (error) {
    transcript.historyFailed(sessionId, error.message, { older });
    observe({ kind: 'history-error', sessionId, code: error.code, message: error.message });
  }
}

/** Tries to read an interrupted turn's stored ending this many times, this far apart. */
const SETTLE_TRIES = 10;
const SETTLE_EVERY_MS = 300;

/**
 * After a STOP_ACK: the store records what was heard (cut at a word boundary) once the turn
 * has ended; read it, so the live view shows the same cut a reload would.
 */
async function settleInterrupted(sessionId, number) {
  for (let attempt = 0; attempt < SETTLE_TRIES; attempt += 1) {
    if (!transcript.needsStoredCut(sessionId, number)) return;
    try {
      const page = await api.history(sessionId, { before: number + 1, limit: 1 });
      transcript.addHistory(sessionId, page);
    } catch {
      // The live cut stays; a reload shows the stored one.
    }
    if (!transcript.needsStoredCut(sessionId, number)) {
      observe({ kind: 'settled', sessionId, turn: number });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, SETTLE_EVERY_MS));
  }
}

/** Draws a session: what is already known at once, then its stored turns. */
function showSession(id) {
  // Marked loading first, so an empty session does not say "no messages" before we know.
  if (token) transcript.historyLoading(id);
  transcript.show(id);
  loadHistory(id);
}
showSession(sessions.current);

// ---- live socket -------------------------------------------------------------------------

const veto = new VetoBar(api, $('dock-extra'));
const live = new LiveSocket({
  token,
  audio: false,
  binary: false,
  role: 'panel',
  onFrame: (frame) => {
    observe({
      kind: 'frame',
      type: frame.type,
      action: frame.action,
      sessionId: frame.sessionId,
      turn: frame.turn,
      seq: frame.seq,
      segment: frame.segment?.text,
      audioBytes: frame.samples ? frame.samples.length * 2 : (frame.pcm?.length ?? 0),
    });
    if (frame.type === 'ERROR') {
      $('interrupt-result').textContent = `Refused: ${frame.message}`;
      return;
    }
    // The mic's frames are the card's alone (its session is not a conversation to list).
    if (mic.onFrame(frame)) return;
    if (frame.sessionId) sessions.add(frame.sessionId);
    if (frame.type === 'USER_INPUT') {
      const index = pending.findIndex(
        (send) => send.sessionId === frame.sessionId && send.content === frame.content && send.turn === undefined,
      );
      if (index >= 0) pending[index].turn = frame.turn;
    }
    if (frame.type === 'CONTROL' && (frame.action === 'STOP' || frame.action === 'STOP_ACK')) {
      stopWaiters.get(frame.sessionId)?.();
      if (frame.action === 'STOP_ACK') player?.stop(frame.sessionId, frame.turn);
    }
    if (frame.type === 'CONTROL' && frame.action === 'PAUSE') player?.pause(frame.sessionId);
    if (frame.type === 'CONTROL' && frame.action === 'RESUME') player?.resume(frame.sessionId);
    if (frame.type === 'SPEECH_CHUNK' && player && frame.samples) {
      player.play(frame.sessionId, frame.turn, frame.samples, frame.sampleRate ?? 24000);
    }
    chat.apply(frame);
    veto.apply(frame);
    const touched = transcript.apply(frame);
    if (frame.type === 'CONTROL' && frame.action === 'STOP_ACK' && touched) {
      settleInterrupted(frame.sessionId, touched.turn);
    }
  },
  onState: (state, detail) => {
    hook.state = state;
    observe({ kind: 'state', state, ...detail });
    status.live(state, detail);
    if (state === 'token_rejected') {
      const fatal = $('fatal');
      fatal.hidden = false;
      fatal.textContent =
        'The access token was rejected. Open the panel again from the app, or with the URL `kotodama serve` printed.';
    } else if (state === 'open') {
      $('fatal').hidden = Boolean(token);
      if (detail.connections > 1) {
        // Back after a drop: frames sent meanwhile are lost, the store has them.
        loadHistory(sessions.current, { quiet: true });
        loadRecentSessions();
      }
    }
  },
});
if (token) {
  live.start();
  status.start();
  chat.start();
}

// ---- sending -------------------------------------------------------------------------------

function parseInput(text) {
  if (text.startsWith('/')) {
    const command = text.slice(1).trim();
    return { type: 'COMMAND', content: command };
  }
  return { type: 'TEXT', content: text };
}

// The language picker: sent as `meta.lang` with every input; `auto` sends none (the server then
// goes by the reply's script and its `default_lang`). Remembered in this browser.
const LANG_KEY = 'kotodama.lang';
const langPicker = $('composer-lang');
langPicker.value = localStorage.getItem(LANG_KEY) ?? 'auto';
if (langPicker.selectedIndex < 0) langPicker.value = 'auto';
langPicker.addEventListener('change', () => localStorage.setItem(LANG_KEY, langPicker.value));

async function send(text) {
  const errorLine = $('composer-error');
  errorLine.textContent = '';
  const sessionId = sessions.current;
  const { type, content } = parseInput(text);
  const record = { sessionId, content, turn: undefined };
  if (type === 'TEXT') pending.push(record);
  const request = { sessionId, type, content };
  if (langPicker.value !== 'auto') request.meta = { lang: langPicker.value };
  let failedMidStream = null;
  try {
    await api.chat(request, (name, data) => {
      observe({ kind: 'sse', name, data });
      if (name === 'error') {
        failedMidStream = `${data.message} (${data.code})`;
        errorLine.textContent = `The reply failed: ${failedMidStream}`;
        if (record.turn !== undefined) transcript.fail(sessionId, record.turn, failedMidStream);
      } else if (name === 'done') {
        status.turn(data.stats ?? {});
        // The picker's turn counts.
        loadRecentSessions();
      }
    });
  } catch (error) {
    errorLine.textContent = `Not sent: ${error.message}${error.code ? ` (${error.code})` : ''}`;
    observe({ kind: 'send-error', code: error.code, message: error.message });
    return false;
  } finally {
    const index = pending.indexOf(record);
    if (index >= 0) pending.splice(index, 1);
  }
  return true;
}

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('composer-input');
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  send(text);
});

$('composer-input').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    // isComposing: Enter that confirms a Japanese/Chinese IME candidate must not send.
    event.preventDefault();
    $('composer').requestSubmit();
  }
});

// ---- push to interrupt ---------------------------------------------------------------------

async function stopOverHttp(sessionId) {
  try {
    const answer = await api.json('POST', '/control/stop', { sessionId });
    $('interrupt-result').textContent = answer.stopped?.length
      ? `Stopped turn ${answer.stopped.join(', ')} (HTTP).`
      : 'Nothing was talking.';
  } catch (error) {
    $('interrupt-result').textContent = `STOP failed: ${error.message}`;
  }
}

async function interrupt() {
  const sessionId = sessions.current;
  const button = $('interrupt');
  button.classList.add('pressed');
  setTimeout(() => button.classList.remove('pressed'), 150);
  // Silence this tab's own audio at once; the STOP_ACK fences the turn.
  player?.stop(sessionId);
  observe({ kind: 'interrupt', sessionId });
  const answered = new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), STOP_FALLBACK_MS);
    stopWaiters.set(sessionId, () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  const sent = live.send({ type: 'CONTROL', action: 'STOP', sessionId, reason: 'user_interrupt' });
  if (!sent) {
    stopWaiters.delete(sessionId);
    await stopOverHttp(sessionId);
    return;
  }
  const ok = await answered;
  stopWaiters.delete(sessionId);
  if (ok) {
    $('interrupt-result').textContent = 'Stopped.';
  } else {
    // No answer over the socket (nothing was playing, or the socket is stuck): HTTP is the
    // fallback, and a STOP when nothing runs is harmless.
    await stopOverHttp(sessionId);
  }
}

$('interrupt').addEventListener('click', interrupt);
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && !event.repeat) {
    event.preventDefault();
    interrupt();
  }
});

// ---- sessions ------------------------------------------------------------------------------

$('session-new-id').value = '';
$('session-new-id').placeholder = suggestSessionId();
$('session-new').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('session-new-id');
  const id = input.value.trim() || input.placeholder;
  const problem = sessionIdProblem(id);
  $('session-new-error').textContent = problem;
  input.setAttribute('aria-invalid', problem ? 'true' : 'false');
  if (problem) return;
  input.value = '';
  input.placeholder = suggestSessionId();
  sessions.choose(id);
});
$('session-new-id').addEventListener('input', () => {
  $('session-new-error').textContent = '';
  $('session-new-id').removeAttribute('aria-invalid');
});

async function loadRecentSessions() {
  try {
    const answer = await api.sessions();
    sessions.addRecent(answer.sessions ?? []);
  } catch {
    // The list is a convenience for the picker; the panel works without it.
  }
}
if (token) loadRecentSessions();

// ---- audio in this tab (browser only) --------------------------------------------------------

/**
 * "Play audio here" only where it does something: not in the desktop app's window, and not in
 * any tab of a desktop app that plays the voice itself (Rust plays it; a tab would double it).
 * The server's `/desktop` answer decides, as the Tauri global may be absent in the window.
 */
function showAudioChoice(rustPlays) {
  $('audio-app').hidden = !rustPlays;
  $('audio-here-label').hidden = rustPlays;
  hook.audioHere = !rustPlays;
  if (rustPlays && $('audio-here').checked) {
    $('audio-here').checked = false;
    player?.close();
    player = null;
    live.reconfigure({ audio: false, binary: false });
  }
}
showAudioChoice(inDesktopApp);
status.onDesktop = (desktop) => {
  showAudioChoice(inDesktopApp || Boolean(desktop.available && desktop.status?.playback));
  mic.showHotkey(desktop.status?.pttHotkey);
};
$('audio-here').addEventListener('change', (event) => {
  const on = event.target.checked;
  if (on) {
    // The click is the user gesture browsers need before audio may start.
    player = new PcmPlayer();
    player.ensureContext();
  } else {
    player?.close();
    player = null;
  }
  live.reconfigure({ audio: on, binary: on });
});

// ---- overlay URL -----------------------------------------------------------------------------

const overlayLook = new OverlayLook({
  form: $('overlay-options'),
  urlField: $('overlay-url'),
  token,
  sessionId: () => sessions.current,
});
const overlayUrl = () => overlayLook.url();
function updateOverlayUrl() {
  overlayLook.update();
}
// The preview (a second /ws/live client) runs only while it is open.
$('overlay-look').addEventListener('toggle', () => {
  if ($('overlay-look').open) {
    overlayLook.preview = $('overlay-preview');
    overlayLook.refreshPreview();
  } else {
    overlayLook.preview = null;
    $('overlay-preview').removeAttribute('src');
    delete $('overlay-preview').dataset.src;
  }
});

$('overlay-copy').addEventListener('click', async () => {
  const url = overlayUrl();
  const note = $('overlay-copied');
  try {
    await navigator.clipboard.writeText(url);
    note.textContent = 'Copied. Paste it into an OBS Browser source.';
  } catch {
    // Clipboard API refused (permissions): select the text for Ctrl+C instead.
    const input = $('overlay-url');
    input.focus();
    input.select();
    note.textContent = 'Press Ctrl+C to copy the selected URL.';
  }
});

// ---- settings --------------------------------------------------------------------------------

const settings = new SettingsForm(api, $('settings'));
if (token) settings.load();

// ---- first-run setup -------------------------------------------------------------------------

const setup = new Setup(api, {
  token,
  sessionId: () => sessions.current,
  onSaved: () => {
    settings.load();
    status.pollHealth();
  },
  observe,
});
if (token) setup.maybeOpen();
