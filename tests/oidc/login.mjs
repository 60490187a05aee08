// A login at the test provider without a browser, for tests/oidc.rs's refusal cases: starts
// at zhiku's /auth/oidc/login, signs in at the provider's login form and stops just before
// the browser would come back to zhiku. Prints one line of JSON:
//   {"callback": "<zhiku callback URL with code and state>", "cookie": "zhiku_oidc=…"}
// Environment: ZHIKU_URL (zhiku), OIDC_USER (the login at the provider).
// Every request is bounded (10 s) and at most 10 redirects are followed.
const ZHIKU = (process.env.ZHIKU_URL || '').replace(/\/$/, '');
const USER = process.env.OIDC_USER || 'ann';
if (!ZHIKU) {
  console.error('set ZHIKU_URL');
  process.exit(2);
}

const jars = new Map(); // origin → Map(name → value)
function jar(url) {
  const o = new URL(url).origin;
  if (!jars.has(o)) jars.set(o, new Map());
  return jars.get(o);
}
async function go(url, init = {}) {
  const j = jar(url);
  const headers = { ...(init.headers || {}) };
  if (j.size) headers.cookie = [...j].map(([k, v]) => `${k}=${v}`).join('; ');
  const res = await fetch(url, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(10000) });
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const i = pair.indexOf('=');
    j.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
  }
  return res;
}

let res = await go(`${ZHIKU}/auth/oidc/login?next=/`);
if (res.status !== 303) throw new Error(`zhiku /auth/oidc/login answered ${res.status}: ${await res.text()}`);
const binding = `zhiku_oidc=${jar(ZHIKU).get('zhiku_oidc')}`;
let url = new URL(res.headers.get('location'), ZHIKU).href;
for (let hops = 0; hops < 10; hops += 1) {
  if (url.startsWith(`${ZHIKU}/auth/oidc/callback`)) {
    console.log(JSON.stringify({ callback: url, cookie: binding }));
    process.exit(0);
  }
  res = await go(url);
  if (res.status >= 300 && res.status < 400) {
    url = new URL(res.headers.get('location'), url).href;
    continue;
  }
  const html = await res.text();
  const form = html.match(/<form[^>]*action="([^"]+)"[^>]*>/);
  if (res.status !== 200 || !form || !html.includes('name="login"')) {
    throw new Error(`unexpected page at ${url} (${res.status}): ${html.slice(0, 300)}`);
  }
  const body = new URLSearchParams({ prompt: 'login', login: USER, password: 'any-password' });
  res = await go(new URL(form[1], url).href, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: body.toString(),
  });
  if (res.status < 300 || res.status >= 400) throw new Error(`the login form answered ${res.status}`);
  url = new URL(res.headers.get('location'), url).href;
}
throw new Error('more than 10 redirects');
