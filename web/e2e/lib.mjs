// Helpers of the browser tests: Debian's Chromium through playwright-core,
// a fresh profile per person, every console error and CSP violation
// collected, screenshots, axe-core checks, and throttled measurements.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

// The flags this machine's Chromium needs (no sandbox as root, nothing
// that calls home: the network is closed).
const flags = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

export async function launch() {
  return chromium.launch({ executablePath: env('CHROMIUM'), headless: true, args: flags });
}

// A person is one browser context (own storage) with one page, on a phone
// sized screen unless told otherwise.
export async function person(browser, name, opts = {}) {
  const context = await browser.newContext({ viewport: opts.viewport || { width: 390, height: 844 }, locale: 'en-GB', deviceScaleFactor: 1 });
  const page = await context.newPage();
  const problems = [];
  // a refused or missing resource is the app's to handle (the browser logs
  // each failed load); scripts' errors and CSP violations are problems
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource: the server responded with a status of')) problems.push(`${name}: console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.setDefaultTimeout(opts.timeout || 20000);
  return { name, context, page, problems };
}

let shot = 0;
export async function screenshot(p, label) {
  const dir = env('SHOTS');
  mkdirSync(dir, { recursive: true });
  shot++;
  const file = path.join(dir, `${String(shot).padStart(2, '0')}-${p.name}-${label}.png`);
  await p.page.screenshot({ path: file, fullPage: true });
  return file;
}

// axe runs axe-core on the page (injected through the debugger, which the
// page's Content-Security-Policy does not govern) and returns the
// violations of impact serious or critical.
export async function axe(p, label) {
  await p.page.evaluate(axeSource);
  const res = await p.page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  return bad.map((v) => `${p.name} ${label}: ${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
}

export function check(cond, msg) {
  if (!cond) throw new Error('check failed: ' + msg);
}
