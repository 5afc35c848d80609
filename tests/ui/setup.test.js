// The first-run setup on a fresh data dir: it opens by itself (STOP stays clickable above
// it), can be skipped and opened again, saves the language, tests an LLM connection against a
// loopback fake (the model list) and an address nobody answers (a sentence), speaks a voice
// sample that reaches the overlay through the relay, offers personas (a broken persona file
// is named with its line) and saves one as a file, and ends on the OBS URL with a live preview.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { WAIT_MS, call, launchBrowser, observedPage, screenshot, startServer } from './harness.js';

let server;
let browser;
let fake;

/** A loopback OpenAI-compatible server that lists two models. */
function startFakeLlm() {
  return new Promise((resolve) => {
    const http = createServer((request, response) => {
      if (request.method === 'GET' && request.url === '/v1/models') {
        response.writeHead(200, { 'Content-Type': 'application/json' });
        response.end(JSON.stringify({ object: 'list', data: [{ id: 'llama3.2' }, { id: 'qwen2.5' }] }));
      } else {
        response.writeHead(404).end();
      }
    });
    http.listen(0, '127.0.0.1', () => resolve({ http, base: `http://127.0.0.1:${http.address().port}/v1` }));
  });
}

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  fake = await startFakeLlm();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  fake?.http.close();
});

const saved = async (key) => (await call(server, 'GET', '/settings')).json.keys.find((entry) => entry.key === key).saved;
const result = (page, id) => page.textContent(`#${id}`);
const waitText = (page, id, pattern) =>
  page.waitForFunction(([element, source]) => new RegExp(source).test(document.getElementById(element).textContent), [id, pattern.source], {
    timeout: WAIT_MS,
  });

