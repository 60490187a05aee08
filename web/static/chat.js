// The chat page: pick a knowledge base, ask, watch the answer stream in (POST /api/ask read
// as server-sent events through fetch), open the cited passages, rate answers, and keep
// conversations in the sidebar.
import {
  api, applyI18n, setupLangSwitch, t, h, $, loadMe, logout, toast, dialog, copyText,
  csrfToken, errorOf, toLogin, ApiError, fmtTime, icon,
} from './common.js';
import { renderMarkdown, supportingSentences, plainText } from './markdown.js';

const KB_KEY = 'zhiku.kb';
const HISTORY_TURNS = 6;

const state = {
  me: null,
  convs: [],
  convAvailable: null, // null: not known yet; false: this server keeps no conversations
  convError: null,
  convId: null,
  turns: [], // {question, answer} of this chat, for follow-up questions
  messages: [], // rendered answers (see botMessage)
  controller: null,
  activeChip: null,
};

const els = {
  kb: $('#kb'),
  messages: $('#messages'),
  welcome: $('#welcome'),
  form: $('#ask-form'),
  question: $('#question'),
  send: $('#send'),
  stop: $('#stop'),
  convList: $('#conv-list'),
  sidebar: $('#sidebar'),
  scrim: $('#scrim'),
  panel: $('#source-panel'),
  panelBody: $('#source-body'),
};

applyI18n();
setupLangSwitch($('#lang'));
$('#logout').addEventListener('click', logout);

// ---- start ----

async function start() {
  let me;
  try {
    me = await loadMe();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // on the way to the login page
    els.messages.prepend(h('div', { class: 'note note-error', role: 'alert' }, t('common.failed', { msg: e.message })));
    return;
  }
  state.me = me;
  $('#user-name').textContent = me.user.name;
  $('#admin-link').hidden = me.user.role !== 'admin';
  fillKbs();
  const params = new URLSearchParams(location.search);
  await loadConversations();
  const c = params.get('c');
  if (c && state.convAvailable) await openConversation(c);
  // `?chunk=ID&n=N`: a source link sent outside the browser (WeCom) opens that passage.
  const chunk = params.get('chunk');
  if (chunk) await openSource(null, { chunk, index: params.get('n') || '↗' }, [], null);
  else els.question.focus();
}

function fillKbs() {
  const names = state.me?.knowledge_bases || [];
  const keep = els.kb.value || localStorage.getItem(KB_KEY) || '';
  els.kb.replaceChildren(
    h('option', { value: '' }, t('chat.kb.all')),
    ...names.map((n) => h('option', { value: n }, n)),
  );
  els.kb.value = names.includes(keep) ? keep : '';
  const none = names.length === 0;
  // The notice lives in the welcome area, which an open conversation replaces.
  const notice = $('#no-kb');
  if (notice) notice.hidden = !none;
  els.question.disabled = none;
  els.send.disabled = none;
  els.kb.disabled = none;
}

els.kb.addEventListener('change', () => {
  try {
    localStorage.setItem(KB_KEY, els.kb.value);
  } catch {
    /* not remembered */
  }
});

// ---- conversations ----

async function loadConversations() {
  try {
    const list = await api('GET', '/api/conversations');
    state.convs = Array.isArray(list) ? list : list?.conversations || [];
    state.convAvailable = true;
    state.convError = null;
  } catch (e) {
    if (e instanceof ApiError && e.unavailable) state.convAvailable = false;
    else state.convError = e.message;
  }
  renderConversations();
}

