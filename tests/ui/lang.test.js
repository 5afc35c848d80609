// The panel's language picker: picking 中文 sends `meta.lang: "zh"` with each message (the
// request on the wire is checked), the mock LLM answers in Chinese, the choice survives a
// reload, and `auto` sends no `meta` at all (a Chinese message still gets a Chinese reply, by
// its script).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, observedPage, screenshot, sharedServer } from './harness.js';

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

/** Bodies of the page's `POST /chat/stream` requests, in order. */
function chatBodies(page) {
  const bodies = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname === '/chat/stream') {
      bodies.push(JSON.parse(request.postData() ?? 'null'));
    }
  });
  return bodies;
}

/**
 * Sends `text` and resolves with the reply streamed over SSE: every text-delta up to `eos`,
 * which comes when the LLM has finished (the voice is still speaking then). The turn is then
 * stopped, so the next message does not wait for the audio to play out.
 */
async function sendAndRead(panel, session, text) {
  const from = panel.events.length;
  await panel.page.fill('#composer-input', text);
  await panel.page.press('#composer-input', 'Enter');
  const { index } = await panel.waitFor(
    (event) => event.kind === 'sse' && event.name === 'text-delta' && event.data.eos,
    { from, what: `the reply to ${text}` },
  );
  const stop = await fetch(`${server.url}/control/stop`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ sessionId: session }),
  });
  assert.equal(stop.status, 200, 'the turn is stopped after its text');
  await panel.waitFor((event) => event.kind === 'sse' && event.name === 'done', {
    from: index,
    what: `the end of the reply to ${text}`,
  });
  return panel.events
    .slice(from, index + 1)
    .filter((event) => event.kind === 'sse' && event.name === 'text-delta')
    .map((event) => event.data.content)
    .join('');
}

const CHINESE = /[\u4e00-\u9fff]/;
const KANA = /[\u3040-\u30ff]/;

test('picking 中文 sends meta.lang "zh", gets a Chinese reply, and is remembered', async () => {
  const session = `lang-${Date.now()}`;
  const panel = await observedPage(browser, 'panel');
  const bodies = chatBodies(panel.page);
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  await panel.page.fill('#session-new-id', session);
  await panel.page.click('#session-new button');
  assert.equal(await panel.page.inputValue('#composer-lang'), 'auto', 'auto until the user picks');

  await panel.page.selectOption('#composer-lang', { label: '中文' });
  const reply = await sendAndRead(panel, session, '你好，今晚玩什么？');
  assert.deepEqual(bodies.at(-1)?.meta, { lang: 'zh' }, 'the message carries meta.lang zh');
  assert.match(reply, CHINESE, `the mock LLM answers in Chinese: ${reply}`);
  assert.doesNotMatch(reply, /thanks/, 'not the English reply');
  await screenshot(panel.page, 'panel-lang-zh');

  // Remembered across a reload (localStorage), and sent again.
  await panel.page.reload();
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', {
    from: panel.events.findLastIndex((event) => event.kind === 'state' && event.state === 'open') + 1,
    what: 'the socket after a reload',
  });
  assert.equal(await panel.page.inputValue('#composer-lang'), 'zh', 'the choice survives a reload');

  await panel.page.selectOption('#composer-lang', 'ja');
  const japanese = await sendAndRead(panel, session, 'hello');
  assert.deepEqual(bodies.at(-1)?.meta, { lang: 'ja' });
  assert.match(japanese, KANA, `meta.lang ja: a Japanese reply even to English text: ${japanese}`);

  await panel.page.selectOption('#composer-lang', 'auto');
  const byScript = await sendAndRead(panel, session, '今天天气怎么样？');
  assert.equal(bodies.at(-1)?.meta, undefined, 'auto sends no meta.lang');
  assert.match(byScript, CHINESE, `auto: Chinese text still gets a Chinese reply: ${byScript}`);
  const english = await sendAndRead(panel, session, 'what are we playing tonight?');
  assert.match(english, /love that, chat/, `auto: English text gets the English reply: ${english}`);

  assert.deepEqual(panel.problems, [], 'no console errors or CSP violations');
  await panel.context.close();
});
