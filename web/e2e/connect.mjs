// The patient connects a place that shares her records only with her own
// sign-in there (the demo's third EHR, behind a fake SMART login outside
// the gateway), comes back to the app, pulls, sees what it held, and
// disconnects it (see web/browser_test.go, which starts `fhirgate demo`).
import { launch, person, screenshot, axe, check, env } from './lib.mjs';

const patientApp = env('PATIENT_APP');
const a11y = [];
let passed = 0;

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  passed++;
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

const browser = await launch();
try {
  const amy = await person(browser, 'patient');
  await step('the patient signs in and opens her sources', async () => {
    await amy.page.goto(patientApp);
    await amy.page.click('#signin');
    await amy.page.click('button[data-login="amy"]');
    await amy.page.waitForSelector('#main[aria-busy="false"] h1');
    await amy.page.click('a[href="#/sources"]');
    await amy.page.waitForSelector('#connect-list li[data-source="sunrise-clinic"]');
    const item = await amy.page.textContent('#connect-list li[data-source="sunrise-clinic"]');
    check(item.includes('Sunrise Diabetes Clinic') && item.includes('Not connected'), 'the third source is listed, not connected: ' + item);
    a11y.push(...await axe(amy, 'connect-sources'));
    await screenshot(amy, 'connect-sources');
  });
  await step('she connects it: the source\'s sign-in page, then back to the app', async () => {
    await amy.page.click('#connect-list li[data-source="sunrise-clinic"] button.connect');
    await amy.page.waitForURL(/\/auth\/authorize\?/);
    const login = await amy.page.textContent('main');
    check(login.includes('Sunrise Diabetes Clinic patient portal') && !login.includes('fhir.test'), 'the source\'s own login page: ' + login.slice(0, 200));
    await screenshot(amy, 'source-login');
    await amy.page.click('button:has-text("Sign in as Amy Rivera")');
    await amy.page.waitForURL((u) => u.toString().startsWith(patientApp));
    await amy.page.waitForSelector('#connect-result');
    const note = await amy.page.textContent('#connect-result');
    check(note.includes('Sunrise Diabetes Clinic is connected'), 'the app says it is connected: ' + note);
    check(!amy.page.url().includes('result='), 'the app cleaned its address: ' + amy.page.url());
    const item = await amy.page.textContent('#connect-list li[data-source="sunrise-clinic"]');
    check(item.includes('Connected on'), 'the source shows connected: ' + item);
    a11y.push(...await axe(amy, 'connected'));
    await screenshot(amy, 'connected');
  });
  await step('she pulls, and the record holds what the third source had', async () => {
    await amy.page.click('#pull');
    await amy.page.waitForSelector('#pull-report', { timeout: 60000 });
    const report = await amy.page.textContent('#pull-report');
    check(report.includes('sunrise-clinic') && report.includes('city-hospital') && report.includes('heart-lab'), 'all three sources pulled: ' + report);
    check(!/failed/.test(report), 'no source failed: ' + report);
    await screenshot(amy, 'connected-pulled');
    await amy.page.click('a[href="#/record"]');
    await amy.page.waitForSelector('#labs');
    const record = await amy.page.textContent('main');
    check(record.includes('Diabetes mellitus type 2') && record.includes('Metformin') && record.includes('Hemoglobin A1c'), 'the diabetes care is in the record');
  });
  await step('she disconnects it', async () => {
    await amy.page.click('a[href="#/sources"]');
    await amy.page.waitForSelector('#connect-list li[data-source="sunrise-clinic"] button.disconnect');
    await amy.page.click('#connect-list li[data-source="sunrise-clinic"] button.disconnect');
    await amy.page.waitForSelector('#connect p.success');
    const item = await amy.page.textContent('#connect-list li[data-source="sunrise-clinic"]');
    check(item.includes('Not connected'), 'the source shows not connected: ' + item);
  });
  if (amy.problems.length) throw new Error('console errors:\n' + amy.problems.join('\n'));
  if (a11y.length) throw new Error('serious accessibility violations:\n' + a11y.join('\n'));
  console.log(`${passed} passed, 0 failed`);
} finally {
  await browser.close();
}
