// zhiku's web pages in headless Chromium, against a real `zhiku serve` (started by
// tests/browser.rs, which also explains the environment below).
//
//   ZHIKU_URL              the server, e.g. http://127.0.0.1:41234
//   ZHIKU_ADMIN_PASSWORD   the password of the first admin
//   ZHIKU_UPLOAD_DIR       a folder of sample documents with a subfolder (uploaded in the `upload` step)
//   ZHIKU_ARTIFACTS        where screenshots go
//   ZHIKU_CHROMIUM         the browser (default /usr/bin/chromium)
//   ZHIKU_BROWSER_STEPS    optional steps, comma-separated, for endpoints a server may lack:
//                          upload  (create the knowledge base and upload the folder in the admin
//                                   page, watch the job; the documents list, chunk and download)
//                          history (conversations sidebar, 👍/👎 feedback, admin feedback log)
//                          v1      (/v1/chat/completions refuses the member's token)
//                          tend    (hit testing, also as the member; a chunk edit found by the next
//                                   hit test and kept when the unchanged file is uploaded again)
//                          perms   (folder permissions: the folder tree, restrict a folder to a
//                                   group and unrestrict it again, search as a user)
//                          Without `upload` the knowledge base `handbook` must exist (CLI ingest).
//
// Exits 0 when every check passed; otherwise prints the failed check, saves failure.png and
// exits 1. Every wait is bounded.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const BASE = (process.env.ZHIKU_URL || '').replace(/\/$/, '');
const ADMIN_PASSWORD = process.env.ZHIKU_ADMIN_PASSWORD || '';
const ARTIFACTS = process.env.ZHIKU_ARTIFACTS || path.join(__dirname, '..', '..', 'target', 'browser-artifacts');
const UPLOAD_DIR = process.env.ZHIKU_UPLOAD_DIR || '';
const CHROMIUM = process.env.ZHIKU_CHROMIUM || '/usr/bin/chromium';
const STEPS = new Set((process.env.ZHIKU_BROWSER_STEPS || '').split(',').map((s) => s.trim()).filter(Boolean));
const KB = 'handbook';
const QUESTION = '年休假有几天？';
const MEMBER = { name: 'zhang.wei', password: 'member-pass-1', group: 'sales' };

if (!BASE || !ADMIN_PASSWORD) {
  console.error('set ZHIKU_URL and ZHIKU_ADMIN_PASSWORD (tests/browser.rs does)');
  process.exit(2);
}
if (STEPS.has('upload') && !UPLOAD_DIR) {
  console.error('the upload step needs ZHIKU_UPLOAD_DIR');
  process.exit(2);
}

let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

async function shot(page, name, opts = {}) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, ...opts });
  console.log(`   screenshot ${file}`);
}

/** Call the API from the page, as its logged-in user (session cookie + CSRF header). */
async function apiInPage(page, method, url, body) {
  return page.evaluate(async ({ method, url, body }) => {
    const me = await fetch('/api/me').then((r) => r.json());
    const res = await fetch(url, {
      method,
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf || '' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, json, text };
  }, { method, url, body });
}

/** Call the API from node with an API token. */
async function apiWithToken(token, method, url, body) {
  const res = await fetch(BASE + url, {
    method,
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60000),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json, text };
}

async function login(page, name, password) {
  await page.goto(`${BASE}/login`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  await page.click('#login-submit');
  await page.waitForURL(`${BASE}/`);
  await page.waitForSelector('#kb option', { state: 'attached' });
}

/** Open the admin page at `hash` and wait for `selector`. */
async function admin(page, hash, selector) {
  await page.goto(`${BASE}/admin#${hash}`);
  await page.waitForSelector(selector);
}

async function confirmDialog(page) {
  await page.waitForSelector('dialog[open]');
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('dialog[open]', { state: 'detached' });
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'zhiku-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 800 },
    locale: 'zh-CN',
    acceptDownloads: true,
  });
  context.setDefaultTimeout(30000);
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message + ' @ ' + String(e.stack).split('\n').slice(0, 3).join(' | ')));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
  });
  // Nothing may leave the server: every request the pages make goes to BASE.
  const foreign = [];
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(BASE) && !u.startsWith('data:') && !u.startsWith('blob:')) foreign.push(u);
  });

  try {
    await run(page);
    check(pageErrors.length === 0, `no script errors in the pages (${pageErrors.join(' | ')})`);
    check(foreign.length === 0, `every request went to the zhiku server (${foreign.join(', ')})`);
  } catch (e) {
    try {
      await shot(page, 'failure', { fullPage: true });
    } catch {
      /* the page may be gone */
    }
    if (pageErrors.length) console.error(`script errors: ${pageErrors.join(' | ')}`);
    throw e;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

/** Run the hit test of the page for `question` (as `asUser`, '' = me); the verdict element. */
async function hitTest(page, question, asUser = '') {
  await page.fill('#test-question', question);
  await page.selectOption('#test-as', asUser);
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(`/api/kbs/${KB}/search-test`), { timeout: 120000 }),
    page.click('#test-run'),
  ]);
  check(res.status() === 200, `the hit test runs (${res.status()})`);
  await page.waitForSelector('#test-verdict');
  return res.json();
}

