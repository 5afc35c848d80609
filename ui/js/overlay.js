// The OBS overlay (`/overlay?token=…`): shows the segment being spoken, fades after END or a
// STOP, optionally plays the audio itself (`&audio=1`), and reconnects by itself.
//
// Query parameters (all optional but the token):
//   session=<id>     only this session      audio=1        play audio in the page
//   font=<family>    size=<px>              color=<css>    stroke=<px>   strokeColor=<css>
//   position=bottom|top|middle             align=center|left|right       bg=<css color>
//   width=<% of page>  hold=<ms after END>  fade=<ms>      status=1 (show connection state)
//   preview=1 (the panel's look preview: a sample line; not counted as an overlay)
//   asked=0          hide the chat message being answered (shown above the subtitle by default)
// Subtitles appear when a segment's first chunk arrives: the relay paces chunks in real time
// (CONTRACTS §2), so that is when the segment starts to be heard. With in-page audio they wait
// for the chunk's scheduled start instead.

import { LiveSocket, decodeBase64Pcm } from './live.js';
import { PcmPlayer } from './player.js';
import { takeToken } from './token.js';

const params = new URLSearchParams(window.location.search);
const token = takeToken({ strip: false });
const session = params.get('session') || '';
const playAudio = params.get('audio') === '1';
const showStatus = params.get('status') === '1';
const holdMs = clampNumber(params.get('hold'), 0, 60_000, 1500);
/** `preview=1`: the panel's look preview; shows a sample line until something is spoken. */
const preview = params.get('preview') === '1';
const PREVIEW_TEXT = params.get('sample') || 'This is how your subtitles look on stream.';
const showAsked = params.get('asked') !== '0';
/** How long the asked line stays without any speech (text-only answers have no END here). */
const ASKED_ALONE_MS = 15_000;

const stage = document.getElementById('stage');
const subtitle = document.getElementById('subtitle');
const asked = document.getElementById('asked');
/** The chat message on screen: {sessionId, messageId}, until its answer ends or is retracted. */
let askedShowing = null;
let askedTimer = null;
const notice = document.getElementById('notice');
const noticeTitle = document.getElementById('notice-title');
const noticeText = document.getElementById('notice-text');

const player = playAudio ? new PcmPlayer() : null;
/** The last turn whose END came (its subtitle fades after its audio). */
let ended = null;
/** Per session: the highest turn ended by STOP/STOP_ACK (its frames are ignored). */
const fences = new Map();
/** Timers of subtitles waiting for their audio, and of the fade after END. */
let pendingShows = [];
let hideTimer = null;
/** The (session, turn) the current subtitle belongs to. */
let showing = null;

// A test/debug hook: state to read, and an observer a test can install (page.exposeFunction)
// to see every frame and effect in order. Nothing is recorded when no observer is installed.
const hook = {
  state: 'starting',
  connections: 0,
  subtitle: () => (subtitle.classList.contains('visible') ? subtitle.textContent : ''),
  asked: () => (asked.classList.contains('visible') ? asked.textContent : ''),
  notice: () => (notice.hidden ? '' : notice.textContent.trim()),
  /** Seconds of audio on the clock, and held by a pause, for `session`. */
  audio: (session) => ({
    scheduled: player?.remaining() ?? 0,
    held: player?.heldSeconds(session) ?? 0,
    paused: player?.paused(session) ?? false,
  }),
};
window.__koto = hook;
function observe(event) {
  if (typeof window.__kotoObserve === 'function') {
    window.__kotoObserve({ t: performance.now(), ...event });
  }
}

applyLook();
if (preview) showPreview();

/** The sample line of the preview, drawn like a real subtitle. */
function showPreview() {
  subtitle.textContent = PREVIEW_TEXT.slice(0, 200);
  subtitle.classList.remove('stopped');
  subtitle.classList.add('visible');
}

function clampNumber(raw, min, max, fallback) {
  const value = Number.parseFloat(raw ?? '');
  return Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : fallback;
}

