// The end-to-end flow of the second-opinion apps in a real browser (see
// web/browser_test.go, which starts `fhirgate demo` and runs this).
import { launch, person, screenshot, axe, check, env } from './lib.mjs';

const patientApp = env('PATIENT_APP');
const specialistApp = env('SPECIALIST_APP');
const a11y = [];
const steps = [];
let passed = 0;

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  passed++;
  steps.push(`${name} (${Date.now() - t0} ms)`);
  console.log(`ok   ${name}`);
}

async function signIn(p, app, login) {
  await p.page.goto(app);
  await p.page.click('#signin');
  await p.page.waitForURL(/\/authorize/);
  await p.page.click(`button[data-login="${login}"]`);
  await p.page.waitForURL((u) => u.toString().startsWith(app));
  await p.page.waitForSelector('#main[aria-busy="false"] h1');
}

const browser = await launch();
try {
  const amy = await person(browser, 'patient');
  await step('the patient signs in', async () => {
    await amy.page.goto(patientApp);
    await amy.page.waitForSelector('#signin');
    a11y.push(...await axe(amy, 'sign-in'));
    await screenshot(amy, 'sign-in');
    await amy.page.click('#signin');
    await amy.page.waitForSelector('button[data-login="amy"]');
    await screenshot(amy, 'login-page');
    await amy.page.click('button[data-login="amy"]');
    await amy.page.waitForSelector('#main[aria-busy="false"] h1');
    const h1 = await amy.page.textContent('h1');
    check(h1.includes('Amy'), 'the record is Amy\'s: ' + h1);
    await screenshot(amy, 'record-empty');
  });
  const problems = [...amy.problems];
  if (problems.length) throw new Error('console errors:\n' + problems.join('\n'));
  if (a11y.length) throw new Error('serious accessibility violations:\n' + a11y.join('\n'));
  console.log(`${passed} passed, 0 failed`);
} finally {
  await browser.close();
}
