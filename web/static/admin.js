// The admin page: knowledge bases (create, rename, delete, grant to groups), uploads with
// progress and per-file job status, documents, users, groups, API tokens, the logs and the
// user dictionary. Members are sent to the chat. Views are picked by the URL hash.
import {
  api, applyI18n, setupLangSwitch, t, h, $, loadMe, logout, toast, dialog, copyText,
  csrfToken, toLogin, ApiError, fmtTime, fmtSize, problem, icon,
} from './common.js';
import { hitTest, docChunks, t as tt } from './tend.js';
import { permsView, t as tp } from './perms.js';

const enc = encodeURIComponent;
const view = $('#view');
let me = null;
let generation = 0; // bumped on every navigation; stale async renders check it

applyI18n();
setupLangSwitch($('#lang'));
$('#logout').addEventListener('click', logout);

async function start() {
  try {
    me = await loadMe();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) view.replaceChildren(problem(e));
    return;
  }
  if (me.user.role !== 'admin') {
    location.replace('/');
    return;
  }
  $('#user-name').textContent = me.user.name;
  window.addEventListener('hashchange', route);
  window.addEventListener('langchange', route);
  route();
}

function route() {
  generation += 1;
  const hash = decodeURIComponent(location.hash.slice(1)) || 'kbs';
  const [name, ...rest] = hash.split('/');
  const arg = rest.join('/');
  const views = { kbs, kb, perms: (a, g) => permsView(a, g, show), test: (a, g) => hitTest(a, g, show), doc: (a, g) => docChunks(a, g, show), users, groups, tokens, dictionary, feedback: logView('feedback'), queries: logView('queries'), audit: logView('audit'), blocked: logView('blocked') };
  const render = views[name] || kbs;
  for (const a of document.querySelectorAll('#admin-nav a')) {
    a.classList.toggle('active', a.dataset.view === (['kb', 'test', 'doc', 'perms'].includes(name) ? 'kbs' : name));
  }
  view.replaceChildren(h('p', { class: 'muted' }, t('common.loading')));
  const gen = generation;
  Promise.resolve(render(arg, gen)).catch((e) => {
    if (gen !== generation) return;
    if (e instanceof ApiError && e.status === 401) return;
    view.replaceChildren(problem(e));
  });
}

/** Show `nodes` unless the user has moved on to another view meanwhile. */
function show(gen, ...nodes) {
  if (gen !== generation) return false;
  view.replaceChildren(...nodes.flat().filter(Boolean));
  return true;
}

/** A numeric column's header (right-aligned like its cells). */
const num = (text) => ({ text, cls: 'num' });
const act = (text) => ({ text, cls: 'actions' });

function table(headers, rows, { id, empty } = {}) {
  if (!rows.length) return h('p', { class: 'muted' }, empty || t('log.empty'));
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'data', id },
      h('thead', {}, h('tr', {}, headers.map((x) => (typeof x === 'string' ? h('th', {}, x) : h('th', { class: x.cls }, x.text))))),
      h('tbody', {}, rows)));
}

async function guarded(fn, okMessage) {
  try {
    const r = await fn();
    if (okMessage) toast(okMessage, 'ok');
    return r ?? true;
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) toast(e.message, 'error');
    return null;
  }
}

function badge(status) {
  const key = `status.${status}`;
  const label = t(key) === key ? status : t(key);
  return h('span', { class: `badge badge-${status}` }, label);
}

function splitList(s) {
  return s.split(/[,，、\s]+/).map((x) => x.trim()).filter(Boolean);
}

// ---- knowledge bases ----