function renderConversations() {
  const list = els.convList;
  if (state.convAvailable === false) {
    list.replaceChildren(h('p', { class: 'note note-muted small', id: 'conv-unavailable' }, t('chat.history.unavailable')));
    return;
  }
  if (state.convError) {
    list.replaceChildren(h('p', { class: 'note note-error small' }, t('chat.history.failed', { msg: state.convError }),
      ' ', h('button', { class: 'link', type: 'button', onclick: loadConversations }, t('common.retry'))));
    return;
  }
  if (!state.convs.length) {
    list.replaceChildren(h('p', { class: 'muted small' }, t('chat.history.empty')));
    return;
  }
  const sorted = [...state.convs].sort((a, b) => String(b.updated_at ?? '').localeCompare(String(a.updated_at ?? ''), undefined, { numeric: true }));
  list.replaceChildren(...sorted.map((c) => {
    const title = c.title || t('chat.untitled');
    return h('div', { class: `conv${String(c.id) === String(state.convId) ? ' active' : ''}`, dataset: { id: c.id } },
      h('button', { class: 'conv-open', type: 'button', title, onclick: () => { openConversation(c.id); closeSidebar(); } },
        h('span', { class: 'conv-title' }, title),
        h('span', { class: 'conv-meta' }, [c.kb, fmtTime(c.updated_at ?? c.created_at)].filter(Boolean).join(' · '))),
      h('button', { class: 'icon-btn conv-act', type: 'button', title: t('chat.rename'), 'aria-label': t('chat.rename'), onclick: () => renameConversation(c) }, icon('edit')),
      h('button', { class: 'icon-btn conv-act', type: 'button', title: t('chat.delete'), 'aria-label': t('chat.delete'), onclick: () => deleteConversation(c) }, icon('trash')));
  }));
}

async function renameConversation(c) {
  const title = await dialog(t('chat.rename.prompt'), { input: c.title || '', ok: t('common.save') });
  if (!title) return;
  try {
    await api('PATCH', `/api/conversations/${encodeURIComponent(c.id)}`, { title });
    c.title = title;
    renderConversations();
  } catch (e) {
    toast(t('chat.error', { msg: e.message }), 'error');
  }
}

async function deleteConversation(c) {
  const ok = await dialog(t('chat.delete.confirm', { title: c.title || t('chat.untitled') }), { ok: t('common.delete'), danger: true });
  if (!ok) return;
  try {
    await api('DELETE', `/api/conversations/${encodeURIComponent(c.id)}`);
    state.convs = state.convs.filter((x) => x.id !== c.id);
    if (String(state.convId) === String(c.id)) newChat();
    renderConversations();
  } catch (e) {
    toast(t('chat.error', { msg: e.message }), 'error');
  }
}

function setUrlConversation(id) {
  const url = new URL(location.href);
  if (id == null) url.searchParams.delete('c');
  else url.searchParams.set('c', id);
  history.replaceState(null, '', url.pathname + url.search);
}

function newChat() {
  stopAnswer();
  state.convId = null;
  state.turns = [];
  state.messages = [];
  els.messages.replaceChildren(els.welcome);
  els.welcome.hidden = false;
  closePanel();
  setUrlConversation(null);
  renderConversations();
  els.question.focus();
}

