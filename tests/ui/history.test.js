// The transcript's stored history: after a reload the panel shows the turns it streamed before
// (each once, also when live frames of the same turn follow), an interrupted turn stays marked
// as cut, the picker lists the app's stored sessions, switching session shows that session's
// history, "load earlier" pages back, and a stored turn's end reason is shown as a label.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { WAIT_MS, call, launchBrowser, observedPage, screenshot, sharedServer, startServer } from './harness.js';

let shared;
let browser;

before(async () => {
  shared = await sharedServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await shared?.stop();
});

const isFrame = (type, extra = {}) => (event) =>
  event.kind === 'frame' && event.type === type && Object.entries(extra).every(([key, value]) => event[key] === value);

const historyOf = (sessionId, extra = {}) => (event) =>
  event.kind === 'history' && event.sessionId === sessionId && Object.entries(extra).every(([key, value]) => event[key] === value);

/** Opens the panel with the token and waits for its live socket. */
async function openPanel(server, name) {
  const panel = await observedPage(browser, name);
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  return panel;
}

/** Reloads; resolves once the history of `sessionId` was loaded again. */
async function reload(panel, sessionId) {
  const from = panel.events.length;
  await panel.page.reload();
  await panel.waitFor(historyOf(sessionId), { from, what: `history of ${sessionId} after the reload` });
}

/** Sends `text` from the composer; resolves with its turn number once its SSE `done` came. */
async function sendAndFinish(panel, sessionId, text) {
  const from = panel.events.length;
  await panel.page.fill('#composer-input', text);
  await panel.page.press('#composer-input', 'Enter');
  const { event } = await panel.waitFor(isFrame('USER_INPUT', { sessionId }), { from, what: `USER_INPUT of ${text}` });
  await panel.waitFor((e) => e.kind === 'sse' && e.name === 'done', { from, what: `done of ${text}` });
  return event.turn;
}

async function chooseNewSession(panel, sessionId) {
  await panel.page.fill('#session-new-id', sessionId);
  await panel.page.click('#session-new button');
  assert.equal(await panel.page.inputValue('#session-select'), sessionId);
}

/** Every drawn turn row as `{turn, phase, user, ai}`, top to bottom. */
function rows(panel) {
  return panel.page.$$eval('#transcript li.turn', (items) =>
    items.map((item) => ({
      turn: Number(item.dataset.turn),
      phase: item.dataset.phase,
      user: item.querySelector('.bubble.user')?.childNodes[1]?.textContent ?? null,
      ai: item.querySelector('.bubble.ai .text')?.textContent ?? null,
    })),
  );
}