async function kbs(_arg, gen) {
  const [list, groupsOrError] = await Promise.all([
    api('GET', '/api/kbs'),
    api('GET', '/api/groups').catch((e) => e),
  ]);
  const groupNames = Array.isArray(groupsOrError) ? groupsOrError.map((g) => g.name) : [];
  const name = h('input', { class: 'input', id: 'new-kb-name', required: true, maxlength: 64, placeholder: t('kb.create.placeholder') });
  const form = h('form', { class: 'toolbar', id: 'new-kb' }, name,
    h('button', { class: 'btn btn-primary', type: 'submit' }, icon('plus'), t('kb.create')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    if (!n) return;
    if (await guarded(() => api('POST', '/api/kbs', { name: n }), t('kb.created', { name: n }))) {
      location.hash = `#kb/${enc(n)}`;
    }
  });
  const rows = list.map((k) => {
    const pick = h('select', { class: 'select', 'aria-label': t('kb.grant.pick') },
      h('option', { value: '' }, t('kb.grant.pick')),
      groupNames.filter((g) => !(k.groups || []).includes(g)).map((g) => h('option', { value: g }, g)));
    const grant = h('button', { class: 'btn btn-small', type: 'button' }, t('kb.grant'));
    grant.addEventListener('click', async () => {
      if (!pick.value) return;
      if (await guarded(() => api('PUT', `/api/kbs/${enc(k.name)}/groups/${enc(pick.value)}`))) route();
    });
    return h('tr', { dataset: { kb: k.name } },
      h('td', {}, h('a', { href: `#kb/${enc(k.name)}` }, k.name)),
      h('td', { class: 'num' }, k.documents),
      h('td', { class: 'num' }, k.chunks),
      h('td', {},
        h('div', { class: 'chips' }, (k.groups || []).map((g) => h('span', { class: 'chip' }, g,
          h('button', {
            type: 'button',
            title: t('kb.revoke', { group: g }),
            'aria-label': t('kb.revoke', { group: g }),
            onclick: async () => {
              if (await guarded(() => api('DELETE', `/api/kbs/${enc(k.name)}/groups/${enc(g)}`))) route();
            },
          }, icon('x'))))),
        groupNames.length ? h('div', { class: 'toolbar' }, pick, grant) : null),
      h('td', { class: 'actions' },
        h('a', { class: 'btn btn-small', href: `#kb/${enc(k.name)}` }, t('kb.open')),
        h('button', { class: 'btn btn-small', type: 'button', onclick: () => renameKb(k.name) }, t('kb.rename')),
        h('button', { class: 'btn btn-small btn-danger', type: 'button', onclick: () => deleteKb(k) }, t('kb.delete'))));
  });
  show(gen,
    h('h1', {}, t('admin.tab.kbs')),
    form,
    Array.isArray(groupsOrError) ? null : problem(groupsOrError),
    table([t('kb.name'), num(t('kb.documents')), num(t('kb.chunks')), t('kb.groups'), act(t('actions'))], rows, { id: 'kb-table', empty: t('kb.empty') }));
}

async function renameKb(name) {
  const next = await dialog(t('kb.rename.prompt'), { input: name, ok: t('common.save') });
  if (!next || next === name) return;
  if (await guarded(() => api('PATCH', `/api/kbs/${enc(name)}`, { name: next }))) {
    if (location.hash.startsWith('#kb/')) location.hash = `#kb/${enc(next)}`;
    else route();
  }
}

async function deleteKb(k) {
  const ok = await dialog(t('kb.delete.confirm', { name: k.name, n: k.documents }), { ok: t('common.delete'), danger: true });
  if (!ok) return;
  if (await guarded(() => api('DELETE', `/api/kbs/${enc(k.name)}`), t('kb.deleted', { name: k.name }))) {
    location.hash = '#kbs';
    route();
  }
}

// ---- one knowledge base: upload and documents ----

const jobs = []; // {id, kb, data, error, finished}: uploads of this page, polled until finished
const docState = { q: '', offset: 0, limit: 20 };