/** Wait (at most 10 s) until no toast covers the page, for a clear screenshot. */
async function noToasts(page) {
  await page.waitForFunction(() => !document.querySelector('.toast'), null, { timeout: 10000 });
}

// Hit testing and chunk editing in the admin page.
async function tend(page) {
  await admin(page, `kb/${KB}`, '#kb-hit-test');
  await page.click('#kb-hit-test');
  await page.waitForSelector('#test-form');
  let r = await hitTest(page, QUESTION);
  check(await page.getAttribute('#test-verdict', 'data-answered') === 'true', 'the hit test says the question is answerable');
  const inPrompt = await page.$$eval('#test-hits tr[data-placement="prompt"]', (rows) => rows.length);
  check(inPrompt > 0 && inPrompt === r.prompt.length, `the hits going into the prompt are marked (${inPrompt})`);
  const cands = await page.$$eval('#test-candidates tbody tr', (rows) => rows.length);
  check(cands === r.candidates.length && cands >= r.hits.length, `every candidate is listed with its scores (${cands})`);
  await noToasts(page);
  await shot(page, '04d-hit-test', { fullPage: true });
  r = await hitTest(page, QUESTION, MEMBER.name);
  check(await page.isVisible('#test-unreadable') && r.hits.length === 0, 'viewed as the member without a grant, nothing is found');
  await shot(page, '04e-hit-test-as-member');

  // Edit the last chunk of the leave policy: append a sentence nothing else has.
  const docs = await apiInPage(page, 'GET', `/api/kbs/${KB}/documents?q=${encodeURIComponent('休假制度')}`);
  const doc = docs.json.documents[0];
  check(docs.status === 200 && doc, `the leave policy is listed (${docs.status})`);
  await admin(page, `kb/${KB}`, `#doc-table tr[data-id="${doc.id}"]`);
  await page.click(`#doc-table tr[data-id="${doc.id}"] a[href="#doc/${doc.id}"]`);
  await page.waitForSelector('#chunks form.chunk');
  const card = '#chunks form.chunk:last-child';
  const chunkId = await page.getAttribute(card, 'data-chunk');
  const phrase = '紫藤花疗养假';
  const text = await page.inputValue(`${card} .chunk-text`);
  await page.fill(`${card} .chunk-text`, `${text}\n员工每年另享有${phrase}两天。`);
  await page.fill(`${card} .chunk-keywords`, '疗养, 福利假');
  await page.click(`${card} .chunk-save`);
  await page.waitForSelector(`#chunks form.chunk[data-chunk="${chunkId}"][data-edited="true"]`);
  await page.waitForSelector('#chunk-history tr[data-edit]');
  check(true, 'a chunk is edited in the admin page and its edit is in the history');
  await noToasts(page);
  await shot(page, '04f-chunk-edited', { fullPage: true });
  const found = async (what) => {
    await admin(page, `test/${KB}`, '#test-form');
    r = await hitTest(page, phrase);
    const first = r.hits[0];
    check(first && String(first.hit.chunk) === chunkId && first.hit.text.includes(phrase) && first.hit.scores.keyword_rank === 1,
      `${what}: the edited chunk is the first hit, found by keyword (${first && first.hit.chunk} vs ${chunkId})`);
  };
  await found('the next hit test');
  await noToasts(page);
  await shot(page, '04g-hit-test-edited', { fullPage: true });
  if (STEPS.has('upload')) {
    // The unchanged file uploaded again: still the same document, the edit stays.
    await admin(page, `kb/${KB}`, '#dropzone');
    const file = path.join(UPLOAD_DIR, '员工手册-休假制度.txt');
    const [xhr] = await Promise.all([
      page.waitForResponse((res) => res.url().endsWith(`/api/kbs/${KB}/documents`) && res.request().method() === 'POST', { timeout: 120000 }),
      page.setInputFiles('#upload-files', file),
    ]);
    check(xhr.status() === 202, `the unchanged file is uploaded again (${xhr.status()})`);
    const { job } = await xhr.json();
    await page.waitForSelector(`.job[data-job="${job}"][data-finished="true"]`, { timeout: 300000 });
    await found('after the unchanged file was uploaded again');
  }
}

