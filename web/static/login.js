// The login page: name and password → POST /api/login, then back to where the user was.
import { api, applyI18n, setupLangSwitch, t, $, ApiError } from './common.js';

applyI18n();
setupLangSwitch($('#lang'));

const params = new URLSearchParams(location.search);
const form = $('#login-form');
const errorBox = $('#login-error');
const submit = $('#login-submit');

/** Where to go after logging in: a path on this site only. */
function destination() {
  const next = params.get('next') || '/';
  return next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/';
}

let shown = null; // [key, vars] of the error on screen, re-translated on a language switch

function showError(key, vars) {
  shown = [key, vars];
  errorBox.textContent = t(key, vars);
  errorBox.hidden = false;
}

if (params.get('reason') === 'expired') showError('login.expired');

// Single sign-on, when the server has a provider: a button that goes through it.
api('GET', '/api/login/sso', undefined, { noRedirect: true })
  .then((r) => {
    const p = r && r.providers && r.providers[0];
    if (!p) return;
    const a = $('#sso-login');
    a.href = `${p.login_url}?next=${encodeURIComponent(destination())}`;
    if (p.label) {
      a.removeAttribute('data-i18n');
      a.textContent = p.label;
    }
    $('#sso').hidden = false;
  })
  .catch(() => {});

// Already logged in (a bookmarked /login): go straight on.
api('GET', '/api/me', undefined, { noRedirect: true })
  .then(() => location.replace(destination()))
  .catch(() => {});

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('#name').value.trim();
  const password = $('#password').value;
  if (!name || !password) {
    showError('login.missing');
    (name ? $('#password') : $('#name')).focus();
    return;
  }
  errorBox.hidden = true;
  submit.disabled = true;
  submit.textContent = t('login.busy');
  try {
    await api('POST', '/api/login', { name, password }, { noRedirect: true });
    location.replace(destination());
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) showError('login.wrong');
    else if (err instanceof ApiError && err.status === 429) showError('login.limited');
    else if (err instanceof ApiError && err.status === 0) showError('login.network');
    else showError('chat.error', { msg: err.message });
    $('#password').select();
    $('#password').focus();
  } finally {
    submit.disabled = false;
    submit.textContent = t('login.submit');
  }
});

window.addEventListener('langchange', () => {
  if (shown) showError(...shown);
  if (!submit.disabled) submit.textContent = t('login.submit');
});
