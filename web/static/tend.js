// Knowledge admin tools: hit testing (#test/<kb>) and a document's chunks with their editor
// and edit history (#doc/<id>). Views of the admin page; admin.js routes to them.
import { api, t as common, lang, h, toast, problem, fmtTime, icon, ApiError } from './common.js';

const enc = encodeURIComponent;

const STRINGS = {
  zh: {
    'test.title': '命中测试',
    'test.open': '命中测试',
    'test.question': '问题',
    'test.as': '以用户身份',
    'test.as.me': '我（管理员）',
    'test.run': '测试',
    'test.hint': '按问答的真实流程检索：向量与关键词召回、融合、相关性门槛、提示词的 token 预算。不会生成回答，也不记入查询日志。',
    'test.verdict.ok': '能回答',
    'test.verdict.none': '未找到',
    'test.terms': '关键词',
    'test.budget': '提示词预算：{model}，上下文 {ctx}，预留 {reserved}，可用 {budget}，实际 {used} tokens',
    'test.budget.none': '未配置生成模型：回答为摘录式，取所有通过门槛的段落。',
    'test.hits': '检索结果与门槛判定',
    'test.candidates': '全部候选',
    'test.col.rank': '名次',
    'test.col.passage': '段落',
    'test.col.coverage': '覆盖率',
    'test.col.dense': '向量分（名次）',
    'test.col.keyword': '关键词分（名次）',
    'test.col.fused': '融合分',
    'test.col.gate': '门槛',
    'test.col.place': '提示词',
    'test.col.status': '状态',
    'test.place.prompt': '放入提示词',
    'test.place.cut_by_budget': '超出 token 预算',
    'test.place.cut_by_sources': '超出段落数上限',
    'test.place.cut_by_gate': '未过门槛',
    'test.status.hit': '返回',
    'test.status.below_top_k': '排名靠后',
    'test.status.hidden': '不可见',
    'test.unreadable': '用户 {user} 无权读取知识库 {kb}：该用户什么也搜不到。',
    'test.gate.cov': '关键词覆盖率 {v} {op} {min}',
    'test.gate.noterms': '问题没有关键词',
    'test.gate.dense': '向量分 {v} {op} {min}',
    'test.gate.nodense': '不在向量候选中',
    'test.why.ok': '{n}/{m} 段通过门槛，{k} 段放入提示词。',
    'test.why.unreadable': '该用户无权读取此知识库，没有检索任何内容。',
    'test.why.nohits': '没有检索到任何段落。',
    'test.why.gate': '{m} 段都未通过门槛（需关键词覆盖率 ≥ {cov} 或向量分 ≥ {dense}），回答将是“未找到”。',
    'test.why.budget': '有段落通过门槛，但连一段也放不进提示词的 token 预算。',
    'test.none': '没有结果。',
    'chunks.text': '文本',
    'chunks.title': '分块',
    'chunks.open': '分块',
    'chunks.review': '文件在分块编辑后发生了变化：{n} 处编辑已不再适用，请检查并重新编辑。',
    'chunks.review.done': '已检查',
    'chunks.reviewed': '已标记为已检查。',
    'chunks.page': '第 {page} 页',
    'chunks.enabled': '启用',
    'chunks.disabled': '已停用',
    'chunks.edited': '已编辑',
    'chunks.keywords': '关键词（逗号分隔）',
    'chunks.questions': '能找到它的问题（每行一个）',
    'chunks.save': '保存',
    'chunks.saved': '分块 {id} 已保存，检索已更新。',
    'chunks.original': '原文',
    'chunks.history': '编辑历史',
    'chunks.history.col.when': '时间',
    'chunks.history.col.who': '用户',
    'chunks.history.col.chunk': '分块',
    'chunks.history.col.change': '修改',
    'chunks.history.stale': '旧版本',
    'chunks.empty': '没有分块。',
    'chunks.needs_review': '编辑待检查',
  },
  en: {
    'test.title': 'Hit test',
    'test.open': 'Hit test',
    'test.question': 'Question',
    'test.as': 'View as user',
    'test.as.me': 'Me (admin)',
    'test.run': 'Test',
    'test.hint': 'Runs the question through the real answer path: dense and keyword retrieval, fusion, the relevance gate and the prompt’s token budget. Nothing is generated or logged as a question.',
    'test.verdict.ok': 'Answerable',
    'test.verdict.none': 'Not found',
    'test.terms': 'Key terms',
    'test.budget': 'Prompt budget: {model}, context {ctx}, reserved {reserved}, available {budget}, used {used} tokens',
    'test.budget.none': 'No generator configured: answers are extractive, from every passage that passes the gate.',
    'test.hits': 'Hits and the relevance gate',
    'test.candidates': 'All candidates',
    'test.col.rank': 'Rank',
    'test.col.passage': 'Passage',
    'test.col.coverage': 'Coverage',
    'test.col.dense': 'Dense (rank)',
    'test.col.keyword': 'Keyword (rank)',
    'test.col.fused': 'Fused',
    'test.col.gate': 'Gate',
    'test.col.place': 'Prompt',
    'test.col.status': 'Status',
    'test.place.prompt': 'in the prompt',
    'test.place.cut_by_budget': 'cut: token budget',
    'test.place.cut_by_sources': 'cut: passage limit',
    'test.place.cut_by_gate': 'cut: gate',
    'test.status.hit': 'returned',
    'test.status.below_top_k': 'below top k',
    'test.status.hidden': 'hidden',
    'test.unreadable': 'User {user} may not read {kb}: nothing is searched for them.',
    'test.gate.cov': 'key-term coverage {v} {op} {min}',
    'test.gate.noterms': 'the question has no key terms',
    'test.gate.dense': 'dense {v} {op} {min}',
    'test.gate.nodense': 'not a dense candidate',
    'test.why.ok': '{n} of {m} passages passed the gate; {k} go into the prompt.',
    'test.why.unreadable': 'The user may not read this knowledge base: nothing was searched.',
    'test.why.nohits': 'Retrieval found no passage.',
    'test.why.gate': 'None of the {m} passages passed the gate (key-term coverage ≥ {cov} or dense ≥ {dense} needed): the answer is “not found”.',
    'test.why.budget': 'Passages passed the gate, but not even one fits the prompt’s token budget.',
    'test.none': 'Nothing.',
    'chunks.text': 'Text',
    'chunks.title': 'Chunks',
    'chunks.open': 'Chunks',
    'chunks.review': 'The file changed after its chunks were edited: {n} edits no longer apply. Check them and edit again where needed.',
    'chunks.review.done': 'Mark reviewed',
    'chunks.reviewed': 'Marked as reviewed.',
    'chunks.page': 'page {page}',
    'chunks.enabled': 'Enabled',
    'chunks.disabled': 'Disabled',
    'chunks.edited': 'Edited',
    'chunks.keywords': 'Keywords (comma-separated)',
    'chunks.questions': 'Questions that should find it (one a line)',
    'chunks.save': 'Save',
    'chunks.saved': 'Chunk {id} saved; search is up to date.',
    'chunks.original': 'Original text',
    'chunks.history': 'Edit history',
    'chunks.history.col.when': 'When',
    'chunks.history.col.who': 'Who',
    'chunks.history.col.chunk': 'Chunk',
    'chunks.history.col.change': 'Change',
    'chunks.history.stale': 'earlier version',
    'chunks.empty': 'No chunks.',
    'chunks.needs_review': 'edits need review',
  },
};

