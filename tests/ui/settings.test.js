// The panel's settings form: a valid change is saved and applied at once (the form says which
// keys need a restart); a bad value gets an inline error from the API's field errors and the
// saved value stays.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { WAIT_MS, call, launchBrowser, observedPage, screenshot, sharedServer } from './harness.js';

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

async function saved(key) {
  const view = await call(server, 'GET', '/settings');
  assert.equal(view.status, 200);
  return view.json.keys.find((entry) => entry.key === key);
}

test('a bad value is refused inline and the old one stays', async () => {
  const panel = await observedPage(browser, 'panel');
  await panel.page.goto(`${server.url}/?token=${server.token}`);
  const temperature = panel.page.locator('#setting-llm_temperature');
  await temperature.waitFor({ timeout: WAIT_MS });

  // Headless serve plays nothing itself, and the status bar says so.
  await panel.page.waitForFunction(
    () => /overlay only/.test(document.getElementById('status-audio').textContent),
    null,
    { timeout: WAIT_MS },
  );

  // Each field says whether it applies at once or after a restart.
  const badge = (key) => panel.page.textContent(`[data-key="${key}"] .applies`);
  assert.equal(await badge('llm_temperature'), 'applies at once');
  assert.equal(await badge('bind'), 'restart to apply');

  // A good value first: saved and applied to the next turn.
  await temperature.fill('0.7');
  await panel.page.click('#settings-save');
  await panel.page.waitForFunction(
    () => /saved and applied/.test(document.getElementById('settings-summary').textContent),
    null,
    { timeout: WAIT_MS },
  );
  assert.equal((await saved('llm_temperature')).saved, '0.7');
  assert.equal((await saved('llm_temperature')).value, '0.7', 'running now, not only saved');

  // Two bad values at once: each gets its own message.
  await panel.page.locator('#setting-llm_temperature').fill('9');
  await panel.page.locator('#setting-stm_context_turns').fill('many');
  await panel.page.click('#settings-save');
  const error = panel.page.locator('#setting-llm_temperature-error');
  await panel.page.waitForFunction(
    () => document.getElementById('setting-llm_temperature-error').textContent !== '',
    null,
    { timeout: WAIT_MS },
  );
  assert.equal(await error.textContent(), 'expected 0 to 2', "the API's message, under the field");
  assert.equal(await panel.page.getAttribute('#setting-llm_temperature', 'aria-invalid'), 'true');
  assert.notEqual(await panel.page.textContent('#setting-stm_context_turns-error'), '', 'every bad field is marked');
  assert.equal(await panel.page.inputValue('#setting-llm_temperature'), '9', 'what the user typed stays to be fixed');
  assert.match(await panel.page.textContent('#settings-summary'), /nothing was saved/);
  await panel.page.locator('#setting-llm_temperature').scrollIntoViewIfNeeded();
  await screenshot(panel.page, 'panel-settings-error');

  assert.equal((await saved('llm_temperature')).saved, '0.7', 'the saved value is unchanged');
  assert.equal((await saved('stm_context_turns')).saved, null, 'nothing of the refused change was saved');

  // A reload shows the saved value again.
  await panel.page.click('#settings-reload');
  await panel.page.waitForFunction(
    () => document.getElementById('setting-llm_temperature')?.value === '0.7',
    null,
    { timeout: WAIT_MS },
  );
  assert.deepEqual(panel.problems.filter((problem) => !/status of 400/.test(problem)), [], 'no unexpected errors');

  // Leave the shared server's settings as they were.
  const reset = await call(server, 'PUT', '/settings', { llm_temperature: null });
  assert.equal(reset.status, 200);
  await panel.context.close();
});
