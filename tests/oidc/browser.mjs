// OIDC single sign-on in headless Chromium (playwright-core from tests/browser), run by
// tests/oidc.rs against an in-process zhiku and the test provider (provider.mjs):
// the login page's SSO button, the provider's login form, back at zhiku logged in with the
// provider's groups; the same callback opened again shows the plain refusal page; logout
// goes through the provider's end_session_endpoint and back to zhiku's login page.
//
//   ZHIKU_URL, OIDC_URL, ZHIKU_ARTIFACTS (screenshots), ZHIKU_CHROMIUM (default /usr/bin/chromium)
//
// Exits 0 when every check passed; otherwise prints the failed check and saves
// oidc-failure.png. Every wait is bounded.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { chromium } = createRequire(path.join(here, '..', 'browser', 'package.json'))('playwright-core');

const BASE = (process.env.ZHIKU_URL || '').replace(/\/$/, '');
const OP = (process.env.OIDC_URL || '').replace(/\/$/, '');
const ARTIFACTS = process.env.ZHIKU_ARTIFACTS || path.join(here, '..', '..', 'target', 'oidc-artifacts');
const CHROMIUM = process.env.ZHIKU_CHROMIUM || '/usr/bin/chromium';
if (!BASE || !OP) {
  console.error('set ZHIKU_URL and OIDC_URL (tests/oidc.rs does)');
  process.exit(2);
}

let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}
async function shot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  console.log(`   screenshot ${file}`);
}

async function main(page) {
  await page.goto(`${BASE}/login`);
  await page.waitForSelector('#sso-login', { state: 'visible' });
  check((await page.textContent('#sso-login')).trim() === '使用单点登录', 'the login page offers single sign-on');
  await shot(page, 'oidc-1-login');

  let callback = null;
  page.on('request', (r) => {
    if (r.url().startsWith(`${BASE}/auth/oidc/callback`)) callback = r.url();
  });
  await page.click('#sso-login');
  await page.waitForURL((u) => u.href.startsWith(OP));
  await page.waitForSelector('input[name=login]');
  check(new URL(page.url()).origin === new URL(OP).origin, 'the button goes to the provider');
  await page.fill('input[name=login]', 'ann');
  await page.fill('input[name=password]', 'any-password');
  await shot(page, 'oidc-2-provider');
  await page.click('button[type=submit]');
  await page.waitForURL(`${BASE}/`);
  check(callback && callback.includes('code=') && callback.includes('state='), 'the provider came back with a code and the state');
  const me = await page.evaluate(() => fetch('/api/me').then((r) => r.json()));
  check(me.user.name === 'ann', `logged in as ann (got ${me.user.name})`);
  check(JSON.stringify(me.user.groups) === JSON.stringify(['platform', 'staff']), `with the provider's groups (got ${JSON.stringify(me.user.groups)})`);
  check(me.knowledge_bases.includes('handbook'), `and staff's knowledge base (got ${JSON.stringify(me.knowledge_bases)})`);
  await page.waitForSelector('#logout');
  await shot(page, 'oidc-3-logged-in');

  // The same callback again (a replay): a plain page, no session change.
  const replay = await page.goto(callback);
  check(replay.status() === 400, `a replayed callback answers 400 (got ${replay.status()})`);
  await page.waitForSelector('#sso-error');
  check((await page.textContent('#sso-error')).includes('already'), 'and says the link was used already');
  await shot(page, 'oidc-4-replayed');

  // Logout through the provider, back at the login page.
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#logout');
  await page.click('#logout');
  await page.waitForURL((u) => u.href.startsWith(`${OP}/session/end`));
  await page.click('#op-logout');
  await page.waitForURL((u) => u.href.startsWith(`${BASE}/login`));
  const after = await page.evaluate(() => fetch('/api/me').then((r) => r.status));
  check(after === 401, `logged out at zhiku after the provider's logout (got ${after})`);
  await shot(page, 'oidc-5-logged-out');
}

fs.mkdirSync(ARTIFACTS, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'zhiku-oidc-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: { width: 1100, height: 760 },
  locale: 'zh-CN',
});
context.setDefaultTimeout(30000);
const page = context.pages()[0] || (await context.newPage());
const timer = setTimeout(() => {
  console.error('the OIDC browser test ran past 5 minutes');
  process.exit(1);
}, 5 * 60 * 1000);
let code = 0;
try {
  await main(page);
  console.log(`all ${checks} checks passed`);
} catch (e) {
  console.error(String(e && e.stack ? e.stack : e));
  try {
    await shot(page, 'oidc-failure');
  } catch {
    /* the page is gone */
  }
  code = 1;
} finally {
  clearTimeout(timer);
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