/** A string of these views, else of the common table. */
export function t(key, vars) {
  const s = STRINGS[lang()][key] ?? STRINGS.zh[key];
  if (s === undefined) return common(key, vars);
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

const fmt = (v, digits) => (v == null ? '—' : Number(v).toFixed(digits));
const withRank = (v, r, digits) => (v == null ? '—' : `${fmt(v, digits)} (${r})`);

function table(headers, rows, id) {
  if (!rows.length) return h('p', { class: 'muted', id }, t('test.none'));
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'data', id },
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { class: x.cls }, x.text ?? x)))),
      h('tbody', {}, rows)));
}

function excerpt(text, n = 120) {
  if (!text) return '';
  return text.length > n ? `${text.slice(0, n)}…` : text;
}

// ---- hit testing ----

/** The hit-test view of knowledge base `kbName`; `show(gen, ...nodes)` renders unless stale. */
export async function hitTest(kbName, gen, show) {
  const users = await api('GET', '/api/users').catch(() => []);
  const question = h('textarea', { class: 'input', id: 'test-question', rows: 2, maxlength: 4000, placeholder: t('test.question') });
  const asUser = h('select', { class: 'select', id: 'test-as', 'aria-label': t('test.as') },
    h('option', { value: '' }, t('test.as.me')),
    users.map((u) => h('option', { value: u.name }, u.name)));
  const run = h('button', { class: 'btn btn-primary', type: 'submit', id: 'test-run' }, t('test.run'));
  const out = h('div', { id: 'test-result' });
  const form = h('form', { class: 'card', id: 'test-form' },
    h('p', { class: 'small muted' }, t('test.hint')),
    h('label', { class: 'field' }, h('span', {}, t('test.question')), question),
    h('div', { class: 'toolbar' }, h('label', { class: 'small muted', for: 'test-as' }, t('test.as')), asUser, h('span', { class: 'spacer' }), run));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = question.value.trim();
    if (!q) return;
    run.disabled = true;
    out.replaceChildren(h('p', { class: 'muted' }, common('common.loading')));
    try {
      const body = { question: q };
      if (asUser.value) body.as_user = asUser.value;
      const r = await api('POST', `/api/kbs/${enc(kbName)}/search-test`, body);
      out.replaceChildren(...renderTest(r));
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) out.replaceChildren(problem(err));
    } finally {
      run.disabled = false;
    }
  });
  question.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  show(gen,
    h('a', { class: 'back', href: `#kb/${enc(kbName)}` }, icon('back'), kbName),
    h('h1', {}, `${t('test.title')} · ${kbName}`),
    form, out);
  question.focus();
}

