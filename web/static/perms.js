// Folder and document permissions of a knowledge base (#perms/<kb>): the documents as a
// folder tree with who may read each folder and document, restrict / unrestrict from the
// tree (PUT / DELETE /api/kbs/{kb}/rules), and a "view as user" search: the hit test run
// with another user's rights. A view of the admin page; admin.js routes to it.
import { api, t as common, lang, h, toast, icon, ApiError } from './common.js';

// The tree's indent through the CSSOM: the pages' CSP forbids style attributes.
function indented(depth, td) {
  td.style.paddingLeft = `${0.5 + depth * 1.25}rem`;
  return td;
}

const enc = encodeURIComponent;

const STRINGS = {
  zh: {
    'perms.open': '文件夹权限',
    'perms.title': '文件夹与文档权限',
    'perms.hint': '限制某个文件夹或文档后，只有所选用户组（和管理员）能读到它；最近的规则生效（文档规则优先于更深的文件夹规则），新上传的文档继承所在文件夹的规则。',
    'perms.everyone': '知识库的所有读者',
    'perms.admins': '仅管理员',
    'perms.inherited': '继承自 {path}',
    'perms.own': '本级规则',
    'perms.pending': '索引更新中（期间按更严格的规则拒绝）',
    'perms.restrict': '限制',
    'perms.unrestrict': '取消限制',
    'perms.groups': '可读用户组',
    'perms.pick': '选择用户组…',
    'perms.done': '{path}：{n} 个文档的权限已更新。',
    'perms.as': '以用户身份检索',
    'perms.as.user': '用户',
    'perms.as.question': '问题',
    'perms.as.run': '检索',
    'perms.as.none': '该用户什么也检索不到。',
    'perms.as.unreadable': '该用户无权读取此知识库。',
    'perms.col.path': '文件夹 / 文档',
    'perms.col.readers': '谁能读',
    'perms.col.actions': '操作',
  },
  en: {
    'perms.open': 'Folder permissions',
    'perms.title': 'Folder and document permissions',
    'perms.hint': 'A restricted folder or document is readable only by the chosen groups (and admins); the nearest rule wins (a document rule over a deeper folder rule), and new uploads inherit their folder’s rule.',
    'perms.everyone': 'every reader of the knowledge base',
    'perms.admins': 'admins only',
    'perms.inherited': 'from {path}',
    'perms.own': 'own rule',
    'perms.pending': 'index update running (the stricter rule holds meanwhile)',
    'perms.restrict': 'Restrict',
    'perms.unrestrict': 'Unrestrict',
    'perms.groups': 'Groups that may read',
    'perms.pick': 'Pick groups…',
    'perms.done': '{path}: readers of {n} document(s) updated.',
    'perms.as': 'Search as a user',
    'perms.as.user': 'User',
    'perms.as.question': 'Question',
    'perms.as.run': 'Search',
    'perms.as.none': 'This user finds nothing.',
    'perms.as.unreadable': 'This user may not read this knowledge base.',
    'perms.col.path': 'Folder / document',
    'perms.col.readers': 'Who may read',
    'perms.col.actions': 'Actions',
  },
};

function t(key, vars) {
  const s = (STRINGS[lang()] || STRINGS.zh)[key];
  if (s === undefined) return common(key, vars);
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars && k in vars ? String(vars[k]) : `{${k}}`));
}

export { t };

/** The folder tree of `docs` (sorted by source): nested { name, path, folders, docs }. */
function tree(docs) {
  const root = { name: '', path: '', folders: new Map(), docs: [] };
  for (const d of docs) {
    const parts = d.source.split('/').filter(Boolean);
    let node = root;
    let path = d.source.startsWith('/') ? '' : null;
    for (const part of parts.slice(0, -1)) {
      path = path === null ? part : `${path}/${part}`;
      if (!node.folders.has(part)) node.folders.set(part, { name: part, path, folders: new Map(), docs: [] });
      node = node.folders.get(part);
    }
    node.docs.push(d);
  }
  return root;
}

/** Who may read, as words: the groups, everyone, or admins only. */
function readers(groups, rule) {
  if (groups.length) return groups.join('、');
  return rule ? t('perms.admins') : t('perms.everyone');
}

/** The nearest rule at or above a folder path (folder rules only). */
function folderRule(rules, path) {
  let best = null;
  for (const r of rules) {
    if (r.kind !== 'folder') continue;
    if ((path === r.path || path.startsWith(`${r.path}/`)) && (!best || r.path.length > best.path.length)) best = r;
  }
  return best;
}

