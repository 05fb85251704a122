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

// a small valid PDF (one page of text), as a patient's ECG report
const ecgPDF = `%PDF-1.4
1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj
2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj
3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 144]/Contents 4 0 R/Resources<</Font<</F1 5 0 R>>>>>>endobj
4 0 obj<</Length 62>>stream
BT /F1 14 Tf 20 100 Td (ECG 2 March: sinus rhythm, no ST changes) Tj ET
endstream endobj
5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj
trailer<</Root 1 0 R>>
%%EOF
`;

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
  await step('the patient pulls her record from both demo sources', async () => {
    await amy.page.click('a[href="#/sources"]');
    await amy.page.waitForSelector('#pull');
    a11y.push(...await axe(amy, 'sources'));
    await amy.page.click('#pull');
    await amy.page.waitForSelector('#pull-report', { timeout: 60000 });
    const report = await amy.page.textContent('#pull-report');
    check(report.includes('city-hospital') && report.includes('heart-lab'), 'both sources in the report: ' + report);
    await screenshot(amy, 'pulled');
  });
  await step('the patient uploads a PDF with its title, type and date', async () => {
    await amy.page.setInputFiles('#upload-file', { name: 'ecg-march.pdf', mimeType: 'application/pdf', buffer: Buffer.from(ecgPDF) });
    await amy.page.fill('#upload-title', 'ECG report, March');
    await amy.page.selectOption('#upload-type', '11502-2');
    await amy.page.fill('#upload-date', '2025-03-02');
    await amy.page.click('#upload button[type=submit]');
    await amy.page.waitForSelector('#upload-done');
    await screenshot(amy, 'uploaded');
  });
  await step('the consolidated record flags the abnormal results and shows the document inline', async () => {
    await amy.page.click('a[href="#/record"]');
    await amy.page.waitForSelector('#labs');
    const abnormal = await amy.page.$$eval('#labs tr.abnormal', (rows) => rows.map((r) => r.textContent));
    check(abnormal.some((r) => r.includes('LDL') && r.includes('High')), 'the LDL of 4.9 is flagged high: ' + abnormal.join(' | '));
    const conditions = await amy.page.textContent('main');
    check(conditions.includes('Hypertensive disorder') && conditions.includes('Amlodipine'), 'conditions and medications shown');
    const htn = (conditions.match(/Hypertensive disorder/g) || []).length;
    a11y.push(...await axe(amy, 'record'));
    await amy.page.click('#documents li:has-text("ECG report, March") button');
    await amy.page.waitForSelector('.viewer iframe');
    await screenshot(amy, 'record-with-viewer');
    void htn;
  });
  await step('the patient asks two specialists and narrows what one of them receives', async () => {
    await amy.page.click('a[href="#/ask"]');
    await amy.page.waitForSelector('#specialty');
    await amy.page.selectOption('#specialty', '394579002');
    await amy.page.fill('#question', 'I had chest pain in March. Do I need more than blood-pressure pills?');
    a11y.push(...await axe(amy, 'ask-1'));
    await amy.page.click('form button[type=submit]');
    await amy.page.check('label:has-text("Second Look Cardiology Clinic")');
    await amy.page.check('label:has-text("Northside Heart Institute")');
    a11y.push(...await axe(amy, 'ask-2'));
    await amy.page.click('form button[type=submit]');
    const northside = amy.page.locator('section.share[data-org="Organization/northside-heart"]');
    await northside.waitFor();
    const before = await northside.locator('.share-list').textContent();
    check(before.includes('ECG report, March'), 'the package shows the ECG before narrowing: ' + before);
    await northside.locator('summary').click();
    await northside.locator('label:has-text("ECG report, March")').click();
    const after = await northside.locator('.share-list').textContent();
    check(!after.includes('ECG report, March') && after.includes('left out'), 'the ECG is left out of Northside\'s package: ' + after);
    const clinic = await amy.page.locator('section.share[data-org="Organization/second-look-clinic"] .share-list').textContent();
    check(clinic.includes('ECG report, March'), 'the clinic still receives the ECG');
    a11y.push(...await axe(amy, 'ask-3'));
    await screenshot(amy, 'ask-what-is-shared');
    await amy.page.click('#grant');
    await amy.page.waitForSelector('#ask-result .success');
    await screenshot(amy, 'asked');
  });

  const rao = await person(browser, 'dr-rao', { viewport: { width: 1280, height: 900 } });
  const mehta = await person(browser, 'dr-mehta');
  await step('each specialist signs in and sees only its own request', async () => {
    for (const [p, login] of [[rao, 'dr-rao'], [mehta, 'dr-mehta']]) {
      await signIn(p, specialistApp, login);
      await p.page.waitForSelector('#inbox li');
      const items = await p.page.$$('#inbox li');
      check(items.length === 1, `${login} has one request, not ${items.length}`);
      a11y.push(...await axe(p, 'inbox'));
      await screenshot(p, 'inbox');
    }
  });
  await step('each specialist sees only what was released to it', async () => {
    for (const [p, hasECG] of [[rao, true], [mehta, false]]) {
      await p.page.click('#inbox li a');
      await p.page.waitForSelector('#question');
      const q = await p.page.textContent('#question');
      check(q.includes('chest pain'), 'the question: ' + q);
      const docs = await p.page.locator('main').textContent();
      check(docs.includes('ECG report, March') === hasECG, `${p.name} ${hasECG ? 'sees' : 'does not see'} the ECG`);
      const summary = await p.page.locator('.summary-section').count();
      check(summary > 0, 'the case summary is shown');
      a11y.push(...await axe(p, 'case'));
      await screenshot(p, 'case');
    }
  });
  const problems = [...amy.problems, ...rao.problems, ...mehta.problems];
  if (problems.length) throw new Error('console errors:\n' + problems.join('\n'));
  if (a11y.length) throw new Error('serious accessibility violations:\n' + a11y.join('\n'));
  console.log(`${passed} passed, 0 failed`);
} finally {
  await browser.close();
}
