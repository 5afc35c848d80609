// A panel that tells the truth: settings in a streamer's words, an overlay count that counts
// only OBS overlays (not the panel, not the look preview), chips that grey out when the server
// is gone, no "Play audio here" where Rust plays the audio, the sentence being spoken
// highlighted, and an interrupted reply cut the same live and after a reload.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { WAIT_MS, call, launchBrowser, observedPage, screenshot, sharedServer, startServer } from './harness.js';

let server;
let browser;

before(async () => {
  server = await sharedServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const isFrame = (type, extra = {}) => (event) =>
  event.kind === 'frame' && event.type === type && Object.entries(extra).every(([key, value]) => event[key] === value);

async function openPanel(target, name = 'panel') {
  const panel = await observedPage(browser, name);
  await panel.page.goto(`${target.url}/?token=${target.token}`);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  await panel.page.locator('#setting-llm_model').waitFor({ timeout: WAIT_MS });
  return panel;
}

const chipText = (page, id) => page.textContent(`#${id}`);

test('settings are grouped, labelled in words, internals folded under Advanced', async () => {
  const panel = await openPanel(server);
  const groups = await panel.page.$$eval('#settings-fields [data-group]', (nodes) =>
    nodes.map((node) => ({ id: node.dataset.group, title: node.querySelector('legend, summary').textContent })),
  );
  assert.deepEqual(groups.map((group) => group.title), ['Voice', 'Brain', 'Character', 'Stream', 'Advanced']);
  const groupOf = (key) =>
    panel.page.$eval(`[data-key="${key}"]`, (node) => node.closest('[data-group]').dataset.group);
  assert.equal(await groupOf('redis_url'), 'advanced');
  assert.equal(await groupOf('outbox_batch'), 'advanced');
  assert.equal(await groupOf('tts_voice'), 'voice');
  assert.equal(await groupOf('system_prompt'), 'character');
  assert.equal(await panel.page.getAttribute('[data-group="advanced"]', 'open'), null, 'Advanced starts folded');
  // A plain label, the env name beside it as a hint.
  const label = await panel.page.textContent('[data-key="llm_model"] > label');
  assert.match(label, /^Model/);
  assert.equal(await panel.page.textContent('[data-key="llm_model"] .env'), 'LLM_MODEL');
  // Flags in words, not snake_case.
  const flag = await panel.page.textContent('[data-key="sync_tts_streaming"] > label');
  assert.match(flag, /Speak replies aloud/);
  assert.doesNotMatch(flag.replace('SYNC_TTS_STREAMING', ''), /sync_tts_streaming/);
  // No literal backticks in any doc line; code spans are <code>.
  const docs = await panel.page.$$eval('.field .doc', (nodes) => nodes.map((node) => node.textContent));
  assert.ok(docs.length > 30);
  assert.ok(docs.every((doc) => !doc.includes('`')), 'no backtick is shown');
  assert.ok((await panel.page.$$('[data-key="tts_provider"] .doc code')).length > 0, 'values as code');
  assert.deepEqual(panel.problems, []);
  await panel.context.close();
});

test('the overlay chip counts only OBS overlays; the preview reflects the unsaved look', async () => {
  const panel = await openPanel(server);
  const overlays = () => chipText(panel.page, 'status-overlays');
  await panel.page.waitForFunction(() => /overlays: \d/.test(document.getElementById('status-overlays').textContent), null, {
    timeout: WAIT_MS,
  });
  const before = await overlays();

  // The look preview is a page of /overlay too, but not one in OBS.
  await panel.page.click('#overlay-look > summary');
  await panel.page.fill('#overlay-size', '64');
  await panel.page.fill('#overlay-color', '#ffcc00');
  const frameUrl = await panel.page.waitForFunction(
    () => {
      const src = document.getElementById('overlay-preview').getAttribute('src') ?? '';
      // Both unsaved changes, size and colour, may reach the preview in separate updates.
      return /size=64/.test(src) && /color=%23ffcc00/.test(src) && /preview=1/.test(src) ? src : false;
    },
    null,
    { timeout: WAIT_MS },
  );
  const src = await frameUrl.jsonValue();
  assert.match(src, /color=%23ffcc00/, 'the unsaved colour is in the preview');
  const preview = panel.page.frameLocator('#overlay-preview');
  await preview.locator('#subtitle.visible').waitFor({ timeout: WAIT_MS });
  const size = await preview.locator('#subtitle').evaluate((node) => getComputedStyle(node).fontSize);
  assert.equal(size, '64px', 'the preview draws the look');
  const copied = await panel.page.inputValue('#overlay-url');
  assert.match(copied, /size=64/);
  assert.doesNotMatch(copied, /preview=1/, 'the URL for OBS is not a preview');
  await screenshot(panel.page, 'panel-overlay-preview');

  // A real overlay counts.
  const overlay = await observedPage(browser, 'overlay');
  await overlay.page.goto(copied);
  await overlay.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'overlay socket' });
  const count = (text) => Number(/overlays: (\d+)/.exec(text)?.[1] ?? NaN);
  const base = count(before);
  await panel.page.waitForFunction(
    (want) => document.getElementById('status-overlays').textContent === `overlays: ${want}`,
    base + 1,
    { timeout: WAIT_MS },
  );
  await overlay.context.close();
  await panel.page.waitForFunction(
    (want) => document.getElementById('status-overlays').textContent === `overlays: ${want}`,
    base,
    { timeout: WAIT_MS },
  );
  assert.equal(base, 0, 'neither the panel nor its preview is an overlay');
  assert.deepEqual(panel.problems, []);
  await panel.context.close();
});