// Folder permissions in the admin page: the tree, restrict and unrestrict, search as a user.
async function perms(page) {
  await admin(page, `kb/${KB}`, '#kb-perms');
  await page.click('#kb-perms');
  await page.waitForSelector('#perms-tree tr.perm-folder');
  const folders = await page.$$eval('#perms-tree tr.perm-folder', (rows) => rows.map((r) => r.dataset.path));
  const sub = folders.find((f) => f.endsWith('/pdf') || f === 'pdf');
  check(sub, `the folder tree shows the uploaded subfolder (${folders.join(', ')})`);
  const docsIn = await page.$$eval('#perms-tree tr.perm-doc', (rows, f) => rows.filter((r) => r.dataset.path.startsWith(`${f}/`)).length, sub);
  check(docsIn > 0, `the subfolder's documents are listed under it (${docsIn})`);
  await page.selectOption(`#perms-tree select[data-path="${sub}"]`, [MEMBER.group]);
  const [put] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(`/api/kbs/${KB}/rules`) && r.request().method() === 'PUT'),
    page.click(`#perms-tree button[data-restrict="${sub}"]`),
  ]);
  check(put.status() === 200, `the folder is restricted from the tree (${put.status()})`);
  await page.waitForSelector(`#perms-tree button[data-unrestrict="${sub}"]`);
  const badge = await page.textContent(`#perms-tree tr.perm-folder[data-path="${sub}"] .badge`);
  check(badge.includes(MEMBER.group), `the folder row says who may read it (${badge})`);
  const docBadges = await page.$$eval('#perms-tree tr.perm-doc', (rows, f) => rows.filter((r) => r.dataset.path.startsWith(`${f}/`)).map((r) => r.querySelector('.badge').textContent), sub);
  check(docBadges.every((b) => b.includes(MEMBER.group)), `its documents inherit the rule (${docBadges.join(' / ')})`);
  await page.selectOption('#perms-as-user', 'admin');
  await page.fill('#perms-as-question', QUESTION);
  const [probe] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(`/api/kbs/${KB}/search-test`), { timeout: 120000 }),
    page.click('#perms-as button[type=submit]'),
  ]);
  check(probe.status() === 200, 'the search as a user runs');
  await page.waitForSelector('#perms-as-result ol li, #perms-as-result p');
  await noToasts(page);
  await shot(page, '04h-folder-permissions', { fullPage: true });
  const [del] = await Promise.all([
    page.waitForResponse((r) => r.url().includes(`/api/kbs/${KB}/rules?path=`) && r.request().method() === 'DELETE'),
    page.click(`#perms-tree button[data-unrestrict="${sub}"]`),
  ]);
  check(del.status() === 200, `the folder is unrestricted again (${del.status()})`);
  await page.waitForSelector(`#perms-tree button[data-restrict="${sub}"]`);
  const rules = (await apiInPage(page, 'GET', `/api/kbs/${KB}/rules`)).json;
  check(rules.rules.length === 0, 'no rule is left');
}