test('first run: a setup that can be skipped, reopened and walked through', async () => {
  const panel = await observedPage(browser, 'panel', { firstRun: true });
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.page.waitForSelector('#setup[open]', { timeout: WAIT_MS });
  // The demo is labelled as such.
  await waitText(panel.page, 'status-llm', /demo/);
  // STOP is above the setup, clickable.
  const stopOnTop = await panel.page.evaluate(() => {
    const rect = document.getElementById('interrupt').getBoundingClientRect();
    return Boolean(document.elementFromPoint(rect.left + rect.width / 2, rect.top + rect.height / 2)?.closest('#interrupt'));
  });
  assert.ok(stopOnTop, 'STOP is not covered by the setup');
  await screenshot(panel.page, 'setup-language');
  // At 720 px too: the setup sits below STOP's bar, apart from it.
  await panel.page.setViewportSize({ width: 720, height: 900 });
  const apart = await panel.page.evaluate(() => {
    const stop = document.getElementById('interrupt').getBoundingClientRect();
    const dialog = document.getElementById('setup').getBoundingClientRect();
    return stop.bottom <= dialog.top || dialog.bottom <= stop.top || stop.right <= dialog.left || dialog.right <= stop.left;
  });
  assert.ok(apart, 'the setup never covers STOP at 720 px');
  await screenshot(panel.page, 'setup-720');
  await panel.page.setViewportSize({ width: 1280, height: 800 });

  await panel.page.click('#setup-skip');
  assert.equal(await panel.page.isVisible('#setup'), false, 'skipped');
  await panel.page.click('#setup-open');
  await panel.page.waitForSelector('#setup[open]', { timeout: WAIT_MS });

  // 1. Language.
  await panel.page.selectOption('#setup-lang', 'ja');
  await panel.page.click('#setup-next');
  await panel.page.waitForSelector('[data-step="brain"]:not([hidden])', { timeout: WAIT_MS });
  assert.equal(await saved('default_lang'), 'ja');
  assert.equal(await panel.page.inputValue('#composer-lang'), 'ja', 'the composer speaks it too');

  // 2. The AI: a preset, an address nobody answers, then the fake.
  await panel.page.click('[data-preset="ollama"]');
  assert.equal(await panel.page.inputValue('#setup-llm-base'), 'http://127.0.0.1:11434/v1');
  const closed = await new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
  await panel.page.fill('#setup-llm-base', `http://127.0.0.1:${closed}/v1`);
  await panel.page.click('#setup-llm-test');
  await waitText(panel.page, 'setup-llm-result', /Nothing answers at/);
  assert.match(await result(panel.page, 'setup-llm-result'), /Is the server running/, 'a sentence with what to do');
  await panel.page.fill('#setup-llm-base', fake.base);
  await panel.page.fill('#setup-llm-model', '');
  await panel.page.click('#setup-llm-test');
  await waitText(panel.page, 'setup-llm-result', /Connected: 2 model/);
  const models = await panel.page.$$eval('#setup-llm-models option', (options) => options.map((option) => option.value));
  assert.deepEqual(models, ['llama3.2', 'qwen2.5']);
  assert.equal(await panel.page.inputValue('#setup-llm-model'), 'llama3.2', 'the first model is picked');
  await screenshot(panel.page, 'setup-llm');
  // Back to the demo for the rest (the fake writes no replies).
  await panel.page.click('[data-preset="demo"]');
  await panel.page.click('#setup-next');
  await panel.page.waitForSelector('[data-step="voice"]:not([hidden])', { timeout: WAIT_MS });

  // 3. Voice: the provider's list, and a sample spoken through the relay to the overlay.
  await panel.page.selectOption('#setup-voice-provider', 'mock');
  await panel.waitFor((event) => event.kind === 'voices' && event.provider === 'mock', { what: 'the voice list' });
  assert.match(await result(panel.page, 'setup-voice-note'), /tone/);
  const overlay = await observedPage(browser, 'overlay');
  await overlay.page.goto(`${server.url}/overlay?token=${server.token}&session=setup`);
  await overlay.waitFor((event) => event.kind === 'state' && event.state === 'open', { what: 'overlay socket' });
  await panel.page.click('#setup-voice-test');
  await overlay.waitFor((event) => event.kind === 'frame' && event.type === 'SPEECH_CHUNK' && event.sessionId === 'setup', {
    what: 'the sample on the overlay',
  });
  await panel.waitFor((event) => event.kind === 'voice-test', { what: 'the voice test' });
  await waitText(panel.page, 'setup-voice-result', /Spoken:/);
  await overlay.context.close();
  // A voice that fails its test says so, and what to do.
  await panel.page.route('**/tts/speak', (route) =>
    route.fulfill({
      contentType: 'text/event-stream',
      body: 'event: error\ndata: {"code":"tts_failed","message":"the voice engine exited with status 1"}\n\n',
    }),
  );
  await panel.page.click('#setup-voice-test');
  await waitText(panel.page, 'setup-voice-result', /failed its test/);
  assert.equal(
    await result(panel.page, 'setup-voice-result'),
    'The voice failed its test: the voice engine exited with status 1. Pick another voice or engine.',
  );
  await panel.page.unroute('**/tts/speak');
  await panel.page.click('#setup-next');
  await panel.page.waitForSelector('[data-step="character"]:not([hidden])', { timeout: WAIT_MS });

  // 4. Character: presets and files; a broken file is named with its line.
  const personas = join(server.dataDir, 'personas');
  mkdirSync(personas, { recursive: true });
  writeFileSync(join(personas, 'broken.toml'), 'name = "Oops"\nlang = en\n');
  await panel.page.click('#setup-back');
  await panel.page.click('#setup-next');
  await panel.waitFor((event) => event.kind === 'personas' && event.broken.length === 1, { what: 'the persona list' });
  assert.match(await result(panel.page, 'setup-persona-errors'), /^personas\/broken\.toml, line 2:/);
  await panel.page.click('[data-persona="hana"]');
  assert.match(await panel.page.inputValue('#setup-persona-prompt'), /ハナ/);
  await panel.page.fill('#setup-persona-style', '元気でゲームが大好き。');
  assert.match(await panel.page.inputValue('#setup-persona-prompt'), /ゲームが大好き/, 'the prompt follows the edit');
  // A character's own quick "hmm…": refused inline when too short, saved in its file, applied with it.
  assert.equal(await panel.page.inputValue('#setup-persona-quick-ack'), '', 'a preset keeps the global setting');
  await panel.page.fill('#setup-persona-quick-ack', '50');
  await panel.page.click('#setup-persona-save');
  await waitText(panel.page, 'setup-persona-result', /quick_ack_ms is 50: expected 0 \(off\) or 100 to 10000 ms/);
  await panel.page.fill('#setup-persona-quick-ack', '400');
  await panel.page.click('#setup-persona-save');
  await waitText(panel.page, 'setup-persona-result', /Saved as personas\/hana\.toml/);
  const hanaFile = readFileSync(join(personas, 'hana.toml'), 'utf8');
  assert.match(hanaFile, /ゲームが大好き/);
  assert.match(hanaFile, /^quick_ack_ms = 400$/m);
  await screenshot(panel.page, 'setup-character');
  await panel.page.click('#setup-next');
  await panel.page.waitForSelector('[data-step="obs"]:not([hidden])', { timeout: WAIT_MS });
  assert.match(await saved('system_prompt'), /ハナ/);
  assert.equal(String(await saved('quick_ack_ms')), '400', "the character's quick acknowledgment came with it");

  // 5. OBS: the URL and a live preview.
  const url = await panel.page.inputValue('#setup-overlay-url');
  assert.match(url, new RegExp(`token=${server.token}`));
  await panel.page.waitForFunction(() => /preview=1/.test(document.getElementById('setup-overlay-preview').src), null, { timeout: WAIT_MS });
  await panel.page.frameLocator('#setup-overlay-preview').locator('#subtitle.visible').waitFor({ timeout: WAIT_MS });
  await screenshot(panel.page, 'setup-obs');
  await panel.page.click('#setup-next');
  assert.equal(await panel.page.isVisible('#setup'), false, 'finished');

  // Done once: a reload does not open it again.
  await panel.page.reload();
  await panel.page.locator('#setting-llm_model').waitFor({ timeout: WAIT_MS });
  assert.equal(await panel.page.isVisible('#setup'), false);
  assert.ok(existsSync(join(server.dataDir, 'kotodama.toml')));
  assert.deepEqual(panel.problems.filter((problem) => !/status of 40\d/.test(problem)), []);
  await panel.context.close();
});