/** The gate's reason for one hit, from its numbers, in the page's language. */
function gateReason(x, r) {
  const v = r.verdict;
  const op = (a, b) => (a >= b ? '≥' : '<');
  const cov = r.key_terms.length
    ? t('test.gate.cov', { v: fmt(x.coverage, 2), op: op(x.coverage, v.min_term_coverage), min: fmt(v.min_term_coverage, 2) })
    : t('test.gate.noterms');
  const d = x.hit.scores.dense;
  const dense = d == null
    ? t('test.gate.nodense')
    : t('test.gate.dense', { v: fmt(d, 3), op: op(d, v.min_dense_score), min: fmt(v.min_dense_score, 3) });
  return `${cov}; ${dense}`;
}

/** Why the question is (not) answered, in the page's language. */
function verdictReason(r) {
  const m = r.hits.length;
  if (!r.readable) return t('test.why.unreadable');
  if (!m) return t('test.why.nohits');
  const n = r.hits.filter((x) => x.relevant).length;
  if (!n) return t('test.why.gate', { m, cov: fmt(r.verdict.min_term_coverage, 2), dense: fmt(r.verdict.min_dense_score, 3) });
  if (!r.prompt.length) return t('test.why.budget');
  return t('test.why.ok', { n, m, k: r.prompt.length });
}