async function openConversation(id) {
  stopAnswer();
  let messages;
  try {
    messages = await api('GET', `/api/conversations/${encodeURIComponent(id)}/messages`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    toast(t('chat.loadfailed', { msg: e.message }), 'error');
    return;
  }
  if (!Array.isArray(messages)) messages = messages?.messages || [];
  state.convId = id;
  state.turns = [];
  state.messages = [];
  closePanel();
  els.messages.replaceChildren();
  const conv = state.convs.find((c) => String(c.id) === String(id));
  if (conv?.kb && [...els.kb.options].some((o) => o.value === conv.kb)) els.kb.value = conv.kb;
  for (const m of messages) {
    els.messages.append(userBubble(m.question));
    const msg = botMessage();
    Object.assign(msg, {
      text: m.answer || '',
      citations: m.citations || [],
      claims: m.claims || [],
      unsourced: m.unsourced_numbers || [],
      outcome: m.outcome,
      notice: m.notice,
      messageId: m.id,
      rating: m.feedback?.rating ?? null,
      comment: m.feedback?.comment ?? '',
      done: true,
    });
    els.messages.append(msg.el);
    renderBot(msg);
    state.turns.push({ question: m.question, answer: m.answer || '' });
  }
  if (!messages.length) els.messages.append(els.welcome);
  setUrlConversation(id);
  renderConversations();
  scrollToEnd(true);
}

$('#new-chat').addEventListener('click', () => {
  newChat();
  closeSidebar();
});

// ---- asking ----

function userBubble(text) {
  return h('div', { class: 'msg msg-user' }, h('div', { class: 'bubble' }, text));
}

/** One answer on screen and what it was built from. */
function botMessage() {
  const msg = {
    text: '',
    citations: [],
    claims: [], // the citation check: each cited sentence, supported or not
    unsourced: [], // numbers of the answer that no cited passage holds
    outcome: null,
    notice: null,
    messageId: null,
    rating: null,
    comment: '',
    done: false,
    stopped: false,
    error: null,
    sentences: new Map(), // marker number → answer sentences carrying it
  };
  msg.noticeEl = h('div', { class: 'answer-notice', hidden: true });
  msg.answerEl = h('div', { class: 'answer md' });
  msg.statusEl = h('div', { class: 'answer-status', hidden: true });
  msg.checkEl = h('div', { class: 'answer-check note note-warn', hidden: true });
  msg.sourcesEl = h('div', { class: 'answer-sources', hidden: true });
  msg.actionsEl = h('div', { class: 'answer-actions', hidden: true });
  msg.el = h('div', { class: 'msg msg-bot' },
    h('div', { class: 'avatar', 'aria-hidden': 'true' }),
    h('div', { class: 'bot-body' }, msg.noticeEl, msg.answerEl, msg.checkEl, msg.statusEl, msg.sourcesEl, msg.actionsEl));
  msg.el._msg = msg;
  state.messages.push(msg);
  return msg;
}

function citationOf(msg, n) {
  return msg.citations.find((c) => c.index === n);
}

// Letters and digits only: the server's claim sentences and the page's carrier sentences
// are cut by the same rule, but may differ in spaces and punctuation.
const bare = (s) => String(s ?? '').replace(/[^\p{L}\p{N}]+/gu, '');

/** The citation check's verdict on the sentence `sentence` citing `n`, if the server made one. */
function claimOf(msg, n, sentence) {
  const want = bare(sentence);
  if (!want) return null;
  return msg.claims.find((c) => c.cites.includes(n) && (bare(c.sentence) === want
    || bare(c.sentence).endsWith(want) || want.endsWith(bare(c.sentence)))) || null;
}

/** Draw `msg` as it stands (called for every streamed piece and at the end). */
function renderBot(msg) {
  msg.el.dataset.outcome = msg.outcome || (msg.done ? 'unknown' : 'streaming');
  msg.el.classList.toggle('streaming', !msg.done);

  const notice = msg.outcome === 'blocked' && !msg.notice ? t('chat.blocked') : msg.notice;
  msg.noticeEl.hidden = !notice;
  msg.noticeEl.textContent = notice || '';

  msg.sentences = new Map();
  const chip = (n, sentence) => {
    if (msg.done && !citationOf(msg, n)) return null;
    if (!msg.sentences.has(n)) msg.sentences.set(n, []);
    msg.sentences.get(n).push(sentence);
    const cite = citationOf(msg, n);
    const doubt = msg.done && claimOf(msg, n, sentence)?.supported === false;
    return h('button', {
      class: doubt ? 'cite cite-unsupported' : 'cite',
      type: 'button',
      disabled: !cite,
      title: cite ? (doubt ? `${cite.title} · ${t('chat.unsupported')}` : cite.title) : null,
      'aria-description': doubt ? t('chat.unsupported') : null,
      dataset: { n },
      onclick: (e) => cite && openSource(msg, cite, [sentence], e.currentTarget),
    }, String(n));
  };
  if (!msg.text && !msg.done) {
    msg.answerEl.replaceChildren(h('div', { class: 'thinking' }, h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), t('chat.thinking')));
  } else if (msg.outcome === 'not_found') {
    msg.answerEl.replaceChildren(h('p', { class: 'not-found' }, icon('search'), plainText(msg.text) || t('chat.notfound')));
  } else {
    msg.answerEl.replaceChildren(renderMarkdown(msg.text, { chip }));
    if (!msg.done) msg.answerEl.append(h('span', { class: 'caret', 'aria-hidden': 'true' }));
  }

  const unsourced = msg.done && msg.outcome !== 'not_found' ? msg.unsourced : [];
  msg.checkEl.hidden = !unsourced.length;
  msg.checkEl.textContent = unsourced.length ? t('chat.unsourced', { nums: unsourced.join('、') }) : '';

  const status = msg.error ? t('chat.error', { msg: msg.error }) : msg.stopped ? t('chat.stopped') : '';
  msg.statusEl.hidden = !status;
  msg.statusEl.textContent = status;
  msg.statusEl.className = `answer-status${msg.error ? ' note note-error' : ' muted'}`;

  // The sources under the answer, in marker order.
  const cited = msg.done ? msg.citations : [];
  msg.sourcesEl.hidden = !cited.length;
  if (cited.length) {
    msg.sourcesEl.replaceChildren(
      h('div', { class: 'sources-title' }, t('chat.sources')),
      h('ol', { class: 'sources-list' }, cited.map((c) => h('li', {},
        h('button', {
          class: 'source-link',
          type: 'button',
          onclick: (e) => openSource(msg, c, msg.sentences.get(c.index) || [], e.currentTarget),
        },
        h('span', { class: 'cite cite-static' }, String(c.index)),
        h('span', { class: 'source-name' }, c.title || fileName(c.document)),
        placeLabel(c) ? h('span', { class: 'muted' }, placeLabel(c)) : null)))));
  }

  msg.actionsEl.hidden = !msg.done || (!msg.text && !msg.messageId);
  if (msg.done) msg.actionsEl.replaceChildren(...actions(msg));
}

