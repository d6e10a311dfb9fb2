// The analyst console in real headless Chromium (Debian's `chromium`),
// driven by playwright-core. Started by tests/e2e/console_browser.rs, which
// passes the daemon's address, the link from a real email and the alerts.
//
// Every step finds elements by their accessible names (what a person and a
// screen reader see), so a renamed button fails here.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(process.env.PLAYWRIGHT_DIR + '/');
const { chromium } = require('playwright-core');

const BASE = process.env.BASE;
const MAIL_LINK = process.env.MAIL_LINK; // the console link of the `med` alert, from the email
const CRIT = process.env.FP_CRIT;
const MED = process.env.FP_MED;
const PASSWORD = process.env.PASSWORD;
const SHOTS = process.env.SHOT_DIR;

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });

async function person() {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(10000);
  return page;
}

async function signIn(page, name, url = BASE + '/') {
  await page.goto(url);
  assert.match(page.url(), /\/login/);
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState();
}

const text = async (page, sel) => (await page.locator(sel).innerText()).trim();

try {
  // An analyst opens the alert from the email's link, signs in, lands on it.
  const ana = await person();
  await signIn(ana, 'ana', MAIL_LINK);
  assert.equal(new URL(ana.url()).pathname, `/alerts/${MED}`);
  await ana.getByRole('button', { name: 'Assign to me' }).click();
  assert.equal(await text(ana, '#assignee'), 'ana');
  await ana.getByRole('button', { name: 'Acknowledge', exact: true }).click();
  assert.equal(await text(ana, '#state'), 'acknowledged');
  await ana.getByLabel('Note text').fill('Called the applicant; same person, new email.');
  await ana.getByRole('button', { name: 'Add note' }).click();
  await ana.getByLabel('Outcome').selectOption('false_positive');
  await ana.getByLabel('Note', { exact: true }).fill('Known customer, address change.');
  await ana.getByRole('button', { name: 'Resolve', exact: true }).click();
  assert.equal(await text(ana, '#state'), 'resolved');
  const timeline = await text(ana, 'ol.timeline');
  for (const want of ['assigned to ana', 'open → acknowledged', 'Called the applicant', 'acknowledged → resolved', 'false_positive']) {
    assert.ok(timeline.includes(want), `timeline has "${want}": ${timeline}`);
  }

  // Filter the inbox: critical only.
  await ana.goto(BASE + '/');
  await ana.getByLabel('Severity').selectOption('critical');
  await ana.getByRole('button', { name: 'Filter' }).click();
  const rows = ana.locator('table.inbox tbody tr');
  assert.equal(await rows.count(), 1);
  assert.ok((await rows.first().innerText()).includes('aml-red-flag-high'));
  assert.match(ana.url(), /severity=critical/);

  // Four-eyes: lee proposes, cannot approve; kim approves.
  const lee = await person();
  await signIn(lee, 'lee', `${BASE}/alerts/${CRIT}`);
  // A lead reveals one field; the reveal is audited.
  assert.ok((await lee.content()).includes('a***@example.com'));
  await lee.getByRole('button', { name: 'Reveal Email' }).click();
  assert.equal(await text(lee, '.revealed'), 'alice@example.com');
  await lee.getByLabel('Outcome').selectOption('escalated_to_aml_officer');
  await lee.getByLabel('Note', { exact: true }).fill('Sanctions list hit confirmed.');
  await lee.getByRole('button', { name: 'Resolve', exact: true }).click();
  assert.equal(await text(lee, '#state'), 'pending approval');
  assert.equal(await lee.getByRole('button', { name: 'Approve' }).count(), 0);
  const kim = await person();
  await signIn(kim, 'kim', `${BASE}/alerts/${CRIT}`);
  await kim.getByRole('button', { name: 'Approve' }).click();
  assert.equal(await text(kim, '#state'), 'resolved');
  const caseFile = await (await kim.request.get(`${BASE}/alerts/${CRIT}/case.json`)).json();
  const events = caseFile.timeline.map((e) => `${e.what}|${e.by ?? ''}`);
  for (const want of ['revealed field email|lee', 'resolution proposed (pending approval)|lee', 'approved: resolved|kim']) {
    assert.ok(events.includes(want), `case file has ${want}: ${events}`);
  }

  // Silence similar, from the alert's page.
  await lee.goto(`${BASE}/alerts/${MED}`);
  await lee.getByText('Silence similar…').click();
  await lee.getByLabel('Reason').fill('Known duplicate pattern during migration');
  const expiry = new Date(Date.now() + 7 * 86400e3).toISOString().slice(0, 10);
  await lee.getByLabel('Expiry').fill(expiry);
  await lee.getByRole('button', { name: 'Silence similar', exact: true }).click();
  assert.equal(await text(lee, '.flash'), 'Silence created.');
  await lee.goto(BASE + '/silences');
  assert.ok((await lee.content()).includes('Known duplicate pattern during migration'));

  // Screenshots for the README: the inbox and an alert page.
  if (SHOTS) {
    await lee.goto(BASE + '/');
    await lee.screenshot({ path: `${SHOTS}/console-inbox.png`, fullPage: true });
    await lee.goto(`${BASE}/alerts/${CRIT}`);
    await lee.screenshot({ path: `${SHOTS}/console-alert.png`, fullPage: true });
  }

  // A viewer sees no action, and the server refuses one sent anyway.
  const vic = await person();
  await signIn(vic, 'vic', `${BASE}/alerts/${MED}`);
  assert.equal(await vic.getByRole('button', { name: 'Acknowledge', exact: true }).count(), 0);
  const csrf = await vic.locator('input[name="csrf"]').first().inputValue();
  const refused = await vic.request.post(`${BASE}/alerts/${CRIT}/reopen`, { form: { csrf } });
  assert.equal(refused.status(), 403);

  // Sign out: the session is over.
  await ana.getByRole('button', { name: 'Sign out' }).click();
  assert.match(ana.url(), /\/login/);
  await ana.goto(BASE + '/');
  assert.match(ana.url(), /\/login/);
  console.log('console browser test: OK');
} finally {
  await browser.close();
}