async function kb(name, gen) {
  const list = await api('GET', '/api/kbs');
  const info = list.find((k) => k.name === name);
  if (!info) {
    show(gen, h('a', { class: 'back', href: '#kbs' }, icon('back'), t('kb.back')),
      h('div', { class: 'note note-error' }, `${t('kb.name')}: ${name} — 404`));
    return;
  }
  docState.q = '';
  docState.offset = 0;
  const jobsBox = h('div', { id: 'jobs', dataset: { kb: name } });
  const docsBox = h('div', { id: 'docs' });
  show(gen,
    h('a', { class: 'back', href: '#kbs' }, icon('back'), t('kb.back')),
    h('div', { class: 'toolbar' },
      h('h1', { class: 'spacer' }, name),
      h('span', { class: 'badge' }, `${t('kb.documents')} ${info.documents}`),
      h('span', { class: 'badge' }, `${t('kb.chunks')} ${info.chunks}`),
      h('a', { class: 'btn btn-small', id: 'kb-hit-test', href: `#test/${enc(name)}` }, tt('test.open')),
      h('a', { class: 'btn btn-small', id: 'kb-perms', href: `#perms/${enc(name)}` }, tp('perms.open')),
      h('button', { class: 'btn btn-small', type: 'button', onclick: () => renameKb(name) }, t('kb.rename')),
      h('button', { class: 'btn btn-small btn-danger', type: 'button', onclick: () => deleteKb(info) }, t('kb.delete'))),
    h('section', { class: 'card' }, h('h2', {}, t('upload.title')), uploader(name, jobsBox), jobsBox),
    h('section', { class: 'card' }, h('h2', {}, t('docs.title')), docsBox));
  renderJobs(name, jobsBox);
  await documents(name, docsBox, gen);
}

function uploader(kbName, jobsBox) {
  const files = h('input', { type: 'file', multiple: true, id: 'upload-files', class: 'offscreen' });
  const folder = h('input', { type: 'file', multiple: true, webkitdirectory: true, id: 'upload-folder', class: 'offscreen' });
  const status = h('div', { class: 'upload-status', id: 'upload-status', 'aria-live': 'polite' });
  const pick = (input) => () => {
    const chosen = [...input.files].map((f) => ({ file: f, path: f.webkitRelativePath || f.name }));
    input.value = '';
    if (chosen.length) upload(kbName, chosen, status, jobsBox);
  };
  files.addEventListener('change', pick(files));
  folder.addEventListener('change', pick(folder));
  const zone = h('div', { class: 'dropzone', id: 'dropzone' },
    h('div', {}, t('upload.hint')),
    h('div', { class: 'toolbar' },
      h('label', { class: 'btn btn-primary', for: 'upload-files' }, icon('upload'), t('upload.files')),
      h('label', { class: 'btn', for: 'upload-folder' }, icon('folder'), t('upload.folder'))),
    files, folder);
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const chosen = await droppedFiles(e.dataTransfer);
    if (chosen.length) upload(kbName, chosen, status, jobsBox);
  });
  return h('div', {}, zone, status);
}