/** The look from the URL, through CSS custom properties (CSSOM is allowed by the CSP). */
function applyLook() {
  const root = document.documentElement.style;
  const color = (name, property) => {
    const value = params.get(name);
    if (value && CSS.supports('color', value)) root.setProperty(property, value);
  };
  const font = params.get('font');
  if (font && /^[\w\s,"'-]{1,120}$/u.test(font)) {
    root.setProperty('--font', `${font}, system-ui, sans-serif`);
  }
  if (params.has('size')) root.setProperty('--size', `${clampNumber(params.get('size'), 8, 300, 42)}px`);
  if (params.has('stroke')) root.setProperty('--stroke', `${clampNumber(params.get('stroke'), 0, 30, 3)}px`);
  if (params.has('width')) root.setProperty('--width', `${clampNumber(params.get('width'), 10, 100, 90)}vw`);
  if (params.has('fade')) root.setProperty('--fade-ms', `${clampNumber(params.get('fade'), 0, 10_000, 400)}ms`);
  color('color', '--color');
  color('strokeColor', '--stroke-color');
  color('bg', '--bg');
  const align = params.get('align');
  if (['left', 'center', 'right'].includes(align)) root.setProperty('--align', align);
  const position = params.get('position');
  if (['top', 'middle', 'bottom'].includes(position)) {
    stage.classList.remove('position-bottom');
    stage.classList.add(`position-${position}`);
  }
}

function showNotice(title, text, { info = false } = {}) {
  noticeTitle.textContent = title;
  noticeText.textContent = text;
  notice.classList.toggle('info', info);
  notice.hidden = false;
}

function hideNotice() {
  notice.hidden = true;
}

function isFenced(sessionId, turn) {
  const fence = fences.get(sessionId);
  return fence !== undefined && turn <= fence;
}

function cancelPending() {
  for (const timer of pendingShows) clearTimeout(timer);
  pendingShows = [];
  clearTimeout(hideTimer);
  hideTimer = null;
}

function show(text, sessionId, turn) {
  if (isFenced(sessionId, turn)) return;
  clearTimeout(hideTimer);
  hideTimer = null;
  subtitle.textContent = text;
  subtitle.classList.remove('stopped');
  subtitle.classList.add('visible');
  showing = { sessionId, turn };
  observe({ kind: 'subtitle', text, sessionId, turn });
}

function hide(reason) {
  subtitle.classList.toggle('stopped', reason === 'stop');
  subtitle.classList.remove('visible');
  showing = null;
  observe({ kind: 'hide', reason });
  // The preview goes back to its sample once a real line has faded.
  if (preview) setTimeout(showPreview, 600);
  hideAsked(reason);
}

/** A picked chat message shows above the subtitle; its retraction (or the answer's end) hides it. */
function onChatDecision(frame) {
  if (!showAsked) return;
  if (frame.decision === 'picked') {
    const who = frame.userName ? `${frame.userName}: ` : '';
    asked.textContent = `${who}${frame.text ?? ''}`;
    asked.classList.add('visible');
    askedShowing = { sessionId: frame.sessionId, messageId: frame.messageId };
    clearTimeout(askedTimer);
    askedTimer = setTimeout(() => hideAsked('alone'), ASKED_ALONE_MS);
    observe({ kind: 'asked', text: asked.textContent, messageId: frame.messageId });
  } else if (frame.decision === 'retracted' && askedShowing?.messageId === frame.messageId) {
    hideAsked('retracted');
  }
}

function hideAsked(reason) {
  if (!askedShowing) return;
  clearTimeout(askedTimer);
  asked.classList.remove('visible');
  observe({ kind: 'asked-hide', reason, messageId: askedShowing.messageId });
  askedShowing = null;
}

function onSpeechChunk(chunk) {
  if (isFenced(chunk.sessionId, chunk.turn)) return;
  const text = chunk.segment?.text;
  const { sessionId, turn, seq } = chunk;
  if (!player) {
    if (text) show(text, sessionId, turn);
    return;
  }
  const samples = chunk.samples ?? decodeBase64Pcm(chunk.pcm);
  // Told when the chunk is on the audio clock: now, or at RESUME when a pause holds it. The
  // subtitle shows as its audio starts, never while a barge-in holds the voice.
  const started = (startAt) => {
    observe({ kind: 'audio', sessionId, turn, seq });
    if (text) showAt(text, sessionId, turn, startAt);
  };
  const startAt = player.play(sessionId, turn, samples, chunk.sampleRate ?? 24000, started);
  if (startAt === null && text && !player.paused(sessionId)) show(text, sessionId, turn);
  if (player.blocked) {
    showNotice('Audio is blocked by the browser', 'Click the page once to allow sound (OBS plays it without a click).', { info: true });
  }
}

/** Shows `text` when the audio clock reaches `startAt`. */
function showAt(text, sessionId, turn, startAt) {
  const delayMs = Math.max(0, (startAt - player.context.currentTime) * 1000);
  if (delayMs < 5) {
    show(text, sessionId, turn);
    return;
  }
  const timer = setTimeout(() => {
    pendingShows = pendingShows.filter((t) => t !== timer);
    show(text, sessionId, turn);
  }, delayMs);
  pendingShows.push(timer);
}

function onControl(frame) {
  const { action, sessionId, turn } = frame;
  if (action === 'STOP' || action === 'STOP_ACK') {
    // STOP silences at once; STOP_ACK names the last turn, after which nothing of it may show.
    const fenceTurn = turn ?? (showing?.sessionId === sessionId ? showing.turn : undefined);
    if (fenceTurn !== undefined) {
      fences.set(sessionId, Math.max(fences.get(sessionId) ?? -1, fenceTurn));
    }
    player?.stop(sessionId, fenceTurn);
    if (!showing || showing.sessionId === sessionId) {
      cancelPending();
      hide('stop');
    }
  } else if (action === 'PAUSE') {
    // A voice barge-in: the voice holds where it is, and so do subtitles not yet shown (they
    // show again with their audio at RESUME).
    player?.pause(sessionId);
    if (player) cancelPending();
    observe({ kind: 'paused', sessionId, heldS: player?.heldSeconds(sessionId) ?? 0 });
  } else if (action === 'RESUME') {
    player?.resume(sessionId);
    // An END that came before the pause: its fade starts again after the audio left.
    if (ended?.sessionId === sessionId) fadeAfterAudio(sessionId, ended.turn);
    observe({ kind: 'resumed', sessionId });
  } else if (action === 'END') {
    ended = { sessionId, turn };
    if (!player?.paused(sessionId)) fadeAfterAudio(sessionId, turn);
  }
}

/** The turn's audio is all out: its subtitle fades once it has been heard. */
function fadeAfterAudio(sessionId, turn) {
  if (showing && showing.sessionId === sessionId && showing.turn === turn) {
    // Fade once the audio has been heard: locally scheduled audio, or the relay's lead.
    const tailMs = (player?.remaining() ?? 0) * 1000;
    clearTimeout(hideTimer);
    hideTimer = setTimeout(() => hide('end'), tailMs + holdMs);
  }
}

function onFrame(frame) {
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
  if (session && frame.sessionId !== session) return;
  if (frame.type === 'SPEECH_CHUNK') {
    // The asked line stays while its answer is spoken (the subtitle's own hide ends it).
    if (askedShowing?.sessionId === frame.sessionId) clearTimeout(askedTimer);
    onSpeechChunk(frame);
  } else if (frame.type === 'CONTROL') onControl(frame);
  else if (frame.type === 'CHAT_DECISION') onChatDecision(frame);
}

function onState(state, detail) {
  hook.state = state;
  observe({ kind: 'state', state, ...detail });
  switch (state) {
    case 'open':
      hook.connections = detail.connections;
      hideNotice();
      break;
    case 'token_missing':
      showNotice('Kotodama overlay: no access token', 'The URL has no ?token=…: copy the overlay URL again from the app (Copy overlay URL).');
      break;
    case 'token_rejected':
      showNotice('Kotodama overlay: token rejected', 'Copy the overlay URL again from the app (Copy overlay URL) and paste it into this browser source.');
      break;
    case 'refused':
      showNotice('Kotodama overlay: connection refused', detail.message);
      break;
    case 'unreachable':
      if (showStatus) showNotice('Kotodama is not running', `Retrying in ${Math.ceil(detail.retryInMs / 1000)} s…`, { info: true });
      break;
    case 'reconnecting':
      // The stream is live: say nothing on screen unless asked to (status=1).
      if (showStatus) showNotice('Reconnecting to Kotodama', `Retrying in ${Math.ceil(detail.retryInMs / 1000)} s…`, { info: true });
      cancelPending();
      hide('disconnected');
      break;
    default:
      break;
  }
}

if (player) {
  // Browsers outside OBS start audio only after a gesture.
  window.addEventListener('pointerdown', () => {
    player.ensureContext();
    if (!player.blocked && notice.classList.contains('info')) hideNotice();
  });
}

new LiveSocket({
  token,
  session,
  audio: playAudio,
  binary: playAudio,
  // The panel's own preview is not an overlay in OBS: it must not count as one.
  role: preview ? 'preview' : 'overlay',
  onFrame,
  onState,
}).start();
