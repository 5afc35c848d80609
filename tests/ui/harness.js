// Shared parts of the browser tests: the `kotodama serve` process (started on a loopback
// port with a temp data dir and the mock TTS), headless Chromium via playwright-core, an
// event recorder fed by the pages' `window.__kotoObserve` hook, and screenshots.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../..');
export const artifacts = join(repoRoot, 'artifacts', 'ui');
mkdirSync(artifacts, { recursive: true });

const binary = process.env.KOTODAMA_BIN ?? join(repoRoot, 'target/debug/kotodama');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** How long any single wait may take before the test fails (never a sleep). */
export const WAIT_MS = 20_000;

/**
 * Starts `kotodama serve`; resolves once it printed its ready line.
 * @param {{dataDir?: string, bind?: string, env?: object}} options
 */
export async function startServer({ dataDir, bind = '127.0.0.1:0', env = {} } = {}) {
  const ownDir = !dataDir;
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'kotodama-ui-'));
  const child = spawn(binary, ['serve', '--bind', bind, '--data-dir', dir], {
    env: {
      ...process.env,
      TTS_PROVIDER: 'mock',
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
      KOTODAMA_TOKEN: '',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolveExit) => child.once('exit', (code, signal) => resolveExit({ code, signal })));
  const ready = await new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error('kotodama did not print its ready line in time')), 60_000);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      // `kotodama ready: http://127.0.0.1:PORT/?token=TOKEN  (LLM: …, audio: …)`
      const match = /ready: (http:\/\/[^/\s]+)\/\?token=(\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolveReady({ url: match[1], token: decodeURIComponent(match[2]) });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kotodama exited with ${code} before it was ready`));
    });
  });
  return {
    ...ready,
    dataDir: dir,
    port: Number(new URL(ready.url).port),
    /** SIGTERM (a clean shutdown) and wait for the exit. */
    async stop({ keepDir = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const result = await exited;
      if (ownDir && !keepDir) rmSync(dir, { recursive: true, force: true });
      return result;
    },
  };
}

/** The server run.sh started (env), or a fresh one for running a file alone. */
export async function sharedServer() {
  if (process.env.KOTODAMA_URL && process.env.KOTODAMA_TEST_TOKEN) {
    return {
      url: process.env.KOTODAMA_URL,
      token: process.env.KOTODAMA_TEST_TOKEN,
      dataDir: process.env.KOTODAMA_DATA_DIR,
      async stop() {},
    };
  }
  return startServer();
}

/** Headless Chromium; `args` are added (e.g. a fake microphone). */
export async function launchBrowser({ args = [] } = {}) {
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      ...args,
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      // OBS plays browser-source audio without a click; so must the test's overlay.
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/**
 * A page whose `window.__kotoObserve` events land in `events` (in order), with console
 * errors and CSP violations collected in `problems`. `firstRun`: the setup may open by itself.
 */
export async function observedPage(browser, name, { firstRun = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // The panel opens its first-run setup on a fresh data dir; tests of other parts start as a
  // streamer who has seen it (setup.test.js asks for `firstRun`).
  if (!firstRun) await context.addInitScript(() => localStorage.setItem('kotodama.setup', 'seen'));
  const page = await context.newPage();
  const events = [];
  const problems = [];
  const waiters = new Set();
  await page.exposeFunction('__kotoObserve', (event) => {
    events.push(event);
    for (const waiter of waiters) waiter();
  });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`${name} console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`${name} page error: ${error.message}`));
  /** Resolves with the first event (index ≥ from) matching `predicate`. */
  function waitFor(predicate, { from = 0, what = 'an event' } = {}) {
    return new Promise((resolveWait, reject) => {
      const check = () => {
        const index = events.findIndex((event, i) => i >= from && predicate(event));
        if (index >= 0) {
          waiters.delete(check);
          clearTimeout(timer);
          resolveWait({ event: events[index], index });
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${name}: no ${what} within ${WAIT_MS} ms; last events: ${JSON.stringify(events.slice(-8))}`));
      }, WAIT_MS);
      waiters.add(check);
      check();
    });
  }
  return { context, page, events, problems, waitFor };
}

/** Saves `artifacts/ui/<name>.png`; `transparent` keeps the page's own (transparent) background. */
export async function screenshot(page, name, { transparent = false } = {}) {
  const path = join(artifacts, `${name}.png`);
  await page.screenshot({ path, omitBackground: transparent });
  return path;
}

/** JSON request to the app with the token. */
export async function call(server, method, path, body) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // SSE or plain text: kept in `text`.
  }
  return { status: response.status, json, text };
}