/** Files dropped on the page, folders walked (at most 10 000 files). */
async function droppedFiles(dt) {
  const entries = [...(dt.items || [])].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...dt.files].map((f) => ({ file: f, path: f.name }));
  const out = [];
  const walk = async (entry, prefix) => {
    if (out.length >= 10000) return;
    if (entry.isFile) {
      const file = await new Promise((ok, fail) => entry.file(ok, fail));
      out.push({ file, path: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (let round = 0; round < 1000; round += 1) {
        const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await walk(entry, '');
  return out;
}

function upload(kbName, chosen, status, jobsBox) {
  const form = new FormData();
  for (const { file, path } of chosen) form.append('files', file, path);
  const bar = h('progress', { max: 100, value: 0 });
  const label = h('div', { class: 'small muted' }, t('upload.sending', { n: chosen.length, pct: 0 }));
  status.replaceChildren(label, bar);
  const xhr = new XMLHttpRequest();
  xhr.open('POST', `/api/kbs/${enc(kbName)}/documents`);
  xhr.setRequestHeader('Accept', 'application/json');
  if (csrfToken()) xhr.setRequestHeader('X-CSRF-Token', csrfToken());
  xhr.upload.addEventListener('progress', (e) => {
    if (!e.lengthComputable) return;
    const pct = Math.round((e.loaded / e.total) * 100);
    bar.value = pct;
    label.textContent = t('upload.sending', { n: chosen.length, pct });
  });
  xhr.addEventListener('load', () => {
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      /* not JSON */
    }
    if (xhr.status === 401) {
      toLogin('expired');
      return;
    }
    if (xhr.status >= 200 && xhr.status < 300 && body && body.job != null) {
      status.replaceChildren(); // the job below shows the progress from here on
      const job = { id: body.job, kb: kbName, data: { id: body.job, status: 'queued', files: body.files || [] }, error: null, finished: false };
      jobs.unshift(job);
      renderJobs(kbName, jobsBox);
      poll(job, jobsBox);
      return;
    }
    const message = body?.error?.message || xhr.statusText || `HTTP ${xhr.status}`;
    const err = new ApiError(xhr.status, message, body?.error?.code, `/api/kbs/${kbName}/documents`);
    status.replaceChildren(err.unavailable ? problem(err) : h('div', { class: 'note note-error', role: 'alert' }, t('upload.failed', { msg: message })));
  });
  xhr.addEventListener('error', () => {
    status.replaceChildren(h('div', { class: 'note note-error', role: 'alert' }, t('upload.failed', { msg: t('common.network', { msg: '' }) })));
  });
  xhr.send(form);
}

const TERMINAL = new Set(['done', 'failed', 'finished', 'completed', 'cancelled', 'canceled', 'rejected', 'skipped']);

function jobFinished(data) {
  const files = data.files || [];
  if (files.length && files.every((f) => TERMINAL.has(f.status))) return true;
  return !files.length && TERMINAL.has(data.status);
}

/** Poll a job once a second (slower after errors) until every file is done or failed; at most 2 hours. */
async function poll(job, jobsBox) {
  const started = Date.now();
  let failures = 0;
  while (!job.finished && Date.now() - started < 2 * 3600 * 1000) {
    await new Promise((r) => setTimeout(r, failures ? Math.min(10000, 1000 * 2 ** failures) : 1000));
    try {
      job.data = await api('GET', `/api/jobs/${enc(job.id)}`);
      job.error = null;
      failures = 0;
      if (jobFinished(job.data)) {
        job.finished = true;
        const c = counts(job.data);
        toast(t('upload.finished', c), c.failed ? 'error' : 'ok');
      }
    } catch (e) {
      job.error = e;
      failures += 1;
      if ((e instanceof ApiError && (e.unavailable || e.status === 401 || e.status === 404)) || failures > 8) job.finished = true;
    }
    const box = document.getElementById('jobs');
    if (box && box.dataset.kb === job.kb) renderJobs(job.kb, box);
    if (job.finished && location.hash === `#kb/${enc(job.kb)}`) {
      const docs = document.getElementById('docs');
      if (docs) documents(job.kb, docs, generation);
    }
  }
}

function counts(data) {
  const files = data.files || [];
  const c = data.counts || {};
  const n = (s) => files.filter((f) => f.status === s).length;
  return {
    done: c.done ?? n('done'),
    failed: c.failed ?? n('failed') + n('rejected'),
    queued: c.queued ?? files.length - n('done') - n('failed') - n('rejected'),
  };
}

function renderJobs(kbName, box) {
  const mine = jobs.filter((j) => j.kb === kbName);
  box.replaceChildren(...mine.map((job) => {
    const files = job.data.files || [];
    const c = counts(job.data);
    const total = files.length || c.done + c.failed + c.queued;
    const settled = c.done + c.failed;
    return h('div', { class: 'job', dataset: { job: job.id, finished: job.finished ? 'true' : 'false' } },
      h('div', { class: 'job-head' },
        h('strong', {}, t('upload.job', { id: job.id })),
        job.data.status ? badge(job.data.status) : null,
        h('span', { class: 'muted job-counts' }, t('upload.counts', c))),
      h('progress', { max: Math.max(total, 1), value: settled }),
      job.error ? problem(job.error) : null,
      h('div', { class: 'job-files' },
        table([t('docs.title.col'), t('tokens.status'), ''], files.map((f) => h('tr', { dataset: { status: f.status } },
          h('td', { class: 'cell-wrap' }, f.name),
          h('td', {}, badge(f.status)),
          h('td', { class: 'cell-wrap small' }, f.message || ''))))));
  }));
}

async function documents(kbName, box, gen) {
  const search = h('input', { class: 'input', type: 'search', id: 'doc-search', placeholder: t('docs.search'), value: docState.q });
  const listBox = h('div', {});
  let timer;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      docState.q = search.value.trim();
      docState.offset = 0;
      load();
    }, 250);
  });
  box.replaceChildren(h('div', { class: 'toolbar' }, search), listBox);

  // How the document's pages were read: text layer, OCR (scans), failed (with numbers).
  function pageReading(d) {
    if (d.text_pages == null) return h('span', { class: 'muted' }, t('docs.read.unknown'));
    const ocr = d.ocr_pages || [];
    const failed = d.failed_pages || [];
    const list = (p) => t('docs.read.list', { list: p.join(', ') });
    return [
      h('span', {}, t('docs.read.text', { n: d.text_pages })),
      ocr.length ? [' · ', h('span', { class: 'badge badge-extracting', title: list(ocr) }, t('docs.read.ocr', { n: ocr.length }))] : null,
      failed.length ? [' · ', h('span', { class: 'badge badge-failed', title: list(failed) }, t('docs.read.failed', { n: failed.length, list: failed.join(', ') }))] : null,
    ];
  }

  async function load() {
    const qs = new URLSearchParams({ q: docState.q, offset: docState.offset, limit: docState.limit });
    let page;
    try {
      page = await api('GET', `/api/kbs/${enc(kbName)}/documents?${qs}`);
    } catch (e) {
      if (gen === generation) listBox.replaceChildren(problem(e));
      return;
    }
    if (gen !== generation) return;
    const docs = page.documents || [];
    const rows = docs.map((d) => h('tr', { dataset: { id: d.id } },
      h('td', { class: 'cell-wrap' }, h('div', {}, d.title || d.name), d.title && d.name && d.title !== d.name ? h('div', { class: 'small muted' }, d.name) : null,
        d.edits_need_review ? h('span', { class: 'badge badge-failed' }, tt('chunks.needs_review')) : null),
      h('td', {}, d.format || ''),
      h('td', { class: 'num' }, d.pages ?? ''),
      h('td', { class: 'small', dataset: { reading: '' } }, pageReading(d)),
      h('td', { class: 'num' }, d.chunks ?? ''),
      h('td', { class: 'num' }, fmtSize(d.size)),
      h('td', { class: 'small' }, fmtTime(d.created_at)),
      h('td', { class: 'cell-wrap small' }, (d.warnings || []).length ? h('span', { class: 'badge badge-queued', title: [].concat(d.warnings).join('\n') }, String([].concat(d.warnings).length)) : ''),
      h('td', { class: 'actions' },
        h('a', { class: 'btn btn-small', href: `#doc/${enc(d.id)}` }, tt('chunks.open')),
        h('a', { class: 'btn btn-small', href: `/api/documents/${enc(d.id)}/file`, download: '' }, t('docs.download')),
        h('button', {
          class: 'btn btn-small',
          type: 'button',
          onclick: async () => {
            if (await guarded(() => api('POST', `/api/documents/${enc(d.id)}/reindex`), t('docs.reindexed', { title: d.title || d.name }))) load();
          },
        }, t('docs.reindex')),
        h('button', {
          class: 'btn btn-small btn-danger',
          type: 'button',
          onclick: async () => {
            const ok = await dialog(t('docs.delete.confirm', { title: d.title || d.name }), { ok: t('common.delete'), danger: true });
            if (ok && await guarded(() => api('DELETE', `/api/documents/${enc(d.id)}`), t('docs.deleted', { title: d.title || d.name }))) load();
          },
        }, t('common.delete')))));
    const total = page.total ?? docs.length;
    const prev = h('button', { class: 'btn btn-small', type: 'button', disabled: docState.offset === 0 }, t('docs.prev'));
    const next = h('button', { class: 'btn btn-small', type: 'button', disabled: docState.offset + docState.limit >= total }, t('docs.next'));
    prev.addEventListener('click', () => {
      docState.offset = Math.max(0, docState.offset - docState.limit);
      load();
    });
    next.addEventListener('click', () => {
      docState.offset += docState.limit;
      load();
    });
    listBox.replaceChildren(
      table([t('docs.title.col'), t('docs.format'), num(t('docs.pages')), t('docs.read'), num(t('kb.chunks')), num(t('docs.size')), t('docs.added'), t('docs.warnings'), act(t('actions'))], rows, { id: 'doc-table', empty: t('docs.empty') }),
      h('div', { class: 'pager' }, h('span', { class: 'muted' }, t('docs.total', { n: total })), prev, next));
  }
  await load();
}