async function run(page) {
  // ---- login ----
  await page.goto(`${BASE}/`);
  await page.waitForURL(/\/login/);
  check(true, 'the chat sends a visitor without a session to the login page');
  await page.waitForSelector('#login-form');
  check(await page.isHidden('#login-error'), 'a first visit shows the form without an error');
  check((await page.textContent('#login-submit')).trim() === '登录', 'the UI is Chinese by default');
  await page.fill('#name', 'admin');
  await page.fill('#password', 'not-the-password');
  await page.click('#login-submit');
  await page.waitForSelector('#login-error:not([hidden])');
  check((await page.textContent('#login-error')).includes('用户名或密码错误'), 'a wrong password says so');
  await shot(page, '01-login-error');
  await page.fill('#password', ADMIN_PASSWORD);
  await page.click('#login-submit');
  await page.waitForURL(`${BASE}/`);
  await page.waitForSelector('#admin-link:not([hidden])');
  check(true, 'the admin logs in and sees the admin link');

  // ---- admin: groups, knowledge base, upload ----
  await admin(page, 'groups', '#new-group');
  await page.fill('#new-group-name', 'staff');
  await page.click('#new-group button[type=submit]');
  await page.waitForSelector('#group-table tr[data-group="staff"]');
  check(true, 'a group is created in the admin page');

  if (STEPS.has('upload')) {
    await admin(page, 'kbs', '#new-kb');
    await page.fill('#new-kb-name', KB);
    await page.click('#new-kb button[type=submit]');
    await page.waitForURL(new RegExp(`#kb/${KB}$`));
    await page.waitForSelector('#dropzone');
    check(true, 'a knowledge base is created in the admin page');
    // Record the file names the page puts in the form (Playwright does not expose multipart bodies).
    await page.evaluate(() => {
      const append = FormData.prototype.append;
      window.uploadedNames = [];
      FormData.prototype.append = function (key, value, name) {
        if (key === 'files') window.uploadedNames.push(name);
        return append.apply(this, arguments);
      };
    });
    const [xhr] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith(`/api/kbs/${KB}/documents`) && r.request().method() === 'POST', { timeout: 120000 }),
      page.setInputFiles('#upload-folder', UPLOAD_DIR),
    ]);
    check(xhr.status() === 202, `the folder upload is accepted (${xhr.status()})`);
    const names = await page.evaluate(() => window.uploadedNames);
    const top = path.basename(UPLOAD_DIR);
    check(names.length > 0 && names.every((n) => n.startsWith(`${top}/`)) && names.some((n) => n.split('/').length === 3),
      `files are sent with their folder paths (${names.join(', ')})`);
    await page.waitForSelector('.job');
    await shot(page, '02-upload-progress', { fullPage: true });
    await page.waitForSelector('.job[data-finished="true"]', { timeout: 300000 });
    const statuses = await page.$$eval('.job tr[data-status]', (rows) => rows.map((r) => r.dataset.status));
    const nFiles = fs.readdirSync(UPLOAD_DIR, { recursive: true }).filter((f) => fs.statSync(path.join(UPLOAD_DIR, f)).isFile()).length;
    check(statuses.length === nFiles && statuses.every((s) => s === 'done'), `every uploaded file reaches done (${statuses.join(',')})`);
    await page.waitForSelector('#doc-table tr[data-id]');
    const docs = await page.$$eval('#doc-table tr[data-id]', (rows) => rows.length);
    check(docs === nFiles, `the documents list shows the ${nFiles} documents (${docs})`);
    await page.fill('#doc-search', '休假');
    await page.waitForFunction(() => document.querySelectorAll('#doc-table tr[data-id]').length === 1);
    check(true, 'searching the documents narrows the list');
    await shot(page, '03-upload-done', { fullPage: true });
  } else {
    await admin(page, 'kbs', '#kb-table');
    const row = await page.$(`#kb-table tr[data-kb="${KB}"]`);
    check(row !== null, `the knowledge base ${KB} (ingested with the CLI) is listed`);
    // The create / open / delete flow on a scratch knowledge base.
    await page.fill('#new-kb-name', 'scratch');
    await page.click('#new-kb button[type=submit]');
    await page.waitForURL(/#kb\/scratch$/);
    await page.waitForSelector('#dropzone');
    await page.waitForSelector('#docs .note, #doc-table, #docs p');
    await shot(page, '02-kb-page', { fullPage: true });
    await admin(page, 'kbs', '#kb-table tr[data-kb="scratch"]');
    await page.click('#kb-table tr[data-kb="scratch"] .btn-danger');
    await confirmDialog(page);
    await page.waitForSelector('#kb-table tr[data-kb="scratch"]', { state: 'detached' });
    check(true, 'a knowledge base is created and deleted (with confirmation) in the admin page');
  }

  // Grant the knowledge base to `staff` in the UI.
  await admin(page, 'kbs', `#kb-table tr[data-kb="${KB}"]`);
  const kbRow = `#kb-table tr[data-kb="${KB}"]`;
  await page.selectOption(`${kbRow} select`, 'staff');
  await page.click(`${kbRow} td .toolbar button`);
  await page.waitForSelector(`${kbRow} .chip:has-text("staff")`);
  check(true, 'the knowledge base is granted to a group in the admin page');
  await shot(page, '04-admin-kbs');

  // A member of another group, made through the API.
  const created = await apiInPage(page, 'POST', '/api/users', { name: MEMBER.name, password: MEMBER.password, role: 'member', groups: [MEMBER.group] });
  check(created.status === 201, `a member of group ${MEMBER.group} is created through the API (${created.status} ${created.text})`);
  await admin(page, 'users', `#user-table tr[data-user="${MEMBER.name}"]`);
  check(true, 'the new member is listed in the users page');

  // The member's WeCom userid is linked in the users page; the same userid (in another
  // case: WeCom ignores case) for another user is refused, naming who holds it.
  const memberRow = `#user-table tr[data-user="${MEMBER.name}"]`;
  const adminRow = '#user-table tr[data-user="admin"]';
  check((await page.textContent(`${memberRow} td.wecom-user`)).trim() === '未关联', 'an unlinked user shows no WeCom userid');
  await page.click(`${memberRow} button:has-text("编辑")`);
  await page.fill(`${memberRow}[data-editing] input[aria-label="企业微信账号"]`, 'ZhangWei');
  await page.click(`${memberRow}[data-editing] button.btn-primary`);
  await page.waitForSelector(`${memberRow}:not([data-editing]) td.wecom-user:has-text("ZhangWei")`);
  check(true, "the member's WeCom userid is linked in the users page");
  await shot(page, '04b-admin-users-wecom');
  await page.click(`${adminRow} button:has-text("编辑")`);
  await page.fill(`${adminRow}[data-editing] input[aria-label="企业微信账号"]`, 'zhangwei');
  await page.click(`${adminRow}[data-editing] button.btn-primary`);
  const refused = await page.textContent('.toast-error', { timeout: 10000 });
  check(refused.includes(MEMBER.name), `a WeCom userid linked to another user is refused with the holder's name (${refused})`);
  await shot(page, '04c-admin-users-wecom-taken');
  const users = (await apiInPage(page, 'GET', '/api/users')).json;
  check(!users.find((u) => u.name === 'admin').wecom_user, 'the refused link changed nothing');

  if (STEPS.has('tend')) await tend(page);
  if (STEPS.has('perms')) await perms(page);

  // ---- chat ----
  await page.goto(`${BASE}/`);
  await page.waitForSelector(`#kb option[value="${KB}"]`, { state: 'attached' });
  await page.selectOption('#kb', KB);
  await shot(page, '05-chat-empty');
  await page.fill('#question', QUESTION);
  const [ask] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/ask'), { timeout: 120000 }),
    page.keyboard.press('Enter'),
  ]);
  check(ask.status() === 200 && (ask.headers()['content-type'] || '').startsWith('text/event-stream'), 'the answer comes as a server-sent event stream');
  await page.waitForSelector('.msg-bot:not(.streaming)', { timeout: 120000 });
  const outcome = await page.getAttribute('.msg-bot', 'data-outcome');
  const answer = await page.textContent('.msg-bot .answer');
  check(['extractive', 'generated'].includes(outcome), `the question is answered (${outcome}): ${answer.slice(0, 80)}`);
  check(/5\s*天/.test(answer), 'the answer gives the 5 days of annual leave');
  const notice = await page.$('.msg-bot .answer-notice:not([hidden])');
  check(outcome !== 'extractive' || notice !== null, 'an extractive answer shows its notice');
  const chips = await page.$$('.msg-bot .answer .cite:not([disabled])');
  check(chips.length > 0, `the answer has clickable citation chips (${chips.length})`);
  // Open the citation of the sentence that gives the 5 days (the first chip after "5天").
  const target = await page.$$eval('.msg-bot .answer .cite:not([disabled])', (cs) => cs.findIndex((c) => {
    const block = c.closest('p, li, td, blockquote') || c.parentElement;
    const range = document.createRange();
    range.setStart(block, 0);
    range.setEndBefore(c);
    return /5\s*天/.test(range.toString());
  }));
  await chips[Math.max(0, target)].click();
  await page.waitForSelector('#source-panel:not([hidden]) .passage');
  const passage = await page.textContent('#source-panel .passage');
  check(passage.includes('年休假'), 'the source panel shows the cited passage');
  const marked = await page.$$eval('#source-panel .passage mark', (ms) => ms.map((m) => m.textContent));
  check(marked.length > 0 && marked.some((m) => /5\s*天/.test(m)), `the cited sentence is highlighted (${marked.join(' / ')})`);
  check((await page.textContent('#source-doc-title')).includes('休假'), 'the panel names the document');
  const href = await page.getAttribute('#source-download', 'href');
  check(/^\/api\/documents\/\d+\/file$/.test(href || ''), `the panel links the original file (${href})`);
  await shot(page, '06-chat-answer-citation');
  if (STEPS.has('upload')) {
    const fileRes = await page.request.get(BASE + href);
    check(fileRes.status() === 200 && (await fileRes.body()).length > 0, 'the original file downloads');
    check((await page.$('#source-fallback')) === null, 'the stored chunk is shown (GET /api/chunks answered)');
  }

  // The phone layout.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await shot(page, '07-phone-citation');
  await page.click('#source-close');
  await page.waitForSelector('#source-panel', { state: 'hidden' });
  await shot(page, '08-phone-answer');
  await page.setViewportSize({ width: 1280, height: 800 });

  // English, remembered across a reload.
  await page.click('#lang');
  check((await page.textContent('#send')).trim() === 'Send', 'the language switch turns the UI English');
  await page.reload();
  await page.waitForSelector('#kb option', { state: 'attached' });
  check((await page.textContent('#send')).trim() === 'Send', 'the language choice is remembered');
  await page.click('#lang');
  check((await page.textContent('#send')).trim() === '发送', 'and switches back to Chinese');

  if (STEPS.has('history')) {
    await page.waitForSelector('#conv-list .conv');
    const titles = await page.$$eval('#conv-list .conv-title', (ts) => ts.map((x) => x.textContent));
    check(titles.some((x) => x.includes('年休假')), `the conversation is in the history sidebar (${titles.join(', ')})`);
    await page.click('#conv-list .conv-open');
    await page.waitForSelector('.msg-bot .thumb');
    check((await page.textContent('.msg-user .bubble')).includes('年休假'), 'opening the conversation shows its messages');
    await page.click('.msg-bot .thumb[data-rating="-1"]');
    await page.waitForSelector('.msg-bot .thumb.on[data-rating="-1"]');
    await page.fill('.feedback-comment', '希望同时说明病假');
    await page.click('.feedback-form button');
    await page.waitForSelector('.feedback-form', { state: 'detached' });
    check(true, 'an answer is rated 👎 with a comment');
    await shot(page, '09-history-feedback');
    await admin(page, 'feedback', '#feedback-table');
    check((await page.textContent('#feedback-table')).includes('希望同时说明病假'), 'the admin sees the feedback');
    await shot(page, '10-admin-feedback');
  } else {
    await page.waitForSelector('#conv-list .note, #conv-list p');
    check(true, 'the history sidebar degrades to a message where the server keeps no conversations');
  }

  // ---- the 404 page ----
  const missing = await page.goto(`${BASE}/no/such/page`);
  check(missing.status() === 404, 'an unknown page answers 404');
  check((await page.textContent('body')).includes('页面不存在'), 'with a friendly HTML page');
  await shot(page, '11-not-found');

  // An admin token: the control showing that a token can ask the knowledge base at all.
  const adminTok = await apiInPage(page, 'POST', '/api/tokens', { name: 'browser test (admin)' });
  check(adminTok.status === 201 && /^zk_/.test(adminTok.json?.token || ''), 'the admin creates an API token');

  // ---- the member of another group ----
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#logout');
  await page.click('#logout');
  await page.waitForURL(/\/login/);
  await login(page, MEMBER.name, MEMBER.password);
  const options = await page.$$eval('#kb option', (os) => os.map((o) => o.value));
  check(!options.includes(KB), `the member does not see ${KB} in the chat (${options.join(',')})`);
  check(await page.isVisible('#no-kb'), 'the member is told they may read no knowledge base yet');
  check(await page.isHidden('#admin-link'), 'the member has no admin link');
  await shot(page, '12-member-chat');
  await page.goto(`${BASE}/admin`);
  await page.waitForURL(`${BASE}/`);
  check(true, 'the member is sent from the admin page to the chat');

  const rest = await apiInPage(page, 'POST', '/api/ask', { question: QUESTION, kb: KB, stream: false });
  check(rest.status === 404, `asking ${KB} through REST as the member is refused with 404 (${rest.status})`);
  const kbs = await apiInPage(page, 'GET', '/api/kbs');
  check(Array.isArray(kbs.json) && !kbs.json.some((k) => k.name === KB), 'GET /api/kbs does not list it');
  const tok = await apiInPage(page, 'POST', '/api/tokens', { name: 'browser test' });
  check(tok.status === 201 && /^zk_/.test(tok.json?.token || ''), 'the member creates an API token');
  const byToken = await apiWithToken(tok.json.token, 'POST', '/api/ask', { question: QUESTION, kb: KB, stream: false });
  check(byToken.status === 404, `asking ${KB} with the member's API token is refused with 404 (${byToken.status})`);
  const kbsByToken = await apiWithToken(tok.json.token, 'GET', '/api/kbs');
  check(kbsByToken.status === 200 && !kbsByToken.json.some((k) => k.name === KB), 'the token does not list it either');
  const control = await apiWithToken(adminTok.json.token, 'POST', '/api/ask', { question: QUESTION, kb: KB, stream: false });
  check(control.status === 200 && /5\s*天/.test(control.json?.answer || ''), `the same request with the admin's token is answered (${control.status})`);
  if (STEPS.has('v1')) {
    const body = {
      model: KB, // /v1 names the knowledge base as the model
      messages: [{ role: 'user', content: QUESTION }],
    };
    const v1 = await apiWithToken(tok.json.token, 'POST', '/v1/chat/completions', body);
    check(v1.status === 404 && !/no such page or endpoint/.test(v1.text),
      `asking ${KB} through /v1/chat/completions with the member's token is refused with 404 (${v1.status} ${v1.text.slice(0, 200)})`);
    const v1Control = await apiWithToken(adminTok.json.token, 'POST', '/v1/chat/completions', body);
    const content = v1Control.json?.choices?.[0]?.message?.content || '';
    check(v1Control.status === 200 && /5\s*天/.test(content), `the admin's token is answered through /v1 (${v1Control.status} ${content.slice(0, 80)})`);
  }
}

const deadline = setTimeout(() => {
  console.error('the browser test took longer than 10 minutes');
  process.exit(1);
}, 10 * 60 * 1000);

main().then(() => {
  clearTimeout(deadline);
  console.log(`all ${checks} checks passed (steps: ${[...STEPS].join(',') || 'main only'})`);
}, (e) => {
  clearTimeout(deadline);
  console.error(e.stack || String(e));
  process.exit(1);
});
