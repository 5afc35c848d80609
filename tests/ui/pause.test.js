// A voice barge-in's PAUSE in the browser's own audio (the OBS overlay with `&audio=1`): the
// relay holds what it has not sent, the page holds what it had scheduled, RESUME plays on from
// there, and a STOP during the pause drops what was held. The pause comes the way a streamer
// makes it: push-to-talk pressed while the co-host speaks (MIC_MODE=ptt, VOICE_BARGE_IN=true);
// released without a word (no microphone here), the co-host resumes.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { call, launchBrowser, observedPage, startServer } from './harness.js';

let server;
let browser;

before(async () => {
  server = await startServer({
    env: {
      MIC_MODE: 'ptt',
      ASR_PROVIDER: 'mock',
      VOICE_BARGE_IN: 'true',
      // A second of audio ahead of the clock: a pause has plenty scheduled to hold.
      AUDIO_LEAD_MS: '1000',
      MOCK_LLM_TOKEN_MS: '5',
    },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function overlayOn(session) {
  const overlay = await observedPage(browser, 'overlay');
  await overlay.page.goto(`${server.url}/overlay?token=${server.token}&audio=1&session=${session}`);
  await overlay.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  return overlay;
}

async function speak(session, overlay) {
  const answer = call(server, 'POST', '/chat/stream', { sessionId: session, content: 'Tell me a long story about the game tonight' });
  await overlay.waitFor((event) => event.kind === 'audio', { what: 'the co-host speaking' });
  // Wrapped: an async function returning the promise itself would wait for the whole reply.
  return { answer };
}

const ptt = (session, pressed) => call(server, 'POST', '/voice/ptt', { pressed, sessionId: session });

test('push-to-talk over the co-host holds the overlay audio where it is, and the release plays on', async () => {
  const session = `pause-${Date.now()}`;
  const overlay = await overlayOn(session);
  const { answer } = await speak(session, overlay);

  const from = overlay.events.length;
  assert.equal((await ptt(session, true)).status, 200);
  const { event: paused, index: pausedAt } = await overlay.waitFor((event) => event.kind === 'paused', { from, what: 'PAUSE' });
  assert.ok(paused.heldS > 0, `the audio scheduled ahead is held, not played out: ${JSON.stringify(paused)}`);
  const during = await overlay.page.evaluate((id) => window.__koto.audio(id), session);
  assert.equal(during.paused, true);
  assert.ok(during.held > 0, `still held: ${JSON.stringify(during)}`);
  // Nothing sounds while the streamer holds the key (a second, well beyond the relay's lead).
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const heard = overlay.events.slice(pausedAt + 1).filter((event) => event.kind === 'audio');
  assert.deepEqual(heard, [], 'no audio is scheduled during the pause');

  assert.equal((await ptt(session, false)).status, 200);
  const { index: resumedAt } = await overlay.waitFor((event) => event.kind === 'resumed', { from: pausedAt, what: 'RESUME' });
  await overlay.waitFor((event) => event.kind === 'audio', { from: resumedAt, what: 'audio again after RESUME' });
  const after = await overlay.page.evaluate((id) => window.__koto.audio(id), session);
  assert.equal(after.paused, false);
  assert.equal(after.held, 0, 'what was held is back on the clock');

  await call(server, 'POST', '/control/stop', { sessionId: session });
  await answer;
  await overlay.context.close();
});

test('a STOP during the pause drops what the pause held', async () => {
  const session = `pause-stop-${Date.now()}`;
  const overlay = await overlayOn(session);
  const { answer } = await speak(session, overlay);

  const from = overlay.events.length;
  assert.equal((await ptt(session, true)).status, 200);
  const { index: pausedAt } = await overlay.waitFor((event) => event.kind === 'paused', { from, what: 'PAUSE' });
  assert.equal((await call(server, 'POST', '/control/stop', { sessionId: session })).status, 200);
  const { index: ackAt } = await overlay.waitFor((event) => event.kind === 'frame' && event.type === 'CONTROL' && event.action === 'STOP_ACK', {
    from: pausedAt,
    what: 'STOP_ACK',
  });
  const state = await overlay.page.evaluate((id) => window.__koto.audio(id), session);
  assert.deepEqual(state, { scheduled: 0, held: 0, paused: false }, 'silent: nothing scheduled, nothing held');
  // The key let go after the STOP: nothing of the stopped turn plays again.
  await ptt(session, false);
  await answer;
  await new Promise((resolve) => setTimeout(resolve, 500));
  const late = overlay.events.slice(ackAt + 1).filter((event) => event.kind === 'audio' || event.kind === 'subtitle');
  assert.deepEqual(late, [], 'no audio or subtitle after STOP_ACK');
  await overlay.context.close();
});

test('the panel\'s "play audio here" holds on PAUSE and plays on at RESUME too', async () => {
  const session = `pause-panel-${Date.now()}`;
  const panel = await observedPage(browser, 'panel');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'open socket' });
  const before = panel.events.length;
  await panel.page.check('#audio-here');
  await panel.waitFor((event) => event.kind === 'state' && event.state === 'open', { from: before, what: 'reconnect with audio' });
  await panel.page.fill('#session-new-id', session);
  await panel.page.click('#session-new button');
  await panel.page.fill('#composer-input', 'Tell me a long story about the game tonight');
  await panel.page.press('#composer-input', 'Enter');
  const audio = () => panel.page.evaluate((id) => window.__koto.audio(id), session);
  // The page's CSP allows no eval: each wait names a state checked in the page.
  const until = (want, what) =>
    panel.page
      .waitForFunction(
        ([id, wanted]) => {
          const state = window.__koto.audio(id);
          if (wanted === 'scheduled') return state.scheduled > 0;
          if (wanted === 'held') return state.paused && state.held > 0;
          return !state.paused && state.held === 0 && state.scheduled > 0;
        },
        [session, want],
        { timeout: 20_000, polling: 50 },
      )
      .catch(async (error) => {
        throw new Error(`panel: ${what}: ${error.message}; audio ${JSON.stringify(await audio())}`);
      });
  await until('scheduled', 'audio scheduled');

  assert.equal((await ptt(session, true)).status, 200);
  await until('held', 'the scheduled audio held by the PAUSE');
  assert.equal((await audio()).scheduled, 0, 'nothing of the session left on the clock while paused');
  assert.equal((await ptt(session, false)).status, 200);
  await until('playing on', 'played on at RESUME');

  await call(server, 'POST', '/control/stop', { sessionId: session });
  await panel.context.close();
});
