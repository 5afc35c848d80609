// The OBS overlay on its own: a wrong or missing token is a readable message (not a blank
// source), and it reconnects by itself when the app restarts on the same port.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { WAIT_MS, call, launchBrowser, observedPage, screenshot, sharedServer, startServer } from './harness.js';

let browser;
let server;

before(async () => {
  browser = await launchBrowser();
  server = await sharedServer();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a wrong token shows a readable message in the page', async () => {
  const overlay = await observedPage(browser, 'overlay');
  const response = await overlay.page.goto(`${server.url}/overlay?token=not-the-right-token-0000`);
  assert.equal(response.status(), 200, 'the page is served even with a wrong token');
  await overlay.waitFor((event) => event.kind === 'state' && event.state === 'token_rejected', {
    what: 'token_rejected state',
  });
  const notice = overlay.page.locator('#notice');
  await notice.waitFor({ state: 'visible', timeout: WAIT_MS });
  const text = await notice.textContent();
  assert.match(text, /token rejected/i, 'says what is wrong');
  assert.match(text, /copy the overlay URL again/i, 'and what to do');
  await screenshot(overlay.page, 'overlay-token-rejected');
  // The refused upgrade is logged by Chromium as a console error; nothing else may be.
  const unexpected = overlay.problems.filter((problem) => !/WebSocket connection to .* failed|401/.test(problem));
  assert.deepEqual(unexpected, [], 'no other errors');
  await overlay.context.close();
});

test('a missing token says so at once', async () => {
  const overlay = await observedPage(browser, 'overlay');
  await overlay.page.goto(`${server.url}/overlay`);
  const notice = overlay.page.locator('#notice');
  await notice.waitFor({ state: 'visible', timeout: WAIT_MS });
  assert.match(await notice.textContent(), /no access token/i);
  await overlay.context.close();
});

test('the overlay reconnects by itself after the app restarts on the same port', async () => {
  // Its own server: this one is stopped and started again.
  const first = await startServer({ env: { MOCK_LLM_TOKEN_MS: '5' } });
  const overlay = await observedPage(browser, 'overlay');
  try {
    await overlay.page.goto(`${first.url}/overlay?token=${first.token}&session=restart`);
    await overlay.page.waitForFunction(() => window.__koto.connections === 1, null, { timeout: WAIT_MS });

    const stopped = await first.stop({ keepDir: true });
    assert.equal(stopped.code, 0, 'a clean shutdown');
    const lost = await overlay.waitFor(
      (event) => event.kind === 'state' && (event.state === 'reconnecting' || event.state === 'unreachable'),
      { what: 'the lost connection' },
    );
    assert.ok(lost.event.retryInMs <= 10_000, 'backoff is capped');

    // Same data dir (same token), same port.
    const second = await startServer({ dataDir: first.dataDir, bind: `127.0.0.1:${first.port}`, env: { MOCK_LLM_TOKEN_MS: '5' } });
    try {
      assert.equal(second.token, first.token, 'the token survives a restart');
      await overlay.page.waitForFunction(() => window.__koto.connections === 2, null, { timeout: WAIT_MS });
      assert.equal(await overlay.page.evaluate(() => window.__koto.notice()), '', 'no message once reconnected');

      // And it works: a spoken reply shows up as a subtitle.
      const from = overlay.events.length;
      const reply = await call(second, 'POST', '/chat/stream', { sessionId: 'restart', type: 'COMMAND', content: 'say back again' });
      assert.equal(reply.status, 200);
      const { event } = await overlay.waitFor((e) => e.kind === 'subtitle', { from, what: 'a subtitle after the restart' });
      assert.match(event.text, /back again/);
      await screenshot(overlay.page, 'overlay-after-restart', { transparent: true });
    } finally {
      await second.stop();
    }
  } finally {
    await overlay.context.close();
    await first.stop();
  }
});