function actions(msg) {
  const out = [];
  if (msg.text) {
    const copy = h('button', { class: 'icon-btn', type: 'button', title: t('chat.copy'), 'aria-label': t('chat.copy') }, icon('copy'));
    copy.addEventListener('click', async () => {
      if (await copyText(plainText(msg.text))) toast(t('chat.copied'), 'ok');
    });
    out.push(copy);
  }
  if (msg.messageId != null) {
    const thumb = (rating, name, label) => h('button', {
      class: `icon-btn thumb${msg.rating === rating ? ' on' : ''}`,
      type: 'button',
      title: label,
      'aria-label': label,
      'aria-pressed': msg.rating === rating ? 'true' : 'false',
      dataset: { rating },
      onclick: () => rate(msg, rating),
    }, icon(name));
    out.push(thumb(1, 'up', t('feedback.up')), thumb(-1, 'down', t('feedback.down')));
    if (msg.commentOpen) {
      const box = h('textarea', { class: 'input feedback-comment', rows: 2, maxlength: 2000, placeholder: t('feedback.comment') });
      box.value = msg.comment || '';
      const send = h('button', { class: 'btn btn-small', type: 'button' }, t('feedback.send'));
      send.addEventListener('click', () => rate(msg, msg.rating, box.value.trim()));
      out.push(h('div', { class: 'feedback-form' }, box, send));
      queueMicrotask(() => box.focus());
    }
  }
  return out;
}

/** Record a rating (at once), then offer a comment; a comment is sent with the rating again. */
async function rate(msg, rating, comment) {
  const body = { rating };
  if (comment) body.comment = comment;
  try {
    await api('POST', `/api/messages/${encodeURIComponent(msg.messageId)}/feedback`, body);
    msg.rating = rating;
    if (comment !== undefined) {
      msg.comment = comment;
      msg.commentOpen = false;
      toast(t('feedback.thanks'), 'ok');
    } else {
      msg.commentOpen = true;
    }
  } catch (e) {
    if (e instanceof ApiError && e.unavailable) toast(t('feedback.unavailable'), 'info');
    else toast(t('chat.error', { msg: e.message }), 'error');
  }
  renderBot(msg);
}

let pending = false;
function scheduleRender(msg) {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    renderBot(msg);
    scrollToEnd();
  });
}

function scrollToEnd(force) {
  const m = els.messages;
  const near = m.scrollHeight - m.scrollTop - m.clientHeight < 160;
  if (force || near) m.scrollTop = m.scrollHeight;
}

function setBusy(busy) {
  els.send.hidden = busy;
  els.stop.hidden = !busy;
  els.question.readOnly = busy;
}

function stopAnswer() {
  if (state.controller) state.controller.abort();
}

els.stop.addEventListener('click', stopAnswer);