test('stored turns come back after a reload, once each; the picker lists stored sessions; load earlier pages back', async () => {
  // A server of its own: text-only replies that finish in a moment, and a burst limit that
  // lets this test store a long session quickly.
  const server = await startServer({
    env: { SYNC_TTS_STREAMING: 'false', MOCK_LLM_TOKEN_MS: '2', INPUT_BURST: '500', INPUT_RATE_PER_SEC: '500' },
  });
  try {
    // 55 turns stored before the page opens: the panel can only learn of them from the API.
    const bulk = 'bulk-session';
    for (let n = 0; n < 55; n += 1) {
      const answer = await call(server, 'POST', '/chat/stream', { sessionId: bulk, type: 'COMMAND', content: `say line ${n}` });
      assert.equal(answer.status, 200, answer.text);
    }

    const mine = `mine-${Date.now()}`;
    const panel = await openPanel(server, 'panel');
    await chooseNewSession(panel, mine);
    const first = await sendAndFinish(panel, mine, 'What are we playing tonight?');
    const second = await sendAndFinish(panel, mine, 'And after that?');
    const live = await rows(panel);
    assert.deepEqual(
      live.map((row) => row.turn),
      [first, second],
      'both turns streamed live',
    );
    assert.ok(live.every((row) => row.ai?.length > 0), 'with their replies');

    await reload(panel, mine);
    assert.equal(await panel.page.inputValue('#session-select'), mine, 'the session is kept across the reload');
    const restored = await rows(panel);
    assert.deepEqual(
      restored.map(({ turn, user }) => [turn, user]),
      [
        [first, 'What are we playing tonight?'],
        [second, 'And after that?'],
      ],
      'both inputs are back, oldest first',
    );
    assert.deepEqual(
      restored.map(({ ai, phase }) => [ai, phase]),
      live.map(({ ai }) => [ai, 'completed']),
      'the replies read as they streamed',
    );

    // A live turn after the history: drawn once, below the stored ones.
    const third = await sendAndFinish(panel, mine, 'One more thing');
    await panel.page.waitForSelector(`#transcript li[data-turn="${third}"] .bubble.ai`, { timeout: WAIT_MS });
    assert.deepEqual(
      (await rows(panel)).map((row) => row.turn),
      [first, second, third],
      'every turn once, in order',
    );
    const from = panel.events.length;
    await panel.page.selectOption('#session-select', bulk);
    await panel.waitFor(historyOf(bulk), { from, what: 'history of the stored session' });

    // The picker learnt of the stored session from GET /sessions, with its size.
    const label = await panel.page.$eval(`#session-select option[value="${bulk}"]`, (option) => option.textContent);
    assert.match(label, /\(55 turns/, `the picker shows the stored session and its turn count: ${label}`);

    const newest = await rows(panel);
    assert.equal(newest.length, 50, 'one page of the stored session');
    assert.deepEqual(newest[0], { turn: 5, phase: 'completed', user: 'say line 5', ai: 'line 5' }, 'the page ends at the newest turn');
    assert.ok(newest.every((row) => row.user.startsWith('say line')), 'nothing of the other session leaks in');
    await screenshot(panel.page, 'panel-history-more');

    const before = panel.events.length;
    await panel.page.click('#transcript .load-earlier');
    await panel.waitFor(historyOf(bulk, { older: true }), { from: before, what: 'the earlier page' });
    const all = await rows(panel);
    assert.deepEqual(
      all.map((row) => row.turn),
      Array.from({ length: 55 }, (_, n) => n),
      'the earlier turns are added above, each once',
    );
    assert.equal(await panel.page.$('#transcript .load-earlier'), null, 'nothing older: no button');

    // Back to the first session: its stored page merges with the turn streamed live there,
    // which is drawn once all the same.
    const back = panel.events.length;
    await panel.page.selectOption('#session-select', mine);
    await panel.waitFor(historyOf(mine), { from: back, what: 'history of the first session again' });
    assert.deepEqual(
      (await rows(panel)).map((row) => row.turn),
      [first, second, third],
      'switching back shows that session only, each turn once',
    );
    assert.deepEqual(panel.problems, [], 'no console errors or CSP violations');
    await panel.context.close();
  } finally {
    await server.stop();
  }
});

test('an interrupted turn is still marked as cut after a reload; another session shows its own history', async () => {
  const session = `cut-${Date.now()}`;
  const other = `other-${Date.now()}`;
  // A short turn in another session, stored before the page opens.
  const said = await call(shared, 'POST', '/chat/stream', { sessionId: other, type: 'COMMAND', content: 'say from the other session' });
  assert.equal(said.status, 200, said.text);

  const panel = await openPanel(shared, 'panel');
  await chooseNewSession(panel, session);
  const from = panel.events.length;
  await panel.page.fill('#composer-input', 'Tell me a long story');
  await panel.page.press('#composer-input', 'Enter');
  const { event: input } = await panel.waitFor(isFrame('USER_INPUT', { sessionId: session }), { from, what: 'USER_INPUT' });
  const turn = input.turn;
  // Speech is on (mock TTS): interrupt once the first sentence is being heard.
  await panel.waitFor((event) => isFrame('SPEECH_CHUNK', { sessionId: session, turn })(event) && event.segment, {
    from,
    what: 'the first spoken segment',
  });
  await panel.page.click('#interrupt');
  await panel.waitFor(isFrame('CONTROL', { action: 'STOP_ACK', sessionId: session }), { from, what: 'STOP_ACK' });
  await panel.waitFor((event) => event.kind === 'sse' && event.name === 'done', { from, what: 'done' });
  await panel.page.waitForSelector(`#transcript li[data-turn="${turn}"][data-phase="interrupted"]`, { timeout: WAIT_MS });

  await reload(panel, session);
  const stored = await call(shared, 'GET', `/sessions/${session}/history`);
  assert.equal(stored.json.turns[0].status, 'interrupted', 'the store has it as interrupted');
  const item = `#transcript li[data-turn="${turn}"]`;
  await panel.page.waitForSelector(`${item}[data-phase="interrupted"]`, { timeout: WAIT_MS });
  assert.equal(await panel.page.textContent(`${item} .badge.interrupted`), 'interrupted', 'visibly marked as cut');
  assert.equal(
    await panel.page.textContent(`${item} .bubble.ai .text`),
    stored.json.turns[0].assistant || '(interrupted before anything was heard)',
    'the reply reads as stored: what was heard, nothing after the cut',
  );
  assert.match(await panel.page.textContent(`${item} .bubble.user`), /Tell me a long story/);
  await screenshot(panel.page, 'panel-history-interrupted');

  const switched = panel.events.length;
  await panel.page.selectOption('#session-select', other);
  await panel.waitFor(historyOf(other), { from: switched, what: 'history of the other session' });
  const others = await rows(panel);
  assert.deepEqual(
    others.map(({ user, ai, phase }) => ({ user, ai, phase })),
    [{ user: 'say from the other session', ai: 'from the other session', phase: 'completed' }],
    "the other session's history, and only it",
  );
  assert.deepEqual(panel.problems, [], 'no console errors or CSP violations');
  await panel.context.close();
});

/** A loopback OpenAI-compatible upstream that refuses every request with 401. */
async function refusingUpstream() {
  const upstream = createServer((request, response) => {
    request.resume();
    response.writeHead(401, { 'Content-Type': 'application/json' });
    response.end(JSON.stringify({ error: { message: 'bad key', type: 'invalid_request_error' } }));
  });
  await new Promise((resolveListen) => upstream.listen(0, '127.0.0.1', resolveListen));
  return {
    url: `http://127.0.0.1:${upstream.address().port}/v1`,
    close: () => new Promise((resolveClose) => upstream.close(resolveClose)),
  };
}

test('a stored end reason is shown as a short label with the code as its title', async () => {
  const upstream = await refusingUpstream();
  const server = await startServer({
    env: { SYNC_TTS_STREAMING: 'false', LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.url, LLM_MODEL: 'fake-model' },
  });
  try {
    const session = `why-${Date.now()}`;
    const failed = await call(server, 'POST', '/chat/stream', { sessionId: session, content: 'hello?' });
    assert.equal(failed.status, 200, failed.text);
    const stored = await call(server, 'GET', `/sessions/${session}/history`);
    const [turn] = stored.json.turns;
    assert.equal(turn.status, 'failed', 'the upstream refused the turn');
    assert.equal(turn.reason, 'llm_auth', 'the store says why');

    const panel = await openPanel(server, 'panel-reasons');
    const loaded = panel.events.length;
    await panel.page.selectOption('#session-select', session);
    await panel.waitFor(historyOf(session), { from: loaded, what: `history of ${session}` });
    const item = `#transcript li[data-turn="${turn.turn}"]`;
    await panel.page.waitForSelector(`${item}[data-phase="failed"] .badge.reason`, { timeout: WAIT_MS });
    assert.equal(await panel.page.textContent(`${item} .badge.reason`), 'LLM refused the key', 'a human label');
    assert.equal(await panel.page.getAttribute(`${item} .badge.reason`, 'title'), 'llm_auth', 'the raw code on hover');
    assert.equal(await panel.page.textContent(`${item} .bubble.ai .text`), '(no reply)', 'nothing was heard');

    // Endings the engine writes on other paths (speech failing mid-reply, a crash after part of
    // the reply was heard, a code this panel has no label for), drawn from a history answer.
    const drawn = `drawn-${Date.now()}`;
    const entry = (turn, assistant, status, reason) => ({
      turn,
      user: `q${turn}`,
      assistant,
      status,
      reason,
      kind: 'TEXT',
      startedMs: 2 * turn + 1,
      endedMs: 2 * turn + 2,
    });
    await panel.page.route(`**/sessions/${drawn}/history**`, (route) =>
      route.fulfill({
        status: 200,
        contentType: 'application/json',
        body: JSON.stringify({
          sessionId: drawn,
          more: false,
          turns: [
            entry(0, 'All of it.', 'completed', null),
            entry(1, 'Said in part.', 'completed', 'tts_failed'),
            entry(2, 'Half a', 'failed', 'speech_crashed'),
            entry(3, 'Some', 'interrupted', 'user_interrupt'),
            entry(4, '', 'interrupted', 'some_new_reason'),
          ],
        }),
      }),
    );
    const switched = panel.events.length;
    await chooseNewSession(panel, drawn);
    await panel.waitFor(historyOf(drawn), { from: switched, what: `history of ${drawn}` });
    const drawnRows = await panel.page.$$eval('#transcript li.turn', (items) =>
      items.map((item) => ({
        phase: item.dataset.phase,
        ai: item.querySelector('.bubble.ai .text')?.textContent ?? null,
        reason: item.querySelector('.badge.reason')?.textContent ?? null,
        code: item.querySelector('.badge.reason')?.getAttribute('title') ?? null,
        note: item.querySelector('.turn-error')?.textContent ?? null,
      })),
    );
    assert.deepEqual(
      drawnRows,
      [
        { phase: 'completed', ai: 'All of it.', reason: null, code: null, note: null },
        { phase: 'completed', ai: 'Said in part.', reason: 'speech failed', code: 'tts_failed', note: null },
        {
          phase: 'failed',
          ai: 'Half a',
          reason: 'speech crashed',
          code: 'speech_crashed',
          note: 'The reply failed here; the text above is what was heard.',
        },
        { phase: 'interrupted', ai: 'Some', reason: 'stopped by you', code: 'user_interrupt', note: null },
        {
          phase: 'interrupted',
          ai: '(interrupted before anything was heard)',
          reason: 'some new reason',
          code: 'some_new_reason',
          note: null,
        },
      ],
      'each ending with its label, the heard text of a failed turn, and no label for a clean one',
    );
    await screenshot(panel.page, 'panel-history-reasons');
    assert.deepEqual(panel.problems, [], 'no console errors or CSP violations');
    await panel.context.close();
  } finally {
    await server.stop();
    await upstream.close();
  }
});