// ---- users ----

async function users(_arg, gen) {
  const list = await api('GET', '/api/users');
  const name = h('input', { class: 'input', required: true, maxlength: 64, placeholder: t('users.name'), id: 'new-user-name' });
  const password = h('input', { class: 'input', type: 'password', required: true, autocomplete: 'new-password', placeholder: t('users.password'), id: 'new-user-password' });
  const role = roleSelect('member');
  const groupsIn = h('input', { class: 'input', placeholder: t('users.groups.placeholder'), id: 'new-user-groups' });
  const wecomIn = wecomInput('', 'new-user-wecom');
  const form = h('form', { class: 'card form-grid', id: 'new-user' }, name, password, role, groupsIn, wecomIn,
    h('button', { class: 'btn btn-primary', type: 'submit' }, icon('plus'), t('users.add')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    const body = { name: n, password: password.value, role: role.value, groups: splitList(groupsIn.value) };
    if (wecomIn.value.trim()) body.wecom_user = wecomIn.value.trim();
    if (await guarded(() => api('POST', '/api/users', body), t('users.added', { name: n }))) route();
  });
  const rows = list.map((u) => userRow(u));
  show(gen, h('h1', {}, t('admin.tab.users')), form,
    table([t('users.name'), t('users.role'), t('users.groups'), t('users.wecom'), t('users.created'), act(t('actions'))], rows, { id: 'user-table' }));
}

