// The portal in a real browser (Debian's headless Chromium, driven by playwright-core) against
// `medfed demo`: what researchers, custodians and auditors do, and what a researcher must not
// reach. Screenshots go to MEDFED_SCREENSHOTS (default web/test-results/).
//
//   MEDFED_BIN=target/debug/medfed node --test web/tests/portal.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startDemo } from './demo.mjs';
import { JWKS_FILE, startIdp } from './idp.mjs';

const CHROMIUM = process.env.CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync);
const SHOTS = process.env.MEDFED_SCREENSHOTS ?? fileURLToPath(new URL('../test-results/', import.meta.url));

let demo;
let stop;
let browser;
// The hospital's single sign-on; absent when testing a demo someone else started.
let idp;
let oidcDir;
// True when this run started the demo (with the options the tests below rely on).
let ownDemo = false;

/** Starts the IdP and writes the `[oidc]` file `medfed demo --oidc` reads. */
async function startSingleSignOn() {
  const clientId = 'medfed-portal';
  idp = await startIdp({ clientId, user: { username: 'dr.sso', roles: ['researcher'] } });
  oidcDir = mkdtempSync(join(tmpdir(), 'medfed-oidc-'));
  const file = join(oidcDir, 'oidc.toml');
  writeFileSync(
    file,
    `[oidc]\nissuer = "${idp.issuer}"\naudience = "${clientId}"\njwks = ${JSON.stringify(JWKS_FILE)}\n` +
      `portal_client_id = "${clientId}"\n`,
  );
  return ['--oidc', file];
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  ownDemo = !process.env.MEDFED_DEMO_JSON;
  // Differencing is held for the custodians' review instead of refused.
  const args = ownDemo ? [...(await startSingleSignOn()), '--review', 'differencing'] : [];
  ({ demo, stop } = await startDemo(args));
  idp?.allowRedirect(`${demo.hub_url}/`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
});

after(async () => {
  await browser?.close();
  await stop?.();
  await idp?.stop();
  if (oidcDir) rmSync(oidcDir, { recursive: true, force: true });
});

/** A fresh browser context at the portal; `page.problems` collects its script errors. */
async function openPortal() {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1400, height: 1000 } });
  context.setDefaultTimeout(30_000);
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(e.message));
  page.on('console', (m) => m.type() === 'error' && !/status of 4\d\d/.test(m.text()) && page.problems.push(m.text()));
  await page.goto(`${demo.hub_url}/`);
  return page;
}

/** A fresh browser context signed in as `role` through the sign-in form. */
async function signIn(role) {
  const page = await openPortal();
  await page.fill('input[name=token]', demo.tokens[role]);
  await page.click('button[type=submit]');
  await page.getByTestId('who').waitFor();
  return page;
}

