// A turn end to end in two pages: the panel sends a message and streams the transcript, the
// overlay (a second page, playing audio) shows the subtitle; the panel's STOP button
// interrupts, and after STOP_ACK nothing of that turn reaches either page.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { WAIT_MS, call, launchBrowser, observedPage, screenshot, sharedServer } from './harness.js';

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

test('send, stream, subtitle, interrupt: nothing of the turn arrives after STOP_ACK', async () => {
  const session = `ui-${Date.now()}`;
  const overlay = await observedPage(browser, 'overlay');
  await overlay.page.goto(`${server.url}/overlay?token=${server.token}&audio=1&session=${session}`);
  await overlay.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });

  const panel = await observedPage(browser, 'panel');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  assert.equal(new URL(panel.page.url()).searchParams.get('token'), null, 'the token is stripped from the address bar');

  // A session of our own, picked through the UI.
  await panel.page.fill('#session-new-id', session);
  await panel.page.click('#session-new button');
  assert.equal(await panel.page.inputValue('#session-select'), session);

  await panel.page.fill('#composer-input', 'Tell me about tonight’s game');
  await panel.page.press('#composer-input', 'Enter');

  const { event: input } = await panel.waitFor(isFrame('USER_INPUT', { sessionId: session }), { what: 'USER_INPUT' });
  const turn = input.turn;
  await panel.waitFor(isFrame('TEXT_DELTA', { turn }), { what: 'TEXT_DELTA' });
  await panel.page.waitForSelector(`#transcript li[data-turn="${turn}"] .bubble.ai .text`, { timeout: WAIT_MS });
  const user = await panel.page.textContent(`#transcript li[data-turn="${turn}"] .bubble.user`);
  assert.match(user, /tonight’s game/, 'the user input is in the transcript');

  // The overlay shows the first segment once its first chunk arrives, and plays its audio.
  const { event: shown, index: shownIndex } = await overlay.waitFor((event) => event.kind === 'subtitle' && event.turn === turn, {
    what: 'subtitle',
  });
  assert.ok(shown.text.length > 0, 'a subtitle has text');
  await overlay.waitFor((event) => event.kind === 'audio' && event.turn === turn, { what: 'scheduled audio' });
  assert.equal(await overlay.page.evaluate(() => window.__koto.subtitle()), shown.text, 'the subtitle is visible');
  const backgrounds = await overlay.page.evaluate(() =>
    [document.documentElement, document.body].map((element) => getComputedStyle(element).backgroundColor),
  );
  assert.deepEqual(backgrounds, ['rgba(0, 0, 0, 0)', 'rgba(0, 0, 0, 0)'], 'the overlay page is transparent for OBS');
  await screenshot(overlay.page, 'overlay-subtitle', { transparent: true });
  await screenshot(panel.page, 'panel-streaming');

  // The panel asked for no audio: its SPEECH_CHUNKs carry none (the app plays audio in Rust).
  await panel.waitFor(isFrame('SPEECH_CHUNK', { turn }), { what: 'a SPEECH_CHUNK on the panel' });
  const panelChunks = panel.events.filter(isFrame('SPEECH_CHUNK', { turn }));
  assert.ok(panelChunks.length > 0, 'the panel sees the chunks (for the heard text)');
  assert.ok(panelChunks.every((chunk) => chunk.audioBytes === 0), 'the panel gets no audio by default');

  // Interrupt from the panel's big button.
  await panel.page.click('#interrupt');
  const overlayAck = await overlay.waitFor(isFrame('CONTROL', { action: 'STOP_ACK', sessionId: session }), {
    what: 'STOP_ACK',
  });
  const panelAck = await panel.waitFor(isFrame('CONTROL', { action: 'STOP_ACK', sessionId: session }), {
    what: 'STOP_ACK',
  });
  assert.ok(overlayAck.event.turn >= turn, 'STOP_ACK covers the turn');

  // The transcript marks the turn and keeps only what was heard.
  await panel.page.waitForSelector(`#transcript li[data-turn="${turn}"][data-phase="interrupted"]`, { timeout: WAIT_MS });
  const heard = panel.events
    .slice(0, panelAck.index)
    .filter((event) => isFrame('SPEECH_CHUNK', { turn })(event) && event.segment)
    .map((event) => event.segment)
    .join('');
  // Then it shows what the store kept as heard: the same cut a reload shows (word boundary).
  await panel.waitFor((event) => event.kind === 'settled' && event.turn === turn, { from: panelAck.index, what: 'the stored cut' });
  const shownText = await panel.page.textContent(`#transcript li[data-turn="${turn}"] .bubble.ai .text`);
  const stored = (await call(server, 'GET', `/sessions/${session}/history`)).json.turns.find((entry) => entry.turn === turn);
  assert.equal(shownText, stored.assistant || '(interrupted before anything was heard)', 'the reply is cut where the audio stopped, as stored');
  assert.ok(heard.replace(/\s+/g, '').startsWith(stored.assistant.replace(/\s+/g, '')), 'nothing past what the overlay heard');
  await screenshot(panel.page, 'panel-interrupted');

  // A marker turn: once its frames arrive, everything of the stopped turn would have too.
  await panel.page.fill('#composer-input', '/say marker');
  await panel.page.press('#composer-input', 'Enter');
  const marker = await overlay.waitFor((event) => event.kind === 'frame' && event.turn > overlayAck.event.turn, {
    from: overlayAck.index,
    what: 'a frame of the next turn',
  });
  await panel.waitFor((event) => event.kind === 'frame' && event.turn > overlayAck.event.turn, {
    from: panelAck.index,
    what: 'a frame of the next turn',
  });

  const stale = (event) =>
    event.turn <= overlayAck.event.turn &&
    event.sessionId === session &&
    (isFrame('SPEECH_CHUNK')(event) || event.kind === 'subtitle' || event.kind === 'audio');
  assert.deepEqual(overlay.events.slice(overlayAck.index + 1).filter(stale), [], 'overlay: no chunk, subtitle or audio of the stopped turn after STOP_ACK');
  assert.deepEqual(panel.events.slice(panelAck.index + 1).filter(stale), [], 'panel: no chunk of the stopped turn after STOP_ACK');
  const hidden = overlay.events
    .slice(shownIndex, marker.index)
    .some((event) => event.kind === 'hide' && event.reason === 'stop');
  assert.ok(hidden, 'the overlay hid the subtitle at the STOP');

  assert.deepEqual([...overlay.problems, ...panel.problems], [], 'no console errors or CSP violations');
  await overlay.context.close();
  await panel.context.close();
});