/** The WeCom userid field: the id as the WeCom console shows it; blank means not linked. */
function wecomInput(value, id) {
  return h('input', { class: 'input', value, maxlength: 64, placeholder: t('users.wecom.placeholder'), 'aria-label': t('users.wecom'), id });
}

function roleSelect(value) {
  const s = h('select', { class: 'select', 'aria-label': t('users.role') },
    h('option', { value: 'member' }, t('users.role.member')),
    h('option', { value: 'admin' }, t('users.role.admin')));
  s.value = value;
  return s;
}

function userRow(u) {
  const row = h('tr', { dataset: { user: u.name } },
    h('td', {}, u.name),
    h('td', {}, h('span', { class: `badge badge-${u.role}` }, t(`users.role.${u.role}`))),
    h('td', {}, h('div', { class: 'chips' }, (u.groups || []).map((g) => h('span', { class: 'chip chip-plain' }, g)))),
    h('td', { class: 'wecom-user' }, u.wecom_user ? u.wecom_user : h('span', { class: 'muted' }, t('users.wecom.none'))),
    h('td', { class: 'small' }, fmtTime(u.created_at)),
    h('td', { class: 'actions' },
      h('button', { class: 'btn btn-small', type: 'button', onclick: () => row.replaceWith(userEditRow(u, row)) }, t('users.edit')),
      u.name === me.user.name ? null : h('button', {
        class: 'btn btn-small btn-danger',
        type: 'button',
        onclick: async () => {
          const ok = await dialog(t('users.delete.confirm', { name: u.name }), { ok: t('common.delete'), danger: true });
          if (ok && await guarded(() => api('DELETE', `/api/users/${enc(u.name)}`), t('users.deleted', { name: u.name }))) route();
        },
      }, t('common.delete'))));
  return row;
}

