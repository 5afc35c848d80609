// The original front end's voice path in a real browser: Chromium's MediaRecorder records a fake
// microphone (espeak-ng speech from a WAV file) as WebM/Opus and uploads it over /ws/input the
// way the original page does (metadata + one binary frame per recorded slice, then
// upload_complete); the app decodes it, the (mock) ASR hears it, and /ws/output answers the
// turn. The stored turn is an ASR_FINAL whose length is the recording's.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { WAIT_MS, call, launchBrowser, repoRoot, startServer } from './harness.js';

const speech = join(repoRoot, 'crates/koto-providers/tests/fixtures/speech-22k-mono.wav');
const RECORD_MS = 2500;

let server;
let browser;

before(async () => {
  // The mock ASR describes what it got: "mock transcript of <n> ms of audio".
  server = await startServer({ env: { ASR_PROVIDER: 'mock', ASR_MOCK_TEXT: '' } });
  browser = await launchBrowser({
    args: [
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${speech}%noloop`,
    ],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a recording from the microphone is uploaded, heard and answered', { timeout: 4 * WAIT_MS }, async () => {
  const page = await browser.newPage();
  // The app's own origin: a secure context for getUserMedia, allowed on the sockets with the token.
  await page.goto(`${server.url}/?token=${server.token}`);
  const result = await page.evaluate(async ({ token, recordMs, waitMs }) => {
    const ws = (path) => new WebSocket(`${location.origin.replace('http', 'ws')}${path}?token=${token}`);
    const nextMessage = (socket) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message in time')), waitMs);
      socket.addEventListener('message', (event) => { clearTimeout(timer); resolve(event.data); }, { once: true });
    });
    const input = ws('/ws/input');
    const assigned = JSON.parse(await nextMessage(input));
    const taskId = assigned.task_id;
    const output = ws(`/ws/output/${taskId}`);
    const outputFrames = [];
    const outputClosed = new Promise((resolve) => {
      output.addEventListener('message', (event) => {
        if (typeof event.data === 'string') outputFrames.push(JSON.parse(event.data));
      });
      output.addEventListener('close', (event) => resolve(event.code));
    });
    await new Promise((resolve) => output.addEventListener('open', resolve, { once: true }));

    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const recorder = new MediaRecorder(stream, { mimeType: 'audio/webm;codecs=opus' });
    const replies = [];
    let chunkId = 0;
    let sending = Promise.resolve();
    recorder.ondataavailable = (event) => {
      if (event.data.size === 0) return;
      // In order: one metadata frame, then the slice as one binary frame, then its answer.
      sending = sending.then(async () => {
        input.send(JSON.stringify({ type: 'audio', chunk_id: chunkId, action: 'data_chunk' }));
        input.send(await event.data.arrayBuffer());
        chunkId += 1;
        replies.push(await nextMessage(input));
      });
    };
    const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
    recorder.start(250);
    await new Promise((resolve) => setTimeout(resolve, recordMs));
    recorder.stop();
    await stopped;
    await sending;
    input.send(JSON.stringify({ action: 'upload_complete' }));
    const processed = JSON.parse(await nextMessage(input));
    const closeCode = await outputClosed;
    return { taskId, chunks: chunkId, replies, processed, outputFrames, closeCode };
  }, { token: server.token, recordMs: RECORD_MS, waitMs: WAIT_MS });

  assert.ok(result.chunks >= 2, `the recording went up in slices (${result.chunks})`);
  assert.deepEqual(new Set(result.replies), new Set(['File chunk received']), 'every slice acknowledged');
  assert.equal(result.processed.status, 'queued', `heard and queued: ${JSON.stringify(result.processed)}`);
  const success = result.outputFrames.find((frame) => frame.status === 'success');
  assert.ok(success && success.content.length > 0, `the reply came back: ${JSON.stringify(result.outputFrames)}`);
  assert.ok(result.outputFrames.some((frame) => frame.type === 'audio_complete'), 'the page leaves "processing"');

  const history = await call(server, 'GET', `/sessions/${result.taskId}/history`);
  assert.equal(history.status, 200, history.text);
  const [turn] = history.json.turns;
  assert.equal(turn.kind, 'ASR_FINAL', 'stored as speech');
  const heard = /^mock transcript of (\d+) ms of audio$/.exec(turn.user);
  assert.ok(heard, `the ASR's transcript is the user's text: ${turn.user}`);
  const ms = Number(heard[1]);
  assert.ok(ms > RECORD_MS - 700 && ms < RECORD_MS + 700, `the whole recording was decoded (${ms} ms of ${RECORD_MS})`);
  assert.equal(turn.assistant, success.content, 'the stored reply is the one sent');
});
