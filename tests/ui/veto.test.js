// The veto window as the streamer meets it: the reply's first line appears in the STOP dock with
// a countdown before anyone hears it, and Veto drops the reply unheard (stored as vetoed).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { WAIT_MS, launchBrowser, observedPage, screenshot, startServer } from './harness.js';

let browser;
let server;

before(async () => {
  browser = await launchBrowser();
  server = await startServer({ env: { VETO_WINDOW_MS: '5000' } });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the first line waits in the dock with a countdown, and Veto drops it unheard', async () => {
  const panel = await observedPage(browser, 'panel');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.page.fill('#session-new-id', 'veto-ui');
  await panel.page.click('#session-new button');
  await panel.page.fill('#composer-input', 'hello');
  await panel.page.press('#composer-input', 'Enter');
  const bar = panel.page.locator('#veto');
  await bar.waitFor({ state: 'visible', timeout: WAIT_MS });
  assert.ok((await panel.page.locator('.veto-line').textContent()).length > 0, 'the line is shown');
  assert.match(await panel.page.locator('.veto-count').textContent(), /heard in \d\.\d s/);
  await screenshot(panel.page, 'veto-pending');
  await panel.page.click('#veto-button');
  await panel.page.waitForFunction(() => /vetoed/.test(document.querySelector('.veto-count').textContent) || document.getElementById('veto').hidden, null, { timeout: WAIT_MS });
  const chunks = panel.events.filter((event) => event.kind === 'frame' && event.type === 'SPEECH_CHUNK' && event.sessionId === 'veto-ui');
  assert.equal(chunks.length, 0, 'not a sound of the vetoed line reached the panel');
  let turn;
  for (let i = 0; i < 100; i += 1) {
    const response = await fetch(`${server.url}/sessions/veto-ui/history`, { headers: { Authorization: `Bearer ${server.token}` } });
    turn = (await response.json()).turns?.[0];
    if (turn?.reason) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(turn?.reason, 'vetoed', JSON.stringify(turn));
  assert.deepEqual(panel.problems, []);
  await panel.context.close();
});
