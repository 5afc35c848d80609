// The panel's microphone card against the real app (no sound card here, no ASR provider):
// the mode switch reaches the server and the card says why nothing will be heard; holding the
// button sends push-to-talk press and release; a hold without audio comes back as a dropped
// input with its reason; the level meter follows MIC_LEVEL frames.

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
  // Leave the shared server as the other files expect it.
  await call(server, 'POST', '/voice/mode', { mode: 'off' });
  await browser?.close();
  await server?.stop();
});

test('mode switch, hold-to-talk, the reason a voice input was dropped, and the level meter', async () => {
  const panel = await observedPage(browser, 'panel-mic');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  const session = `mic-${Date.now()}`;
  await panel.page.fill('#session-new-id', session);
  await panel.page.click('#session-new button');

  assert.equal(await panel.page.isDisabled('#mic-ptt'), true, 'no push-to-talk while the mic is off');
  await panel.page.selectOption('#mic-mode', 'ptt');
  const { event: switched } = await panel.waitFor((event) => event.kind === 'mic-mode', { what: 'mode switched' });
  assert.ok(
    ['no_device', 'asr_off'].includes(switched.state),
    `no sound card and no ASR here: a clear state, got ${switched.state}`,
  );
  const voice = await call(server, 'GET', '/voice');
  assert.equal(voice.json.mode, 'ptt', 'the server took the mode');
  assert.equal(voice.json.session, session, 'voice turns go to the panel’s session');
  const stateText = await panel.page.textContent('#mic-state');
  assert.match(stateText, /No microphone found|no speech recognition/, `the card says why: ${stateText}`);

  // Hold the button with the mouse, then let go.
  await panel.page.hover('#mic-ptt');
  await panel.page.mouse.down();
  await panel.waitFor((event) => event.kind === 'ptt' && event.pressed === true, { what: 'press sent' });
  assert.equal(await panel.page.getAttribute('#mic-ptt', 'aria-pressed'), 'true');
  await panel.page.mouse.up();
  await panel.waitFor((event) => event.kind === 'ptt' && event.pressed === false, { what: 'release sent' });
  // Without a device no audio arrived: the hold is too short, and the panel says so.
  const { event: dropped } = await panel.waitFor((event) => event.kind === 'mic-dropped', { what: 'VOICE_DROPPED' });
  assert.equal(dropped.reason, 'too_short');
  assert.match(await panel.page.textContent('#mic-dropped'), /too short/);

  // The meter and the partial transcript follow MIC_LEVEL / ASR_PARTIAL frames: fed here to
  // the handler the socket feeds (no sound card to make real ones).
  await panel.page.evaluate(() => {
    window.__koto.mic.onFrame({ type: 'MIC_LEVEL', sessionId: 'mic', rmsDbfs: -30, voice: 0.9, speaking: true });
    window.__koto.mic.onFrame({ type: 'ASR_PARTIAL', sessionId: 'mic', text: 'what game is' });
  });
  assert.equal(await panel.page.getAttribute('#mic-level', 'aria-valuenow'), '-30');
  assert.equal(
    await panel.page.evaluate(() => document.getElementById('mic-level-bar').style.width),
    '50%',
    '−30 dBFS is half the meter',
  );
  assert.equal(await panel.page.textContent('#mic-partial'), 'what game is', 'the partial transcript shows');
  const listed = await panel.page.$$eval('#session-select option', (options) => options.map((o) => o.value));
  assert.ok(!listed.includes('mic'), 'mic frames add no session to the list');
  await screenshot(panel.page, 'panel-mic');
  assert.deepEqual(panel.problems, [], 'no console errors or CSP violations');
  await panel.context.close();
});
