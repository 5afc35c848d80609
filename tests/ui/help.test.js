// The Help card and the "no voice" notice, as a streamer filing a bug report meets them:
// "Copy diagnostics" puts a report on the clipboard (versions, health, changed settings, no
// secret), "Open logs folder" hands the log folder to the platform's file manager (a recording
// stand-in for xdg-open here), and a test tone instead of a voice is said in the audio card and
// the status bar.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { WAIT_MS, launchBrowser, observedPage, screenshot, startServer } from './harness.js';

let browser;
let server;
let bin;

before(async () => {
  browser = await launchBrowser();
  bin = mkdtempSync(join(tmpdir(), 'kotodama-help-'));
  writeFileSync(join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s' "$1" > '${join(bin, 'opened')}'\n`);
  chmodSync(join(bin, 'xdg-open'), 0o755);
  server = await startServer({
    env: { PATH: `${bin}:${process.env.PATH}`, OPENAI_API_KEY: 'sk-help-test-secret' },
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(bin, { recursive: true, force: true });
});

test('a test tone is said in the audio card and the status bar', async () => {
  const panel = await observedPage(browser, 'panel');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  const notice = panel.page.locator('#audio-no-voice');
  await notice.waitFor({ state: 'visible', timeout: WAIT_MS });
  assert.match(await notice.textContent(), /test tone/);
  assert.match(await notice.textContent(), /espeak-ng/, 'says what to install');
  const chip = panel.page.locator('#status-tts');
  await panel.page.waitForFunction(() => /no voice/.test(document.getElementById('status-tts').textContent), null, { timeout: WAIT_MS });
  assert.match(await chip.getAttribute('class'), /warn/);
  await screenshot(panel.page, 'help-no-voice');
  assert.deepEqual(panel.problems, []);
  await panel.context.close();
});

test('Copy diagnostics puts a report without secrets on the clipboard', async () => {
  const panel = await observedPage(browser, 'panel');
  await panel.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.page.locator('#diagnostics-copy').click();
  const result = panel.page.locator('#help-result');
  await panel.page.waitForFunction(() => /copied/i.test(document.getElementById('help-result').textContent), null, { timeout: WAIT_MS });
  const copied = await panel.page.evaluate(() => navigator.clipboard.readText());
  const report = JSON.parse(copied);
  assert.equal(report.health.status, 'ok');
  assert.equal(report.changedSettings.openai_api_key, '(set)');
  assert.equal(report.logFolder, join(server.dataDir, 'logs'));
  assert.ok(!copied.includes('sk-help-test-secret'), 'no API key in the report');
  assert.ok(!copied.includes(server.token), 'no token in the report');
  assert.match(await result.textContent(), /paste them into your bug report/);
  assert.deepEqual(panel.problems, []);
  await panel.context.close();
});

test('Open logs folder hands the log folder to the file manager', async () => {
  const panel = await observedPage(browser, 'panel');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  await panel.page.locator('#logs-open').click();
  const folder = join(server.dataDir, 'logs');
  await panel.page.waitForFunction(() => /^Opened /.test(document.getElementById('help-result').textContent), null, { timeout: WAIT_MS });
  assert.equal(await panel.page.locator('#help-result').textContent(), `Opened ${folder}`);
  const opened = join(bin, 'opened');
  const deadline = Date.now() + WAIT_MS;
  while (!existsSync(opened) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(readFileSync(opened, 'utf8'), folder, 'xdg-open got the folder');
  await screenshot(panel.page, 'help-card');
  assert.deepEqual(panel.problems, []);
  await panel.context.close();
});