test('an input the API refuses is explained under the input box', async () => {
  const panel = await observedPage(browser, 'panel');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  // After a reload the address has no token any more: the tab's sessionStorage still has it.
  await panel.page.reload();
  assert.equal(new URL(panel.page.url()).searchParams.get('token'), null);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', {
    from: panel.events.findLastIndex((event) => event.kind === 'state' && event.state === 'open') + 1,
    what: 'the socket again after a reload',
  });
  await panel.page.fill('#composer-input', '/frobnicate');
  await panel.page.press('#composer-input', 'Enter');
  await panel.page.waitForFunction(() => document.getElementById('composer-error').textContent !== '', null, {
    timeout: WAIT_MS,
  });
  const message = await panel.page.textContent('#composer-error');
  assert.match(message, /^Not sent: .+\(unknown_command\)$/, `the API's message and code: ${message}`);
  await panel.context.close();
});

test('"play audio here" asks for audio frames and schedules them', async () => {
  const session = `audio-${Date.now()}`;
  const panel = await observedPage(browser, 'panel');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  assert.equal(await panel.page.isVisible('#audio-here'), true, 'offered in a plain browser');
  const before = panel.events.length;
  await panel.page.check('#audio-here');
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { from: before, what: 'reconnect with audio' });
  await panel.page.fill('#session-new-id', session);
  await panel.page.click('#session-new button');
  await panel.page.fill('#composer-input', '/say hello with sound');
  await panel.page.press('#composer-input', 'Enter');
  const { event } = await panel.waitFor(
    (e) => e.kind === 'frame' && e.type === 'SPEECH_CHUNK' && e.sessionId === session,
    { what: 'a chunk with audio' },
  );
  assert.ok(event.audioBytes > 0, 'binary audio frames arrive once asked for');
  await panel.context.close();
});

test("a reasoning model's thinking is drawn dimmed above its reply and folds when the reply begins", async () => {
  const session = `think-${Date.now()}`;
  const panel = await observedPage(browser, 'panel');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  await panel.page.fill('#session-new-id', session);
  await panel.page.click('#session-new button');
  // A remote producer on /ws/ingest sends what the engine sends with SHOW_REASONING=true.
  await panel.page.evaluate(
    async ({ token, sessionId }) => {
      const producer = new WebSocket(`${location.origin.replace('http', 'ws')}/ws/ingest?token=${token}`);
      await new Promise((resolve, reject) => {
        producer.onopen = resolve;
        producer.onerror = reject;
      });
      window.__producer = producer;
      window.__replies = [];
      producer.onmessage = (message) => window.__replies.push(String(message.data));
      const send = (frame) => producer.send(JSON.stringify({ sessionId, turn: 1, ...frame }));
      window.__send = send;
      send({ type: 'USER_INPUT', content: 'why is the sky blue?' });
      send({ type: 'REASONING_DELTA', content: 'They ask about light. ' });
      send({ type: 'REASONING_DELTA', content: 'Rayleigh scattering.' });
    },
    { token: server.token, sessionId: session },
  );
  const thinking = `#transcript li[data-turn="1"] .bubble.ai details.reasoning`;
  await panel.page.waitForSelector(`${thinking}[open]`, { timeout: WAIT_MS });
  assert.equal(await panel.page.textContent(`${thinking} p`), 'They ask about light. Rayleigh scattering.');
  const opacity = await panel.page.$eval(thinking, (element) => Number(getComputedStyle(element).opacity));
  assert.ok(opacity < 1, `the thinking is dimmed (opacity ${opacity})`);
  assert.deepEqual(await panel.page.evaluate(() => window.__replies), [], 'the relay took every frame');
  await screenshot(panel.page, 'panel-reasoning');

  await panel.page.evaluate(() => window.__send({ type: 'TEXT_DELTA', content: 'Because of scattering.', eos: true }));
  await panel.page.waitForSelector(`${thinking}:not([open])`, { timeout: WAIT_MS });
  assert.equal(
    await panel.page.textContent(`#transcript li[data-turn="1"] .bubble.ai > .text`),
    'Because of scattering.',
    'the reply is drawn apart from the thinking',
  );
  await panel.page.evaluate(() => window.__producer.close());
  await panel.context.close();
});