const shot = (page, name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

// Every test is bounded: a page that hangs fails its test instead of the run.
describe('medfed portal', { timeout: 120_000 }, () => {
  test('a wrong token gets a readable refusal and no way in', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${demo.hub_url}/`);
    await page.fill('input[name=token]', 'mf_0000000000000000_not-a-real-token');
    await page.click('button[type=submit]');
    const error = page.getByTestId('sign-in-error');
    await error.waitFor();
    assert.match(await error.innerText(), /not valid/);
    assert.equal(await page.getByTestId('who').count(), 0);
    await context.close();
  });

  test('single sign-on: the hospital IdP signs a researcher in, and the hub accepts its token', async (t) => {
    if (!idp) return t.skip('a running demo without the test IdP');
    const page = await openPortal();
    await page.getByRole('button', { name: 'Sign in with single sign-on' }).click();
    await page.waitForURL(`${idp.issuer}/authorize**`);
    await page.getByRole('button', { name: 'Continue as dr.sso' }).click();
    const who = page.getByTestId('who');
    await who.waitFor();
    assert.match(await who.innerText(), /dr\.sso · researcher/);
    // The code and state are gone from the address bar once used.
    assert.doesNotMatch(page.url(), /code=|state=/);
    const nav = await page.locator('header nav').innerText();
    assert.match(nav, /Network/);
    assert.doesNotMatch(nav, /Approvals|Audit/);
    // The hub answers the portal's API calls on the IdP's token.
    await page.getByTestId('catalogue').waitFor();
    assert.match(await page.getByTestId('sites').innerText(), /answering/);
    assert.deepEqual(page.problems, []);
    await shot(page, 'researcher-sso');
    await page.context().close();
  });

  test('a researcher sees the network: sites up, tables, rounded person counts', async () => {
    const page = await signIn('researcher');
    await page.getByTestId('catalogue').waitFor();
    const sites = await page.getByTestId('sites').innerText();
    for (const s of Object.keys(demo.sites)) assert.match(sites, new RegExp(`${s}\\s+answering`));
    const person = await page.locator('[data-testid=catalogue] tr', { hasText: 'person' }).first().innerText();
    assert.match(person, /≈ 400/, person);
    const asOf = Number(await page.getByTestId('as-of').getAttribute('data-us')) / 1000;
    assert.ok(Math.abs(Date.now() - asOf) < 3_600_000, `read from the sites recently: ${asOf}`);
    assert.deepEqual(page.problems, []);
    await shot(page, 'researcher-network');
    await page.context().close();
  });

  test('a researcher runs a query and sees the table, withheld groups, site status and a chart; CSV exports', async () => {
    const page = await signIn('researcher');
    await page.goto(`${demo.hub_url}/#/query`);
    await page.getByTestId('study').selectOption(demo.studies.exact);
    const editor = page.locator('.cm-content');
    await editor.click();
    await page.keyboard.press('Control+A');
    await page.keyboard.type('SELECT year_of_birth AS year, COUNT(*) AS people FROM person GROUP BY 1');
    await page.getByTestId('run').click();
    await page.getByTestId('result').waitFor({ timeout: 60_000 });
    const rows = await page.locator('[data-testid=result] tbody tr').count();
    assert.ok(rows >= 5, `${rows} years`);
    // k applies to the network's total (secure aggregation, the default): the demo's oldest
    // birth years hold fewer than 10 people in the whole network, so they are withheld without
    // a row, and the page says how many (cells suppressed at a site would be marked instead).
    assert.match(await page.getByTestId('protection').innerText(), /network's total/);
    const withheld = (await page.getByTestId('withheld-groups').count()) + (await page.getByTestId('suppressed').count());
    assert.ok(withheld > 0, 'withheld groups are reported');
    const status = await page.getByTestId('site-status').innerText();
    for (const s of Object.keys(demo.sites)) assert.match(status, new RegExp(`${s}\\s+answered`));
    await page.getByTestId('chart').locator('canvas').waitFor();
    const drawn = await page.getByTestId('chart').locator('canvas').evaluate((c) => c.width > 0 && c.height > 0);
    assert.ok(drawn, 'the chart is drawn');
    await shot(page, 'researcher-query');
    await page.getByTestId('chart-kind').selectOption('histogram');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('csv').click()]);
    const csv = readFileSync(await download.path(), 'utf8').trim().split(/\r\n/);
    assert.equal(csv[0], 'year,people');
    assert.equal(csv.length, rows + 1);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('a row-level query is refused with a sentence, not a stack trace', async () => {
    const page = await signIn('researcher');
    await page.goto(`${demo.hub_url}/#/query`);
    await page.getByTestId('study').selectOption(demo.studies.exact);
    await page.locator('.cm-content').click();
    await page.keyboard.press('Control+A');
    await page.keyboard.type('SELECT person_id, year_of_birth FROM person');
    await page.getByTestId('run').click();
    const error = await page.getByTestId('query-error').innerText({ timeout: 60_000 });
    assert.match(error, /^[A-Z].*\.$/s, error);
    assert.doesNotMatch(error, /panicked|at src\/|Traceback|\{"error"/);
    assert.equal(await page.getByTestId('result').count(), 0);
    await page.context().close();
  });

  test('a DP query shows the ε spent and what is left at each site', async () => {
    const page = await signIn('researcher');
    await page.goto(`${demo.hub_url}/#/query`);
    await page.getByTestId('study').selectOption(demo.studies.dp);
    await page.getByTestId('budget').waitFor();
    await page.locator('.cm-content').click();
    await page.keyboard.press('Control+A');
    await page.keyboard.type('SELECT gender_concept_id, COUNT(*) AS people FROM person GROUP BY 1');
    await page.getByTestId('epsilon').fill('0.05');
    await page.getByTestId('run').click();
    await page.getByTestId('result').waitFor({ timeout: 60_000 });
    assert.match(await page.getByTestId('protection').innerText(), /Differentially private/);
    const left = await page.getByTestId(`epsilon-left-${Object.keys(demo.sites)[0]}`).innerText();
    assert.match(left, /^ε \d/, left);
    await shot(page, 'researcher-dp-query');
    await page.context().close();
  });

  test('a researcher fits a GLM and a Kaplan–Meier curve from forms', async () => {
    const page = await signIn('researcher');
    await page.goto(`${demo.hub_url}/#/analyses`);
    await page.getByTestId('study').selectOption(demo.studies.exact);
    await page.getByTestId('fit').click();
    const coefficients = await page.getByTestId('coefficients').innerText({ timeout: 60_000 });
    assert.match(coefficients, /\(Intercept\)/);
    assert.match(coefficients, /factor\(gender_concept_id\)8532/);
    await page.getByTestId('tab-km').click();
    await page.getByTestId('study').selectOption(demo.studies.exact);
    await page.getByTestId('fit').click();
    await page.getByTestId('km-chart').waitFor({ timeout: 60_000 });
    await shot(page, 'researcher-km');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('a researcher proposes a study and a custodian approves it for their site', async () => {
    const researcher = await signIn('researcher');
    await researcher.goto(`${demo.hub_url}/#/studies`);
    await researcher.getByText('Propose a study').click();
    const form = researcher.getByTestId('propose');
    await form.locator('input[name=title]').fill('Portal test: diabetes prevalence');
    await form.locator('textarea[name=purpose]').fill('Check the portal can propose a study.');
    await form.locator('input[name=table-person]').check();
    await form.getByRole('button', { name: 'Propose' }).click();
    const proposed = await researcher.locator('.notice.ok').innerText();
    const id = proposed.match(/Study (st-[0-9a-f]+)/)[1];
    await researcher.context().close();

    const custodian = await signIn('custodian:north');
    await custodian.goto(`${demo.hub_url}/#/approvals`);
    const card = custodian.getByTestId(`study-${id}`);
    await card.getByTestId('decision-north').waitFor();
    assert.match(await card.getByTestId('decision-north').innerText(), /pending/);
    await card.locator('input').fill('Approved by the portal test.');
    await card.getByRole('button', { name: 'Approve' }).click();
    await custodian.getByTestId('decided').waitFor();
    // Rendered with the notice (no second round trip), so no waiting beyond it.
    assert.match(await card.getByTestId('decision-north').innerText(), /approved/);
    // One custodian decides only for their own site.
    assert.match(await card.getByTestId('decision-south').innerText(), /pending/);
    assert.equal(await card.locator('.decide').count(), 1);
    await shot(custodian, 'custodian-approvals');
    await custodian.context().close();
  });

  test('a result held for review reaches the researcher once every site\'s custodian approves it', async (t) => {
    if (!ownDemo) return t.skip('a running demo started without --review');
    const researcher = await signIn('researcher');
    await researcher.goto(`${demo.hub_url}/#/query`);
    await researcher.getByTestId('study').selectOption(demo.studies.exact);
    const ask = async (sql) => {
      await researcher.locator('.cm-content').click();
      await researcher.keyboard.press('Control+A');
      await researcher.keyboard.type(sql);
      await researcher.getByTestId('run').click();
    };
    await ask('SELECT COUNT(*) AS n FROM person');
    await researcher.getByTestId('result').waitFor({ timeout: 60_000 });
    // All patients but three: the difference would be those three.
    await ask('SELECT COUNT(*) AS n FROM person WHERE person_id NOT IN (1, 2, 3)');
    const notice = await researcher.getByTestId('awaiting-review').innerText({ timeout: 60_000 });
    assert.match(notice, /differencing/);
    const id = notice.match(/\((r-[0-9a-f]+)\)/)[1];
    assert.equal(await researcher.getByTestId('result').count(), 0);
    await shot(researcher, 'researcher-awaiting-review');
    // Every site that answered contributed, and each of their custodians must approve (under
    // load a site may have timed out and not be among them).
    const sites = notice.match(/each of (.+?) must approve/)[1].split(', ');
    for (const site of sites) {
      const custodian = await signIn(`custodian:${site}`);
      await custodian.goto(`${demo.hub_url}/#/reviews`);
      const card = custodian.getByTestId(`review-${id}`);
      // The card, or the page's own account of why not (kept for the failure message).
      await custodian.locator(`[data-testid="review-${id}"], .notice.error, [data-testid=no-reviews]`).first().waitFor({ timeout: 60_000 });
      if (!(await card.count())) {
        await shot(custodian, `custodian-review-missing-${site}`);
        assert.fail(`${site}'s custodian does not see ${id}: ${await custodian.locator('main').innerText()} ${custodian.problems}`);
      }
      // The reviewer sees what would be released, and why it was held.
      await card.getByTestId('result').waitFor();
      // (Inside the collapsed evidence: its text, not what is drawn.)
      assert.match(await card.getByTestId('check-differencing').textContent(), /review/);
      assert.match(await card.getByTestId(`review-decision-${site}`).innerText(), /pending/);
      await card.locator('input').fill('Checked by the portal test.');
      await card.getByRole('button', { name: 'Approve' }).click();
      await custodian.getByTestId('reviewed').waitFor();
      assert.match(await card.getByTestId(`review-decision-${site}`).innerText(), /approved/);
      if (site === sites[0]) await shot(custodian, 'custodian-review');
      assert.deepEqual(custodian.problems, []);
      await custodian.context().close();
    }
    await researcher.goto(`${demo.hub_url}/#/reviews`);
    const card = researcher.getByTestId(`review-${id}`);
    await card.getByTestId('result').waitFor();
    assert.match(await card.getByTestId('review-status').innerText(), /approved/);
    assert.deepEqual(researcher.problems, []);
    await researcher.context().close();
  });

  test('an auditor sees the trail, verified, and can filter it', async () => {
    const page = await signIn('auditor');
    await page.goto(`${demo.hub_url}/#/audit`);
    assert.match(await page.getByTestId('chain').innerText(), /Chain intact/);
    await page.locator('[data-testid=trail] tbody tr').first().waitFor();
    assert.ok((await page.locator('[data-testid=trail] tbody tr').count()) > 10);
    await page.getByTestId('audit-filter').fill('study.decide');
    const rows = page.locator('[data-testid=trail] tbody tr');
    assert.ok((await rows.count()) >= 1);
    for (const text of await rows.allInnerTexts()) assert.match(text, /study\.decide/);
    await shot(page, 'auditor-trail');
    await page.context().close();
  });

  test('a researcher cannot reach the custodian or auditor pages, nor their API', async () => {
    const page = await signIn('researcher');
    const nav = await page.locator('header nav').innerText();
    assert.doesNotMatch(nav, /Approvals|Audit/);
    for (const path of ['approvals', 'audit']) {
      await page.goto(`${demo.hub_url}/#/${path}`);
      await page.getByTestId('not-allowed').waitFor();
      assert.equal(await page.getByTestId('trail').count(), 0);
    }
    await shot(page, 'researcher-refused-audit');
    // The portal has no back door: the API refuses the researcher's token too.
    const status = await page.evaluate(async (token) => {
      const r = await fetch('/v1/audit', { headers: { Authorization: `Bearer ${token}` } });
      return r.status;
    }, demo.tokens.researcher);
    assert.equal(status, 403);
    await page.context().close();
  });
});
