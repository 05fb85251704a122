// The end-to-end flow of the second-opinion apps in a real browser (see
// web/browser_test.go, which starts `fhirgate demo` and runs this).
import { launch, person, screenshot, axe, check, env } from './lib.mjs';

const patientApp = env('PATIENT_APP');
const specialistApp = env('SPECIALIST_APP');
const fhirBase = env('FHIR_BASE');
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

// a 1x1 PNG, as the photo of a result the patient sends in answer
const pixelPNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

// dicomImage builds a DICOM Part 10 file (explicit VR little endian) of a
// 16-bit grayscale gradient, as a scan a patient uploads.
function dicomImage(rows, cols) {
  const chunks = [Buffer.alloc(128), Buffer.from('DICM')];
  const el = (g, e, vr, value) => {
    const long = ['OB', 'OW', 'SQ', 'UN', 'UT'].includes(vr);
    const head = Buffer.alloc(long ? 12 : 8);
    head.writeUInt16LE(g, 0); head.writeUInt16LE(e, 2); head.write(vr, 4, 'latin1');
    if (long) head.writeUInt32LE(value.length, 8); else head.writeUInt16LE(value.length, 6);
    chunks.push(head, value);
  };
  const us = (v) => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return b; };
  const str = (s) => Buffer.from(s.length % 2 ? s + '\0' : s, 'latin1');
  el(0x0002, 0x0010, 'UI', str('1.2.840.10008.1.2.1'));
  el(0x0028, 0x0002, 'US', us(1));
  el(0x0028, 0x0004, 'CS', Buffer.from('MONOCHROME2 ', 'latin1'));
  el(0x0028, 0x0010, 'US', us(rows));
  el(0x0028, 0x0011, 'US', us(cols));
  el(0x0028, 0x0100, 'US', us(16));
  el(0x0028, 0x0101, 'US', us(12));
  el(0x0028, 0x0102, 'US', us(11));
  el(0x0028, 0x0103, 'US', us(0));
  const px = Buffer.alloc(rows * cols * 2);
  for (let y = 0; y < rows; y++) for (let x = 0; x < cols; x++) px.writeUInt16LE(Math.round(((x + y) / (rows + cols)) * 4095), 2 * (y * cols + x));
  el(0x7fe0, 0x0010, 'OW', px);
  return Buffer.concat(chunks);
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
    a11y.push(...await axe(amy, 'login-page'));
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
  await step('the patient uploads a scan (DICOM) and views it in place', async () => {
    await amy.page.setInputFiles('#upload-file', { name: 'chest-xray.dcm', mimeType: 'application/dicom', buffer: dicomImage(64, 64) });
    await amy.page.fill('#upload-title', 'Chest X-ray');
    await amy.page.selectOption('#upload-type', '18748-4');
    await amy.page.fill('#upload-date', '2025-03-03');
    await amy.page.click('#upload button[type=submit]');
    await amy.page.waitForSelector('#upload-done:has-text("Chest X-ray")');
    await amy.page.click('a[href="#/record"]');
    await amy.page.click('#documents li:has-text("Chest X-ray") button');
    await amy.page.waitForSelector('.viewer canvas');
    const size = await amy.page.$eval('.viewer canvas', (c) => [c.width, c.height]);
    check(size[0] === 64 && size[1] === 64, 'the scan is drawn at its size: ' + size);
    await screenshot(amy, 'dicom-viewer');
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
    // the gateway's preview of the packages ($second-opinion, preview=true)
    await northside.locator('.share-list li:has-text("ECG report, March")').waitFor();
    const count = async () => Number((await northside.locator('.share-list p').first().textContent()).match(/\d+/)[0]);
    const before = await count();
    // the demo insurer covers both (Patient/$coverage-check), in network,
    // with a co-payment
    for (const org of ['second-look-clinic', 'northside-heart']) {
      const cov = amy.page.locator(`section.share[data-org="Organization/${org}"] .coverage[data-coverage="covered"]`);
      await cov.waitFor();
      const said = await cov.textContent();
      check(said.includes('Covered by your insurance') && said.includes('in network') && said.includes('You pay €25.00'), `the patient is told ${org} is covered: ${said}`);
    }
    await northside.locator('summary').click();
    await northside.locator('label:has-text("ECG report, March")').click();
    await amy.page.waitForFunction(() => !document.querySelector('section.share[data-org="Organization/northside-heart"] .share-list').textContent.includes('ECG report, March'));
    await amy.page.waitForSelector('#preview-status:has-text("as it stands now")');
    const after = await count();
    check(after === before - 1, `the ECG is left out of Northside's package (${before} -> ${after} items)`);
    const clinic = await amy.page.locator('section.share[data-org="Organization/second-look-clinic"] .share-list').textContent();
    check(clinic.includes('ECG report, March'), 'the clinic still receives the ECG');
    // a period left out (2016, when the hypertension was diagnosed) shrinks
    // the clinic's package in the gateway's preview; clearing it restores it
    const second = amy.page.locator('section.share[data-org="Organization/second-look-clinic"]');
    const countOf = async (card) => Number((await card.locator('.share-list p').first().textContent()).match(/\d+/)[0]);
    const full = await countOf(second);
    await second.locator('summary').click();
    // each change asks the gateway again at once (the status says so until
    // the last answer is in)
    const settled = () => amy.page.waitForSelector('#preview-status:has-text("as it stands now")');
    await second.locator('input[type=date]').nth(0).fill('2016-01-01');
    await second.locator('input[type=date]').nth(1).fill('2016-12-31');
    await settled();
    const narrowed = await countOf(second);
    check(narrowed < full && (await second.locator('.share-list').textContent()).includes('ECG report, March'),
      `leaving out 2016 shrinks the clinic's package (${full} -> ${narrowed} items) and keeps the ECG of 2025`);
    await screenshot(amy, 'ask-period-left-out');
    await second.locator('input[type=date]').nth(0).fill('');
    await second.locator('input[type=date]').nth(1).fill('');
    await settled();
    check(await countOf(second) === full, 'clearing the period gives the clinic its whole package again');
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
      const abnormal = await p.page.locator('.summary-section[data-section="abnormal-results"]').textContent();
      check(abnormal.includes('LDL'), 'the LDL of 4.9 mmol/L is among the abnormal results: ' + abnormal.slice(0, 200));
      const expected = await p.page.locator('.summary-section[data-section="completeness"]').textContent();
      check(/missing/.test(expected) && expected.includes('ESC 2019'), 'missing cardiology tests are listed with their guideline: ' + expected.slice(0, 300));
      a11y.push(...await axe(p, 'case'));
      await screenshot(p, 'case');
    }
  });
  await step('both specialists accept; Dr. Rao asks the patient a follow-up question', async () => {
    for (const p of [rao, mehta]) {
      await p.page.click('#accept');
      await p.page.waitForSelector('#opinion');
    }
    await rao.page.fill('.reply textarea', 'Could you upload your latest HbA1c result, if you have one?');
    await rao.page.click('.reply button[type=submit]');
    await rao.page.waitForSelector('.thread-box .success');
    await screenshot(rao, 'asked-follow-up');
  });
  await step('the patient answers the follow-up question', async () => {
    await amy.page.click('a[href="#/requests"]');
    await amy.page.waitForSelector('[data-task] .reply textarea');
    const thread = await amy.page.textContent('main');
    check(thread.includes('HbA1c'), 'the question reached the patient');
    check(thread.includes('Waiting for your answer'), 'the request waits for her answer');
    await amy.page.fill('[data-task] .reply textarea', 'I have not had an HbA1c test. My sugar was normal last year: here is that result.');
    await amy.page.setInputFiles('[data-task] .reply input.attach', { name: 'glucose-2024.png', mimeType: 'image/png', buffer: Buffer.from(pixelPNG, 'base64') });
    await amy.page.click('[data-task] .reply button[type=submit]');
    await amy.page.waitForSelector('[data-task] .thread-box .success');
    a11y.push(...await axe(amy, 'requests'));
    await screenshot(amy, 'answered');
  });
  await step('both specialists write structured opinions', async () => {
    const opinions = [
      [rao, 'agree', 'Start a statin for the LDL of 4.9 mmol/L\nKeep amlodipine', 'Exercise ECG\nHbA1c', 'No sign of an acute coronary syndrome.'],
      [mehta, 'partially-agree', 'Start a statin for the LDL of 4.9 mmol/L\nAdd an ACE inhibitor', 'CT coronary angiography', ''],
    ];
    for (const [p, agreement, plan, tests, comment] of opinions) {
      await p.page.reload();
      await p.page.waitForSelector('#opinion');
      if (p === rao) {
        const t = await p.page.textContent('.thread-box');
        check(t.includes('not had an HbA1c') && t.includes('glucose-2024.png'), 'Dr. Rao reads the answer and its attachment');
        await p.page.click('.thread-box button:has-text("View")');
        await p.page.waitForSelector('.thread-box .viewer img');
        await screenshot(p, 'answer-with-attachment');
      }
      await p.page.selectOption('#op-agreement', agreement);
      await p.page.fill('#op-plan', plan);
      await p.page.fill('#op-tests', tests);
      await p.page.fill('#op-comment', comment);
      a11y.push(...await axe(p, 'opinion-form'));
      await screenshot(p, 'opinion-form');
      await p.page.click('#opinion button[type=submit]');
      await p.page.waitForSelector('.opinion');
      await screenshot(p, 'opinion-sent');
    }
  });
  await step('the patient compares the opinions side by side', async () => {
    await amy.page.reload();
    await amy.page.waitForSelector('#compare');
    // the gateway's note on her answer, in words
    const mine = await amy.page.textContent('main');
    check(mine.includes('This service') && mine.includes('Shared with Second Look Cardiology Clinic (added to its package): glucose-2024.png'),
      'the gateway tells the patient in words what it shared: ' + mine.slice(mine.indexOf('Shared with') - 60, mine.indexOf('Shared with') + 120));
    await amy.page.waitForSelector('#compare-verdicts li');
    const cmp = await amy.page.textContent('#compare');
    check(cmp.includes('Second Look Cardiology Clinic') && cmp.includes('Northside Heart Institute'), 'both opinions side by side');
    check(cmp.includes('Start a statin') && cmp.includes('CT coronary angiography'), 'their plans and tests');
    const verdicts = await amy.page.textContent('#compare-verdicts');
    check(/Current diagnosis: the specialists differ/.test(verdicts), 'agreement with the diagnosis differs: ' + verdicts);
    a11y.push(...await axe(amy, 'compare'));
    await screenshot(amy, 'compare');
  });
  await step('the patient revokes one specialist; its next page load is refused', async () => {
    amy.page.once('dialog', (d) => d.accept());
    await amy.page.click('button[data-revoke="Organization/northside-heart"]');
    await amy.page.waitForSelector('[data-task] .success:has-text("can no longer see")');
    await screenshot(amy, 'revoked');
    // the gateway itself refuses: the reload's FHIR reads answer 403
    const refusals = [];
    const onResponse = (r) => { if (r.url().startsWith(fhirBase) && r.status() === 403) refusals.push(r.url()); };
    mehta.page.on('response', onResponse);
    await mehta.page.reload();
    await mehta.page.waitForSelector('#main[aria-busy="false"] h1');
    mehta.page.off('response', onResponse);
    const text = await mehta.page.textContent('main');
    check(!text.includes('Amy') && !text.includes('chest pain'), 'the revoked specialist sees nothing of Amy: ' + text.slice(0, 300));
    check(refusals.length > 0, 'the gateway answered 403 to the revoked specialist\'s reads');
    const alert = await mehta.page.textContent('#main [role=alert]');
    check(alert.includes('stopped sharing'), 'the specialist is told the patient stopped sharing: ' + alert);
    a11y.push(...await axe(mehta, 'refused'));
    await screenshot(mehta, 'refused');
    await rao.page.reload();
    await rao.page.waitForSelector('.opinion');
  });
  await step('a specialist declines a request with a reason the patient reads', async () => {
    await amy.page.click('a[href="#/ask"]');
    await amy.page.selectOption('#specialty', '394589003');
    await amy.page.fill('#question', 'Is my kidney function all right?');
    await amy.page.click('form button[type=submit]');
    await amy.page.check('label:has-text("Second Look Cardiology Clinic")');
    await amy.page.click('form button[type=submit]');
    await amy.page.waitForSelector('#preview-status:has-text("as it stands now")');
    await amy.page.click('#grant');
    await amy.page.waitForSelector('#ask-result .success');
    await rao.page.click('a[href="#/inbox"]');
    await rao.page.click('#inbox li:has-text("kidney") a');
    await rao.page.waitForSelector('#question');
    await rao.page.click('summary:has-text("Decline")');
    await rao.page.fill('#decline-reason', 'We see heart patients only; please ask a nephrologist.');
    await rao.page.click('button:has-text("Decline the request")');
    await rao.page.waitForSelector('.badge:has-text("Declined")');
    await screenshot(rao, 'declined');
    await amy.page.click('a[href="#/requests"]');
    await amy.page.waitForSelector('[data-task]:has-text("please ask a nephrologist")');
    const item = await amy.page.textContent('[data-task]:has-text("please ask a nephrologist")');
    check(item.includes('Declined'), 'the patient sees the request declined: ' + item.slice(0, 200));
  });
  await step('the patient sees who saw her record', async () => {
    await amy.page.click('a[href="#/access"]');
    await amy.page.waitForSelector('#access-log li');
    const log = await amy.page.textContent('#access-log');
    check(log.includes('Dr. Priya Rao (Second Look Cardiology Clinic)'), 'the specialist and her clinic, by name, in who saw the record: ' + log.slice(0, 400));
    check(log.includes('refused'), 'the revoked specialist\'s refused attempt is there too');
    const who = await amy.page.textContent('#access-who');
    check(who.includes('Dr. Arjun Mehta (Northside Heart Institute)') && /refused/.test(who), 'the summary names each party and the refusals: ' + who.slice(0, 300));
    a11y.push(...await axe(amy, 'access'));
    await screenshot(amy, 'who-saw');
  });
  const problems = [...amy.problems, ...rao.problems, ...mehta.problems];
  if (problems.length) throw new Error('console errors:\n' + problems.join('\n'));
  if (a11y.length) throw new Error('serious accessibility violations:\n' + a11y.join('\n'));
  console.log(`${passed} passed, 0 failed`);
} finally {
  await browser.close();
}