function renderTest(r) {
  const v = r.verdict;
  const nodes = [];
  if (!r.readable) nodes.push(h('div', { class: 'note note-error', id: 'test-unreadable' }, t('test.unreadable', { user: r.user, kb: r.kb })));
  nodes.push(h('div', { class: `note ${v.answered ? 'note-ok' : 'note-error'}`, id: 'test-verdict', title: v.reason, dataset: { answered: String(v.answered) } },
    h('strong', {}, v.answered ? t('test.verdict.ok') : t('test.verdict.none')), ' — ', verdictReason(r)));
  const b = r.budget;
  nodes.push(h('p', { class: 'small muted', id: 'test-budget' }, b
    ? t('test.budget', { model: b.model, ctx: b.context_length, reserved: b.reserved, budget: b.budget, used: b.prompt_tokens })
    : t('test.budget.none')));
  if (r.key_terms.length) {
    nodes.push(h('div', { class: 'toolbar' }, h('span', { class: 'small muted' }, t('test.terms')),
      h('div', { class: 'chips' }, r.key_terms.map((k) => h('span', { class: 'chip chip-plain' }, k)))));
  }
  const num = (text) => ({ text, cls: 'num' });
  nodes.push(h('h2', {}, t('test.hits')));
  nodes.push(table([t('test.col.rank'), t('test.col.passage'), num(t('test.col.coverage')), num(t('test.col.dense')), num(t('test.col.keyword')), num(t('test.col.fused')), t('test.col.gate'), t('test.col.place')],
    r.hits.map((x, i) => h('tr', { dataset: { chunk: x.hit.chunk, placement: x.placement } },
      h('td', { class: 'num' }, i + 1),
      h('td', { class: 'cell-wrap' },
        h('div', {}, h('a', { href: `#doc/${x.hit.document_id}` }, x.hit.title), x.hit.page ? h('span', { class: 'small muted' }, ` · ${t('chunks.page', { page: x.hit.page })}`) : null),
        h('div', { class: 'small muted' }, excerpt(x.hit.text))),
      h('td', { class: 'num' }, fmt(x.coverage, 2)),
      h('td', { class: 'num' }, withRank(x.hit.scores.dense, x.hit.scores.dense_rank, 3)),
      h('td', { class: 'num' }, withRank(x.hit.scores.keyword, x.hit.scores.keyword_rank, 2)),
      h('td', { class: 'num' }, fmt(x.hit.scores.fused, 4)),
      h('td', { class: 'small cell-wrap' }, h('span', { class: `badge ${x.relevant ? 'badge-done' : 'badge-failed'}` }, x.relevant ? '✓' : '✗'), ' ', gateReason(x, r)),
      h('td', {}, h('span', { class: `badge ${x.placement === 'prompt' ? 'badge-active' : 'badge-queued'}` }, t(`test.place.${x.placement}`))))),
    'test-hits'));
  nodes.push(h('h2', {}, `${t('test.candidates')} (${r.candidates.length})`));
  nodes.push(table([t('test.col.rank'), t('test.col.status'), t('test.col.passage'), num(t('test.col.dense')), num(t('test.col.keyword')), num(t('test.col.fused'))],
    r.candidates.map((c) => h('tr', { dataset: { chunk: c.chunk, status: c.status } },
      h('td', { class: 'num' }, c.rank),
      h('td', {}, h('span', { class: `badge ${c.status === 'hit' ? 'badge-done' : ''}` }, t(`test.status.${c.status}`))),
      h('td', { class: 'cell-wrap small' }, c.title ? h('strong', {}, `${c.title} `) : null, excerpt(c.text, 80)),
      h('td', { class: 'num' }, withRank(c.dense, c.dense_rank, 3)),
      h('td', { class: 'num' }, withRank(c.keyword, c.keyword_rank, 2)),
      h('td', { class: 'num' }, fmt(c.fused, 4)))),
    'test-candidates'));
  return nodes;
}

// ---- chunks of one document ----

const splitTerms = (s) => s.split(/[,，、\n]+/).map((x) => x.trim()).filter(Boolean);

/** The chunk editor of document `id`. */
export async function docChunks(id, gen, show) {
  const [doc, edits] = await Promise.all([
    api('GET', `/api/documents/${enc(id)}/chunks`),
    api('GET', `/api/documents/${enc(id)}/edits`),
  ]);
  const reload = () => docChunks(id, gen, show);
  const review = doc.review
    ? h('div', { class: 'note note-error toolbar', id: 'chunks-review' },
      h('span', { class: 'spacer' }, t('chunks.review', { n: doc.review.stale_edits })),
      h('button', {
        class: 'btn btn-small',
        type: 'button',
        onclick: async () => {
          try {
            await api('POST', `/api/documents/${enc(id)}/review`);
            toast(t('chunks.reviewed'), 'ok');
            reload();
          } catch (e) {
            toast(e.message, 'error');
          }
        },
      }, t('chunks.review.done')))
    : null;
  const cards = doc.chunks.map((c) => chunkCard(c, reload));
  show(gen,
    h('a', { class: 'back', href: `#kb/${enc(doc.kb)}` }, icon('back'), doc.kb),
    h('div', { class: 'toolbar' },
      h('h1', { class: 'spacer' }, `${doc.title || doc.name} · ${t('chunks.title')}`),
      h('a', { class: 'btn btn-small', href: `#test/${enc(doc.kb)}` }, t('test.open'))),
    h('p', { class: 'small muted' }, doc.name),
    review,
    cards.length ? h('div', { id: 'chunks' }, cards) : h('p', { class: 'muted' }, t('chunks.empty')),
    h('h2', {}, t('chunks.history')),
    history(edits));
}

