// The panel's layout from 720 px to 4K: STOP is always in the viewport (also while the
// settings are scrolled) and never overlaps the message box; nothing overflows sideways.
// Screenshots at each width go to artifacts/ui/layout-<width>.png.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { WAIT_MS, launchBrowser, screenshot, sharedServer } from './harness.js';

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

const SIZES = [
  { width: 720, height: 900 },
  { width: 1280, height: 800 },
  { width: 2560, height: 1440 },
];

/** Bounding boxes of STOP and the message box, the viewport, and the page's sideways overflow. */
function geometry(page) {
  return page.evaluate(() => {
    const box = (selector) => {
      const rect = document.querySelector(selector).getBoundingClientRect();
      return { left: rect.left, top: rect.top, right: rect.right, bottom: rect.bottom };
    };
    return {
      stop: box('#interrupt'),
      input: box('#composer-input'),
      viewport: { width: window.innerWidth, height: window.innerHeight },
      overflowX: document.documentElement.scrollWidth - window.innerWidth,
      // What is drawn at STOP's centre is STOP itself (nothing covers it).
      stopOnTop: (() => {
        const rect = document.querySelector('#interrupt').getBoundingClientRect();
        const hit = document.elementFromPoint(rect.left + rect.width / 2, rect.top + rect.height / 2);
        return Boolean(hit && hit.closest('#interrupt'));
      })(),
    };
  });
}

const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
const inViewport = (a, viewport) => a.top >= 0 && a.left >= 0 && a.bottom <= viewport.height && a.right <= viewport.width;

for (const size of SIZES) {
  test(`at ${size.width}×${size.height}: STOP in view, never over the message box`, async () => {
    const context = await browser.newContext({ viewport: size });
    await context.addInitScript(() => localStorage.setItem('kotodama.setup', 'seen'));
    const page = await context.newPage();
    await page.goto(`${server.url}/?token=${server.token}`);
    await page.locator('#setting-llm_model').waitFor({ timeout: WAIT_MS });

    const first = await geometry(page);
    assert.ok(first.overflowX <= 0, `no sideways scrolling: ${first.overflowX}px`);
    assert.ok(inViewport(first.stop, first.viewport), `STOP in view: ${JSON.stringify(first.stop)}`);
    assert.ok(!overlap(first.stop, first.input), `STOP and the input apart: ${JSON.stringify(first)}`);
    assert.ok(first.stopOnTop, 'nothing covers STOP');
    await screenshot(page, `layout-${size.width}`);

    // Scroll the settings far down (the Advanced group open): STOP stays.
    await page.click('[data-group="advanced"] > summary');
    await page.locator('#settings-save').scrollIntoViewIfNeeded();
    const scrolled = await geometry(page);
    assert.ok(inViewport(scrolled.stop, scrolled.viewport), `STOP in view while the settings scroll: ${JSON.stringify(scrolled.stop)}`);
    assert.ok(!overlap(scrolled.stop, scrolled.input), `STOP never over the input: ${JSON.stringify(scrolled)}`);
    assert.ok(scrolled.stopOnTop, 'nothing scrolls over STOP');
    await screenshot(page, `layout-${size.width}-settings-scrolled`);

    // And the message box comes back into view with STOP still apart from it.
    await page.locator('#composer-input').scrollIntoViewIfNeeded();
    const back = await geometry(page);
    assert.ok(inViewport(back.input, back.viewport), 'the message box can be reached');
    assert.ok(!overlap(back.stop, back.input), `apart again: ${JSON.stringify(back)}`);
    await context.close();
  });
}