test('when the server is gone, every chip greys out and says since when', async (t) => {
  const own = await startServer();
  // A failed wait must not leave this server running: the runner would wait on it forever.
  t.after(() => own.stop());
  const panel = await openPanel(own);
  // Health was drawn (the mock TTS is a warning: a test tone, not a voice); events is green.
  await panel.page.waitForFunction(() => document.querySelector('#status-tts.warn') && document.querySelector('#status-events.ok'), null, { timeout: WAIT_MS });
  await own.stop();
  await panel.page.waitForFunction(
    () => /disconnected since \d\d:\d\d:\d\d/.test(document.getElementById('status-live').textContent),
    null,
    { timeout: WAIT_MS },
  );
  const tones = await panel.page.$$eval('#status .chip', (chips) => chips.map((chip) => `${chip.id}:${chip.className}`));
  assert.ok(!tones.some((tone) => / ok\b/.test(tone)), `no green chip left: ${tones}`);
  assert.ok(tones.filter((tone) => /stale/.test(tone)).length >= 4, `greyed: ${tones}`);
  await screenshot(panel.page, 'panel-disconnected');
  await panel.context.close();
});

test('"Play audio here" is not offered where the desktop app plays the voice', async () => {
  const panel = await observedPage(browser, 'panel');
  // The desktop app's answer, as the app's window would get it.
  await panel.page.route('**/desktop', (route) =>
    route.fulfill({
      contentType: 'application/json',
      body: JSON.stringify({
        available: true,
        status: { playback: { status: { device: 'Speakers', nullSink: false }, volume: 1 }, hotkey: null },
      }),
    }),
  );
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.page.waitForFunction(() => window.__koto.audioHere === false, null, { timeout: WAIT_MS });
  assert.equal(await panel.page.isVisible('#audio-here'), false, 'hidden: Rust plays it');
  assert.equal(await panel.page.isVisible('#audio-app'), true, 'and the card says why');
  await panel.context.close();
});

test('the sentence being spoken is highlighted; an interrupted reply reads the same live and after a reload', async () => {
  const panel = await openPanel(server);
  const session = `truth-${Date.now()}`;
  await panel.page.fill('#session-new-id', session);
  await panel.page.click('#session-new button');
  const from = panel.events.length;
  await panel.page.fill('#composer-input', 'Tell me a long story about the stream');
  await panel.page.press('#composer-input', 'Enter');
  const { event: input } = await panel.waitFor(isFrame('USER_INPUT', { sessionId: session }), { from, what: 'USER_INPUT' });
  const item = `#transcript li[data-turn="${input.turn}"]`;
  // The mock LLM writes faster than the mock voice speaks: the first sentence is being spoken
  // while the rest is written.
  await panel.page.waitForSelector(`${item} .text mark.speaking`, { timeout: WAIT_MS });
  const speaking = await panel.page.textContent(`${item} .text mark.speaking`);
  const segment = panel.events.find((event) => isFrame('SPEECH_CHUNK', { turn: input.turn })(event) && event.segment);
  assert.ok(speaking.trim().length > 0 && segment, 'a sentence is marked');
  assert.equal(speaking.replace(/\s+/g, ''), segment.segment.replace(/\s+/g, ''), 'the marked text is the segment being spoken');
  await screenshot(panel.page, 'panel-speaking');
  assert.equal(await panel.page.textContent(`${item} .badge.demo`), 'demo', 'a demo reply says so');

  await panel.page.click('#interrupt');
  await panel.waitFor((event) => event.kind === 'settled' && event.turn === input.turn, { from, what: 'the stored cut' });
  const live = await panel.page.textContent(`${item} .bubble.ai .text`);
  const stored = await call(server, 'GET', `/sessions/${session}/history`);
  const entry = stored.json.turns.find((turn) => turn.turn === input.turn);
  assert.equal(entry.status, 'interrupted');
  assert.equal(live, entry.assistant || '(interrupted before anything was heard)', 'live = stored');
  if (entry.assistant) assert.match(entry.assistant, /[\p{L}\p{N}\p{P}]$/u, 'ends on a word or punctuation, no space');

  await panel.page.reload();
  await panel.page.selectOption('#session-select', session).catch(() => {});
  await panel.page.waitForSelector(`${item}[data-phase="interrupted"]`, { timeout: WAIT_MS });
  assert.equal(await panel.page.textContent(`${item} .bubble.ai .text`), live, 'after a reload: the same cut');
  await panel.context.close();
});