/** Parse a server-sent event stream, calling `on(event, data)` for each event. */
async function readEvents(res, on) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf = (buf + value).replace(/\r\n/g, '\n');
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? '' : line.slice(colon + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (field === 'event') event = v;
        else if (field === 'data') data.push(v);
      }
      if (data.length) on(event, data.join('\n'));
    }
  }
}

async function ensureConversation(question, kb) {
  if (state.convId != null || !state.convAvailable) return;
  try {
    const title = question.length > 40 ? `${question.slice(0, 40)}…` : question;
    const body = { title };
    if (kb) body.kb = kb;
    const c = await api('POST', '/api/conversations', body);
    if (c && c.id != null) {
      state.convId = c.id;
      state.convs.push({ title, kb: kb || null, created_at: Date.now() / 1000, updated_at: Date.now() / 1000, ...c });
      setUrlConversation(c.id);
      renderConversations();
    }
  } catch (e) {
    if (e instanceof ApiError && e.unavailable) {
      state.convAvailable = false;
      renderConversations();
    } else if (e instanceof ApiError && e.status === 401) {
      throw e;
    } else {
      toast(t('chat.history.failed', { msg: e.message }), 'error');
    }
  }
}

async function ask(question) {
  if (state.controller) return;
  const kb = els.kb.value || undefined;
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  els.welcome.hidden = true;
  els.question.value = '';
  autosize();
  els.messages.append(userBubble(question));
  const msg = botMessage();
  els.messages.append(msg.el);
  renderBot(msg);
  scrollToEnd(true);
  const history = state.turns.slice(-HISTORY_TURNS);
  try {
    await ensureConversation(question, kb);
    const body = { question, history, stream: true };
    if (kb) body.kb = kb;
    if (state.convId != null) body.conversation_id = state.convId;
    const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
    if (csrfToken()) headers['X-CSRF-Token'] = csrfToken();
    const res = await fetch('/api/ask', { method: 'POST', headers, body: JSON.stringify(body), signal: controller.signal, credentials: 'same-origin' });
    if (res.status === 401) {
      toLogin('expired');
      return;
    }
    if (!res.ok) throw await errorOf(res, '/api/ask');
    await readEvents(res, (event, raw) => {
      let data;
      try {
        data = JSON.parse(raw);
      } catch {
        return;
      }
      if (event === 'delta') {
        msg.text += data.text || '';
        scheduleRender(msg);
      } else if (event === 'replace') {
        msg.text = data.text || '';
        scheduleRender(msg);
      } else if (event === 'done') {
        Object.assign(msg, {
          text: data.answer ?? msg.text,
          citations: data.citations || [],
          claims: data.claims || [],
          unsourced: data.unsourced_numbers || [],
          outcome: data.outcome,
          notice: data.notice || null,
          messageId: data.message_id ?? null,
        });
        if (data.conversation_id != null && state.convId == null) {
          state.convId = data.conversation_id;
          setUrlConversation(state.convId);
        }
      } else if (event === 'error') {
        msg.error = data.error?.message || raw;
      }
    });
    if (msg.outcome == null && !msg.error) msg.error = t('common.network', { msg: 'stream ended early' });
  } catch (e) {
    if (e.name === 'AbortError') msg.stopped = true;
    else msg.error = e.message;
  } finally {
    msg.done = true;
    state.controller = null;
    setBusy(false);
    renderBot(msg);
    scrollToEnd();
    if (msg.outcome && !msg.error) {
      state.turns.push({ question, answer: msg.text });
      if (state.convAvailable) {
        const c = state.convs.find((x) => String(x.id) === String(state.convId));
        if (c) c.updated_at = Date.now() / 1000;
        renderConversations();
      }
    }
    if (!matchMedia('(max-width: 720px)').matches) els.question.focus();
  }
}

els.form.addEventListener('submit', (e) => {
  e.preventDefault();
  const q = els.question.value.trim();
  if (q) ask(q);
});

els.question.addEventListener('keydown', (e) => {
  // Enter sends; Shift+Enter is a new line; Enter that confirms an IME composition is not.
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    els.form.requestSubmit();
  }
});

function autosize() {
  const q = els.question;
  q.style.height = 'auto';
  q.style.height = `${Math.min(q.scrollHeight, 200)}px`;
}
els.question.addEventListener('input', autosize);

// ---- the source panel ----

