// Keyboard use and long translations: the patient signs in with the
// keyboard alone; every screen of both apps is laid out on a 320 px wide
// phone in the pseudo-locale en-XA (every string about 60% longer, as Hindi
// often is) without anything wider than the screen; the Hindi strings are
// shown. Run by web/browser_test.go.
import { launch, person, screenshot, axe, check, env } from './lib.mjs';

const patientApp = env('PATIENT_APP');
const specialistApp = env('SPECIALIST_APP');
let passed = 0;
const problems = [];

async function step(name, fn) {
  await fn();
  passed++;
  console.log(`ok   ${name}`);
}

// overflow names the elements wider than the viewport.
async function overflow(p) {
  return p.page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    const out = [];
    if (document.documentElement.scrollWidth > w) out.push(`page ${document.documentElement.scrollWidth}px > ${w}px`);
    for (const el of document.querySelectorAll('body *')) {
      if (el.closest('.table-wrap')) continue; // wide tables scroll inside their region
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.right > w + 1) out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${el.className} right=${Math.round(r.right)}`);
    }
    return out.slice(0, 5);
  });
}

const browser = await launch();
try {
  const amy = await person(browser, 'patient-keyboard', { viewport: { width: 320, height: 640 } });
  await step('the patient signs in with the keyboard alone', async () => {
    await amy.page.goto(patientApp);
    await amy.page.waitForSelector('#signin');
    // the screen's heading has the focus; the sign-in button follows it
    check(await amy.page.evaluate(() => document.activeElement.tagName === 'H1'), 'the heading has the focus');
    for (let i = 0; i < 5 && !(await amy.page.evaluate(() => document.activeElement.id === 'signin')); i++) await amy.page.keyboard.press('Tab');
    check(await amy.page.evaluate(() => document.activeElement.id === 'signin'), 'Tab reaches the sign-in button');
    await amy.page.keyboard.press('Enter');
    await amy.page.waitForSelector('button[data-login="amy"]');
    for (let i = 0; i < 10 && !(await amy.page.evaluate(() => document.activeElement?.dataset?.login === 'amy')); i++) await amy.page.keyboard.press('Tab');
    await amy.page.keyboard.press('Enter');
    await amy.page.waitForSelector('#main[aria-busy="false"] h1');
    check(await amy.page.evaluate(() => document.activeElement.tagName === 'H1'), 'focus moves to the new screen\'s heading');
    problems.push(...amy.problems);
  });

  await step('every patient screen fits a 320 px phone with 60% longer strings', async () => {
    for (const hash of ['#/record', '#/sources', '#/ask', '#/requests', '#/access']) {
      await amy.page.goto(patientApp + '?lang=en-XA' + hash);
      await amy.page.waitForSelector('#main[aria-busy="false"] h1');
      const bad = await overflow(amy);
      check(bad.length === 0, `${hash} overflows: ${bad.join('; ')}`);
      await screenshot(amy, 'long-' + hash.slice(2));
    }
    await amy.page.goto(patientApp + '?lang=en-XA#/ask');
    await amy.page.waitForSelector('#question');
    await amy.page.fill('#question', 'A question');
    await amy.page.click('form button[type=submit]');
    await amy.page.waitForSelector('fieldset');
    check((await overflow(amy)).length === 0, 'the specialists step overflows');
  });

  await step('the Hindi strings are shown, and their pages pass axe', async () => {
    await amy.page.goto(patientApp + '?lang=hi#/record');
    await amy.page.waitForSelector('#main[aria-busy="false"] h1');
    const h1 = await amy.page.textContent('h1');
    check(h1.includes('स्वास्थ्य रिकॉर्ड'), 'the heading is in Hindi: ' + h1);
    check(await amy.page.evaluate(() => document.documentElement.lang === 'hi'), 'the page says it is Hindi');
    check((await overflow(amy)).length === 0, 'the Hindi record overflows');
    problems.push(...await axe(amy, 'hindi-record'));
    await screenshot(amy, 'hindi-record');
    await amy.page.goto(patientApp + '?lang=en#/record');
  });

  const rao = await person(browser, 'specialist-long', { viewport: { width: 320, height: 640 } });
  await step('the specialist workspace fits a 320 px phone with 60% longer strings', async () => {
    await rao.page.goto(specialistApp + '?lang=en-XA');
    await rao.page.click('#signin');
    await rao.page.click('button[data-login="dr-rao"]');
    await rao.page.waitForSelector('#main[aria-busy="false"] h1');
    const bad = await overflow(rao);
    check(bad.length === 0, `the inbox overflows: ${bad.join('; ')}`);
    await screenshot(rao, 'long-inbox');
    problems.push(...rao.problems);
  });
  if (problems.length) throw new Error(problems.join('\n'));
  console.log(`${passed} passed, 0 failed`);
} finally {
  await browser.close();
}