function chunkCard(c, reload) {
  const text = h('textarea', { class: 'input chunk-text', rows: Math.min(12, Math.max(3, Math.ceil(c.text.length / 60))), value: c.text, 'aria-label': t('chunks.text') });
  const enabled = h('input', { type: 'checkbox', class: 'chunk-enabled' });
  enabled.checked = c.enabled;
  const keywords = h('input', { class: 'input chunk-keywords', value: c.keywords.join(', '), placeholder: t('chunks.keywords') });
  const questions = h('textarea', { class: 'input chunk-questions', rows: 2, value: c.questions.join('\n'), placeholder: t('chunks.questions') });
  const save = h('button', { class: 'btn btn-primary btn-small chunk-save', type: 'submit' }, t('chunks.save'));
  const form = h('form', { class: 'card chunk', dataset: { chunk: c.id, enabled: String(c.enabled), edited: String(c.edited) } },
    h('div', { class: 'toolbar' },
      h('strong', {}, `#${c.ordinal + 1}`),
      h('span', { class: 'small muted' }, t('chunks.page', { page: c.page })),
      c.heading_path.length ? h('span', { class: 'small muted' }, c.heading_path.join(' › ')) : null,
      c.ocr_confidence != null ? h('span', { class: 'badge' }, `OCR ${fmt(c.ocr_confidence, 2)}`) : null,
      c.edited ? h('span', { class: 'badge badge-admin' }, t('chunks.edited')) : null,
      c.enabled ? null : h('span', { class: 'badge badge-failed' }, t('chunks.disabled')),
      h('span', { class: 'spacer' }),
      h('label', { class: 'small' }, enabled, ' ', t('chunks.enabled'))),
    h('label', { class: 'field' }, h('span', {}, t('chunks.text')), text),
    h('div', { class: 'form-grid' },
      h('label', { class: 'field' }, h('span', {}, t('chunks.keywords')), keywords),
      h('label', { class: 'field' }, h('span', {}, t('chunks.questions')), questions)),
    c.edited && c.original !== c.text ? h('details', { class: 'small' }, h('summary', {}, t('chunks.original')), h('div', { class: 'passage' }, c.original)) : null,
    h('div', { class: 'toolbar' }, h('span', { class: 'spacer' }), save));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const change = {};
    if (text.value.trim() !== c.text) change.text = text.value;
    if (enabled.checked !== c.enabled) change.enabled = enabled.checked;
    const k = splitTerms(keywords.value);
    if (k.join('\n') !== c.keywords.join('\n')) change.keywords = k;
    const q = questions.value.split('\n').map((x) => x.trim()).filter(Boolean);
    if (q.join('\n') !== c.questions.join('\n')) change.questions = q;
    if (!Object.keys(change).length) return;
    save.disabled = true;
    try {
      await api('PATCH', `/api/chunks/${enc(c.id)}`, change);
      toast(t('chunks.saved', { id: c.id }), 'ok');
      reload();
    } catch (err) {
      toast(err.message, 'error');
      save.disabled = false;
    }
  });
  return form;
}

/** The part of `text` from a little before character `at`, at most `n` characters. */
function around(text, at, n = 80) {
  const from = Math.max(0, at - 16);
  return (from > 0 ? '…' : '') + excerpt(text.slice(from), n);
}

function diffLine(before, after) {
  const out = [];
  if (before.text !== after.text) {
    let i = 0;
    while (i < before.text.length && before.text[i] === after.text[i]) i += 1;
    out.push(h('div', {}, h('del', {}, around(before.text, i) || '∅'), ' → ', h('ins', {}, around(after.text, i))));
  }
  if (before.enabled !== after.enabled) out.push(h('div', {}, after.enabled ? t('chunks.enabled') : t('chunks.disabled')));
  if (before.keywords.join() !== after.keywords.join()) out.push(h('div', {}, `${t('chunks.keywords')}: ${after.keywords.join(', ')}`));
  if (before.questions.join() !== after.questions.join()) out.push(h('div', {}, `${t('chunks.questions')}: ${after.questions.join(' | ')}`));
  return out;
}

function history(edits) {
  if (!edits.length) return h('p', { class: 'muted' }, common('log.empty'));
  return table([t('chunks.history.col.when'), t('chunks.history.col.who'), t('chunks.history.col.chunk'), t('chunks.history.col.change')],
    edits.map((e) => h('tr', { dataset: { edit: e.id } },
      h('td', { class: 'small' }, fmtTime(e.at)),
      h('td', {}, e.actor),
      h('td', {}, `#${e.ordinal + 1}`, e.current ? null : h('span', { class: 'badge badge-queued' }, t('chunks.history.stale'))),
      h('td', { class: 'cell-wrap small' }, diffLine(e.before, e.after)))),
    'chunk-history');
}