export async function permsView(kbName, gen, show) {
  const [data, groups, users] = await Promise.all([
    api('GET', `/api/kbs/${enc(kbName)}/rules`),
    api('GET', '/api/groups').catch(() => []),
    api('GET', '/api/users').catch(() => []),
  ]);
  const groupNames = groups.map((g) => g.name);
  const own = new Map(data.rules.map((r) => [r.path, r]));
  const rows = [];

  const controls = (path, rule) => {
    const pick = h('select', { class: 'select', multiple: true, size: Math.min(3, Math.max(1, groupNames.length)), 'aria-label': t('perms.groups'), dataset: { path } },
      groupNames.map((g) => h('option', { value: g, selected: rule ? rule.groups.includes(g) : false }, g)));
    const restrict = h('button', { class: 'btn btn-small', type: 'button', dataset: { restrict: path } }, icon('lock'), t('perms.restrict'));
    restrict.addEventListener('click', async () => {
      const chosen = [...pick.selectedOptions].map((o) => o.value);
      if (!chosen.length) {
        toast(t('perms.pick'), 'error');
        return;
      }
      await change(() => api('PUT', `/api/kbs/${enc(kbName)}/rules`, { path, groups: chosen }));
    });
    const out = [pick, restrict];
    if (rule) {
      const un = h('button', { class: 'btn btn-small btn-ghost', type: 'button', dataset: { unrestrict: path } }, t('perms.unrestrict'));
      un.addEventListener('click', () => change(() => api('DELETE', `/api/kbs/${enc(kbName)}/rules?path=${enc(path)}`)));
      out.push(un);
    }
    return h('div', { class: 'toolbar' }, out);
  };

  const change = async (fn) => {
    try {
      const r = await fn();
      toast(t('perms.done', { path: r.path, n: r.documents }), 'ok');
      permsView(kbName, gen, show);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) toast(e.message, 'error');
    }
  };

  const walk = (node, depth) => {
    for (const f of [...node.folders.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      const rule = own.get(f.path);
      const near = rule || folderRule(data.rules, f.path);
      const who = near ? readers(near.groups, near) : t('perms.everyone');
      const where = rule ? t('perms.own') : near ? t('perms.inherited', { path: near.path }) : '';
      rows.push(h('tr', { class: 'perm-folder', dataset: { path: f.path } },
        indented(depth, h('td', {}, icon('folder'), ` ${f.name}/`)),
        h('td', {}, h('span', { class: near ? 'badge badge-failed' : 'badge badge-done' }, who), where ? h('span', { class: 'muted' }, ` ${where}`) : null),
        h('td', { class: 'actions' }, controls(f.path, rule))));
      walk(f, depth + 1);
    }
    for (const d of node.docs) {
      const rule = own.get(d.source);
      const where = rule ? t('perms.own') : d.rule ? t('perms.inherited', { path: d.rule }) : '';
      const name = d.source.split('/').pop();
      rows.push(h('tr', { class: 'perm-doc', dataset: { path: d.source } },
        indented(depth, h('td', {}, icon('file'), ` ${name}`, h('span', { class: 'muted' }, ` ${d.title}`))),
        h('td', {}, h('span', { class: d.rule ? 'badge badge-failed' : 'badge badge-done' }, readers(d.groups, d.rule)),
          where ? h('span', { class: 'muted' }, ` ${where}`) : null,
          d.pending ? h('span', { class: 'badge badge-queued', title: t('perms.pending') }, '⟳') : null),
        h('td', { class: 'actions' }, controls(d.source, rule))));
    }
  };
  walk(tree(data.documents), 0);

  // View as user: the hit test with another user's rights.
  const who = h('select', { class: 'select', id: 'perms-as-user', 'aria-label': t('perms.as.user') },
    users.map((u) => h('option', { value: u.name }, u.name)));
  const question = h('input', { class: 'input', id: 'perms-as-question', required: true, placeholder: t('perms.as.question') });
  const result = h('div', { id: 'perms-as-result' });
  const form = h('form', { class: 'toolbar', id: 'perms-as' }, who, question,
    h('button', { class: 'btn btn-primary', type: 'submit' }, t('perms.as.run')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!question.value.trim()) return;
    try {
      const r = await api('POST', `/api/kbs/${enc(kbName)}/search-test`, { question: question.value, as_user: who.value });
      const hits = r.candidates.filter((c) => c.status === 'hit');
      if (!r.readable) result.replaceChildren(h('p', { class: 'note note-error' }, t('perms.as.unreadable')));
      else if (!hits.length) result.replaceChildren(h('p', { class: 'muted' }, t('perms.as.none')));
      else {
        result.replaceChildren(h('ol', { class: 'perm-hits' }, hits.map((c) => h('li', {},
          h('strong', {}, c.title || ''), ' ', h('span', { class: 'muted' }, (c.text || '').slice(0, 80))))));
      }
    } catch (err) {
      toast(err.message, 'error');
    }
  });

  show(gen,
    h('a', { class: 'back', href: `#kb/${enc(kbName)}` }, icon('back'), kbName),
    h('h1', {}, t('perms.title')),
    h('p', { class: 'muted' }, t('perms.hint')),
    h('section', { class: 'card' },
      h('div', { class: 'table-wrap' },
        h('table', { class: 'data', id: 'perms-tree' },
          h('thead', {}, h('tr', {}, h('th', {}, t('perms.col.path')), h('th', {}, t('perms.col.readers')), h('th', { class: 'actions' }, t('perms.col.actions')))),
          h('tbody', {}, rows)))),
    h('section', { class: 'card' }, h('h2', {}, t('perms.as')), form, result));
}
