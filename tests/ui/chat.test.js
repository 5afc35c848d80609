// The panel's live chat view: messages posted to the local chat API show in the queue with
// their scores, best first; Skip drops one (its decision and reason appear), Pin marks one,
// Answer now makes it a turn (picked, with its reason); a moderator's delete shows as a
// dropped decision; viewer text is drawn as text, never as markup. The OBS overlay shows the
// message being answered above the subtitle, and takes it down when the answer is retracted
// (or ends).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { call, launchBrowser, observedPage, screenshot, startServer } from './harness.js';

let server;
let browser;

before(async () => {
  // Nothing is answered by itself: the streamer's buttons decide.
  server = await startServer({ env: { CHAT_ANSWER: 'false' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const message = (id, user, kind, text) => ({ id, platform: 'twitch', user: { id: user, name: `${user}_tv` }, kind, text });

test('the chat view shows the queue, and pin / skip / answer now act on it', async () => {
  const panel = await observedPage(browser, 'chat');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.waitFor((e) => e.kind === 'state' && e.state === 'open', { what: 'open socket' });
  const overlay = await observedPage(browser, 'chat-overlay');
  await overlay.page.goto(`${server.url}/overlay?token=${server.token}`);
  await overlay.waitFor((e) => e.kind === 'state' && e.state === 'open', { what: 'overlay socket' });

  const posted = await call(server, 'POST', '/chat/messages', {
    messages: [
      message('c1', 'alice', 'message', 'nice stream <b>bold</b>'),
      message('c2', 'bob', 'question', 'what game is this?'),
      message('c3', 'carol', 'message', 'hello there'),
    ],
  });
  assert.equal(posted.status, 202, posted.text);
  const { event: drawn } = await panel.waitFor((e) => e.kind === 'chat-queue' && e.waiting.length === 3, {
    what: 'three waiting messages drawn',
  });
  assert.equal(drawn.waiting[0], 'c2', 'the question is drawn first (best score)');
  const rows = await panel.page.locator('#chat-queue li').count();
  assert.equal(rows, 3);
  assert.equal(await panel.page.locator('#chat-queue b').count(), 0, 'viewer text is never markup');
  assert.match(await panel.page.textContent('#chat-queue'), /score/, 'scores are shown');

  let from = panel.events.length;
  await panel.page.click('#chat-queue li[data-message-id="c3"] button[data-action="skip"]');
  await panel.waitFor((e) => e.kind === 'chat-decision' && e.messageId === 'c3' && e.decision === 'dropped', {
    from,
    what: 'the skip decision',
  });
  assert.match(await panel.page.textContent('#chat-decisions'), /skipped by the streamer/);

  from = panel.events.length;
  await panel.page.click('#chat-queue li[data-message-id="c1"] button[data-action="pin"]');
  await panel.waitFor((e) => e.kind === 'chat-action' && e.action === 'pin' && e.ok, { from, what: 'the pin' });
  await panel.waitFor((e) => e.kind === 'chat-queue' && e.waiting[0] === 'c1', { from, what: 'the pinned message first' });

  from = panel.events.length;
  await panel.page.click('#chat-queue li[data-message-id="c2"] button[data-action="answer"]');
  const { event: picked } = await panel.waitFor(
    (e) => e.kind === 'chat-decision' && e.messageId === 'c2' && e.decision === 'picked',
    { from, what: 'the answer-now pick' },
  );
  assert.match(picked.reason, /answer now/, picked.reason);
  await panel.waitFor((e) => e.kind === 'frame' && e.type === 'USER_INPUT' && e.sessionId === 'live-chat', {
    from,
    what: 'the answer turn',
  });
  const { event: shown } = await overlay.waitFor((e) => e.kind === 'asked' && e.messageId === 'c2', {
    what: 'the asked line on the overlay',
  });
  assert.equal(shown.text, 'bob_tv: what game is this?', 'the overlay names the viewer and their words');
  await screenshot(overlay.page, 'chat-overlay-asked', { transparent: true });
  await call(server, 'POST', '/chat/messages', {
    messages: [{ id: 'mod-0', platform: 'twitch', user: { id: 'mod' }, kind: 'delete', targetId: 'c2' }],
  });
  const { event: gone } = await overlay.waitFor((e) => e.kind === 'asked-hide' && e.messageId === 'c2', {
    what: 'the asked line taken down',
  });
  assert.ok(['retracted', 'stop', 'end'].includes(gone.reason), `taken down by the retraction or the answer's end: ${gone.reason}`);
  assert.deepEqual(overlay.problems, [], 'no overlay console errors or CSP violations');

  from = panel.events.length;
  await call(server, 'POST', '/chat/messages', {
    messages: [{ id: 'mod-1', platform: 'twitch', user: { id: 'mod' }, kind: 'delete', targetId: 'c1' }],
  });
  await panel.waitFor((e) => e.kind === 'chat-decision' && e.messageId === 'c1' && e.decision === 'dropped', {
    from,
    what: 'the deletion',
  });
  assert.match(await panel.page.textContent('#chat-decisions'), /deleted by a moderator/);
  assert.match(await panel.page.textContent('#chat-adapters'), /\S/, 'the adapter chips say something');
  await screenshot(panel.page, 'chat-view');
  assert.deepEqual(panel.problems, [], 'no console errors or CSP violations');
  await panel.context.close();
  await overlay.context.close();
});