async function openSource(msg, cite, answerSentences, chipEl) {
  if (state.activeChip) state.activeChip.classList.remove('active');
  state.activeChip = chipEl || null;
  if (chipEl) chipEl.classList.add('active');
  els.panel.hidden = false;
  document.body.classList.add('panel-open');
  els.panelBody.replaceChildren(h('p', { class: 'muted' }, t('source.loading')));
  let chunk = null;
  let fallback = false;
  try {
    chunk = await api('GET', `/api/chunks/${encodeURIComponent(cite.chunk)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    fallback = true;
  }
  const text = chunk?.text ?? cite.text ?? '';
  const title = chunk?.title || cite.title || cite.document;
  const page = chunk?.page ?? cite.page;
  const path = Array.isArray(chunk?.heading_path) ? chunk.heading_path.filter(Boolean).join(' › ') : chunk?.heading_path || '';

  const { parts, chosen } = supportingSentences(text, answerSentences.join(' '));
  const passage = h('blockquote', { class: 'passage' });
  let firstMark = null;
  parts.forEach((p, k) => {
    if (chosen.has(k)) {
      const mark = h('mark', {}, p);
      firstMark ??= mark;
      passage.append(mark);
    } else {
      passage.append(document.createTextNode(p));
    }
  });
  const download = cite.document_id != null
    ? h('a', { class: 'btn', id: 'source-download', href: `/api/documents/${encodeURIComponent(cite.document_id)}/file`, download: '' }, icon('download'), t('source.download'))
    : null;
  els.panelBody.replaceChildren(...[
    h('div', { class: 'source-meta' },
      h('span', { class: 'cite cite-static' }, String(cite.index)),
      h('div', {},
        h('div', { class: 'source-doc', id: 'source-doc-title' }, title),
        h('div', { class: 'muted small' }, [placeLabel({ ...cite, page }), fileName(cite.document) !== title ? fileName(cite.document) : null].filter(Boolean).join(' · ')))),
    path ? h('div', { class: 'source-path small' }, h('span', { class: 'muted' }, `${t('source.path')}：`), path) : null,
    fallback ? h('p', { class: 'note note-muted small', id: 'source-fallback' }, t('source.fallback')) : null,
    passage,
    download,
  ].filter(Boolean));
  if (firstMark) firstMark.scrollIntoView({ block: 'center' });
  $('#source-close').focus({ preventScroll: true });
}

/** The file name of a document's source (CLI ingests record the whole server path). */
function fileName(source) {
  return String(source || '').split(/[\\/]/).pop();
}

function closePanel() {
  els.panel.hidden = true;
  document.body.classList.remove('panel-open');
  if (state.activeChip) state.activeChip.classList.remove('active');
  state.activeChip = null;
}

$('#source-close').addEventListener('click', closePanel);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && !els.panel.hidden && !document.querySelector('dialog[open]')) closePanel();
});

// ---- narrow screens: the sidebar slides over ----

function closeSidebar() {
  document.body.classList.remove('sidebar-open');
  els.scrim.hidden = true;
  $('#toggle-sidebar').setAttribute('aria-expanded', 'false');
}
$('#toggle-sidebar').addEventListener('click', () => {
  const open = !document.body.classList.contains('sidebar-open');
  document.body.classList.toggle('sidebar-open', open);
  els.scrim.hidden = !open;
  $('#toggle-sidebar').setAttribute('aria-expanded', String(open));
});
els.scrim.addEventListener('click', closeSidebar);

window.addEventListener('langchange', () => {
  if (state.me) fillKbs();
  renderConversations();
  for (const m of state.messages) if (m.done) renderBot(m);
});

start();

// Where a citation is, the way its document counts (the API's `place`: page, slide, or
// sheet and rows), in the page's language; null for a document without pages.
function placeLabel(c) {
  const p = c.place;
  if (p?.kind === 'slide') return t('chat.slide', { n: p.slide });
  if (p?.kind === 'sheet') {
    return p.rows ? t('chat.sheet.rows', { sheet: p.sheet, a: p.rows[0], b: p.rows[1] }) : t('chat.sheet', { sheet: p.sheet });
  }
  return c.page > 0 ? t('chat.page', { n: c.page }) : null;
}