function userEditRow(u, original) {
  const role = roleSelect(u.role);
  const groupsIn = h('input', { class: 'input', value: (u.groups || []).join(', '), placeholder: t('users.groups.placeholder') });
  const password = h('input', { class: 'input', type: 'password', autocomplete: 'new-password', placeholder: t('users.newpassword') });
  const wecomIn = wecomInput(u.wecom_user || '');
  const row = h('tr', { dataset: { user: u.name, editing: 'true' } },
    h('td', {}, u.name),
    h('td', {}, role),
    h('td', {}, groupsIn),
    h('td', {}, wecomIn),
    h('td', {}, password),
    h('td', { class: 'actions' },
      h('button', {
        class: 'btn btn-small btn-primary',
        type: 'button',
        onclick: async () => {
          const body = { role: role.value, groups: splitList(groupsIn.value) };
          if (password.value) body.password = password.value;
          const wecom = wecomIn.value.trim();
          if (wecom !== (u.wecom_user || '')) body.wecom_user = wecom || null;
          if (await guarded(() => api('PATCH', `/api/users/${enc(u.name)}`, body), t('users.updated', { name: u.name }))) route();
        },
      }, t('common.save')),
      h('button', { class: 'btn btn-small', type: 'button', onclick: () => row.replaceWith(original) }, t('common.cancel'))));
  return row;
}

// ---- groups ----

async function groups(_arg, gen) {
  const list = await api('GET', '/api/groups');
  const name = h('input', { class: 'input', required: true, maxlength: 64, placeholder: t('groups.name'), id: 'new-group-name' });
  const form = h('form', { class: 'toolbar', id: 'new-group' }, name,
    h('button', { class: 'btn btn-primary', type: 'submit' }, icon('plus'), t('groups.add')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    if (n && await guarded(() => api('POST', '/api/groups', { name: n }), t('groups.added', { name: n }))) route();
  });
  const rows = list.map((g) => h('tr', { dataset: { group: g.name } },
    h('td', {}, g.name),
    h('td', { class: 'num' }, g.members),
    h('td', {}, h('div', { class: 'chips' }, (g.knowledge_bases || []).map((k) => h('a', { class: 'chip chip-plain', href: `#kb/${enc(k)}` }, k)))),
    h('td', { class: 'actions' }, h('button', {
      class: 'btn btn-small btn-danger',
      type: 'button',
      onclick: async () => {
        const ok = await dialog(t('groups.delete.confirm', { name: g.name }), { ok: t('common.delete'), danger: true });
        if (ok && await guarded(() => api('DELETE', `/api/groups/${enc(g.name)}`), t('groups.deleted', { name: g.name }))) route();
      },
    }, t('common.delete')))));
  show(gen, h('h1', {}, t('admin.tab.groups')), form,
    table([t('groups.name'), num(t('groups.members')), t('groups.kbs'), act(t('actions'))], rows, { id: 'group-table' }));
}

// ---- API tokens ----

