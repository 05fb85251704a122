// Page weight and time to interactive of each app's first screen on a
// throttled "slow 4G" connection (Chrome DevTools' preset: 562.5 ms of
// latency, 1.44 Mbit/s down, 675 kbit/s up), with an empty cache. Writes
// PERF_OUT (JSON) and prints a table. Run by web/browser_test.go.
import { writeFileSync } from 'node:fs';
import { launch, person, env, check } from './lib.mjs';

const slow4G = { offline: false, latency: 562.5, downloadThroughput: (1.6 * 1024 * 1024 * 0.9) / 8, uploadThroughput: (750 * 1024 * 0.9) / 8 };
const runs = Number(process.env.PERF_RUNS || 3);

async function measure(p, url, ready, { throttle = true } = {}) {
  const cdp = await p.context.newCDPSession(p.page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  if (throttle) await cdp.send('Network.emulateNetworkConditions', slow4G);
  let bytes = 0;
  let requests = 0;
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; requests++; });
  await p.page.goto(url, { waitUntil: 'commit' });
  await p.page.waitForSelector(ready, { timeout: 60000 });
  const tti = await p.page.evaluate(() => {
    const m = performance.getEntriesByName('fhirgate:screen');
    return m.length ? m[m.length - 1].startTime : performance.now();
  });
  await p.page.waitForLoadState('networkidle');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await cdp.detach();
  return { bytes, requests, tti };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const browser = await launch();
const results = [];
try {
  const screens = [
    ['patient app, sign-in screen', env('PATIENT_APP'), '#signin', null],
    ['specialist workspace, sign-in screen', env('SPECIALIST_APP'), '#signin', null],
    ['patient app, record (signed in)', env('PATIENT_APP'), '#main[aria-busy="false"] h1', 'amy'],
    ['specialist workspace, inbox (signed in)', env('SPECIALIST_APP'), '#main[aria-busy="false"] h1', 'dr-rao'],
  ];
  for (const [name, url, ready, login] of screens) {
    const samples = [];
    for (let i = 0; i < runs; i++) {
      const p = await person(browser, 'perf');
      if (login) {
        await p.page.goto(url);
        await p.page.click('#signin');
        await p.page.click(`button[data-login="${login}"]`);
        await p.page.waitForSelector('#main[aria-busy="false"] h1');
      }
      samples.push(await measure(p, url, ready));
      await p.context.close();
    }
    const r = { screen: name, bytes: median(samples.map((s) => s.bytes)), requests: median(samples.map((s) => s.requests)), ttiMs: Math.round(median(samples.map((s) => s.tti))), runs };
    results.push(r);
    console.log(`${name}: ${(r.bytes / 1024).toFixed(1)} KB in ${r.requests} requests, interactive after ${r.ttiMs} ms (median of ${runs}, slow 4G)`);
  }
  writeFileSync(env('PERF_OUT'), JSON.stringify({ profile: 'slow 4G (562.5 ms, 1.44 Mbit/s down, 675 kbit/s up), cache disabled', results }, null, 2));
  for (const r of results.filter((x) => x.screen.includes('sign-in'))) check(r.bytes < 200 * 1024, `${r.screen} weighs ${r.bytes} bytes, over 200 KB`);
  console.log(`${results.length} passed, 0 failed`);
} finally {
  await browser.close();
}