async function tokens(_arg, gen) {
  const list = await api('GET', '/api/tokens');
  const name = h('input', { class: 'input', required: true, maxlength: 100, placeholder: t('tokens.name.placeholder'), id: 'new-token-name' });
  const user = h('input', { class: 'input', maxlength: 64, placeholder: t('tokens.user.placeholder'), id: 'new-token-user' });
  const once = h('div', { id: 'token-once' });
  const form = h('form', { class: 'toolbar', id: 'new-token' }, name, user,
    h('button', { class: 'btn btn-primary', type: 'submit' }, icon('plus'), t('tokens.create')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim() };
    if (user.value.trim()) body.user = user.value.trim();
    const created = await guarded(() => api('POST', '/api/tokens', body));
    if (!created || !created.token) return;
    await tokens(null, generation);
    const copy = h('button', { class: 'btn btn-small', type: 'button' }, icon('copy'), t('tokens.copy'));
    copy.addEventListener('click', async () => {
      if (await copyText(created.token)) toast(t('chat.copied'), 'ok');
    });
    $('#token-once').replaceChildren(h('div', { class: 'card' },
      h('p', { class: 'small' }, t('tokens.once')),
      h('div', { class: 'token-once' }, h('code', { id: 'new-token-value' }, created.token), copy)));
  });
  const rows = list.map((k) => h('tr', { dataset: { token: k.id } },
    h('td', {}, k.name),
    h('td', {}, k.user),
    h('td', {}, h('code', {}, `${k.prefix}…`)),
    h('td', { class: 'small' }, fmtTime(k.created_at)),
    h('td', { class: 'small' }, k.last_used_at ? fmtTime(k.last_used_at) : t('tokens.never')),
    h('td', {}, k.revoked ? badge('revoked') : h('span', { class: 'badge badge-active' }, t('tokens.active'))),
    h('td', { class: 'actions' }, k.revoked ? null : h('button', {
      class: 'btn btn-small btn-danger',
      type: 'button',
      onclick: async () => {
        const ok = await dialog(t('tokens.revoke.confirm', { name: k.name }), { ok: t('tokens.revoke'), danger: true });
        if (ok && await guarded(() => api('DELETE', `/api/tokens/${enc(k.id)}`))) route();
      },
    }, t('tokens.revoke')))));
  show(gen, h('h1', {}, t('admin.tab.tokens')), form, once,
    table([t('tokens.name'), t('tokens.user'), t('tokens.prefix'), t('tokens.created'), t('tokens.lastused'), t('tokens.status'), act(t('actions'))], rows, { id: 'token-table' }));
}

// ---- logs: feedback, queries, audit, blocked answers ----

const LOG_PATHS = {
  feedback: '/api/admin/feedback',
  queries: '/api/admin/queries',
  audit: '/api/admin/audit',
  blocked: '/api/admin/blocked',
};

function logView(kind) {
  return async (_arg, gen) => {
    const title = h('h1', {}, t(`admin.tab.${kind}`));
    let data;
    try {
      data = await api('GET', LOG_PATHS[kind]);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) show(gen, title, problem(e));
      return;
    }
    const rows = Array.isArray(data) ? data : Object.values(data || {}).find(Array.isArray) || [];
    show(gen, title, logTable(rows, kind));
  };
}

function cell(key, v) {
  if (v == null || v === '') return '';
  if (key === 'rating' && typeof v === 'number') {
    return h('span', { class: `badge ${v > 0 ? 'badge-done' : 'badge-failed'}` }, v > 0 ? `+${v}` : String(v));
  }
  if (/(_at|^at|time|timestamp|^ts)$/.test(key) && (typeof v === 'number' || /^\d{4}-\d\d-\d\d/.test(v))) return fmtTime(v);
  if (typeof v === 'object') {
    const s = JSON.stringify(v);
    return s.length > 200 ? `${s.slice(0, 200)}…` : s;
  }
  const s = String(v);
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}

/** Any list of records as a table: the columns are the keys the first records have. */
function logTable(rows, kind) {
  const keys = [];
  for (const r of rows.slice(0, 50)) {
    for (const k of Object.keys(r || {})) if (!keys.includes(k)) keys.push(k);
  }
  const body = rows.map((r) => h('tr', {}, keys.map((k) => h('td', { class: 'cell-wrap small' }, cell(k, r[k])))));
  return table(keys, body, { id: `${kind}-table` });
}

// ---- user dictionary ----

async function dictionary(_arg, gen) {
  const title = h('h1', {}, t('dict.title'));
  let text;
  try {
    text = await api('GET', '/api/admin/dictionary');
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) show(gen, title, problem(e));
    return;
  }
  const area = h('textarea', { class: 'input dict', id: 'dictionary', spellcheck: 'false' });
  area.value = typeof text === 'string' ? text : '';
  const save = h('button', { class: 'btn btn-primary', type: 'button' }, t('common.save'));
  save.addEventListener('click', () => guarded(() => api('PUT', '/api/admin/dictionary', area.value), t('dict.saved')));
  show(gen, title, h('p', { class: 'muted small' }, t('dict.hint')), area, h('div', { class: 'toolbar' }, save));
}

start();
