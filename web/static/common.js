// Shared by the chat, admin and login pages: translations, the API client (CSRF header on
// writes, 401 → login page, JSON errors → ApiError), DOM helpers and small widgets.
// No dependencies; everything the pages load comes from zhiku itself.

const LANG_KEY = 'zhiku.lang';

const STRINGS = {
  zh: {
    'app.name': '知库',
    'app.tagline': '企业知识库助手',
    'lang.switch': 'English',
    'nav.chat': '问答',
    'nav.admin': '管理',
    'nav.logout': '退出登录',
    'nav.menu': '菜单',
    'login.title': '登录知库',
    'login.name': '用户名',
    'login.password': '密码',
    'login.submit': '登录',
    'login.busy': '正在登录…',
    'login.missing': '请输入用户名和密码。',
    'login.wrong': '用户名或密码错误。',
    'login.limited': '尝试次数过多，请稍后再试。',
    'login.network': '无法连接服务器，请检查网络后重试。',
    'login.expired': '登录已过期，请重新登录。',
    'login.hint': '账号由管理员创建；忘记密码请联系管理员。',
    'login.or': '或',
    'login.sso': '使用单点登录',
    'chat.new': '新对话',
    'chat.history': '历史对话',
    'chat.history.empty': '还没有对话。',
    'chat.history.unavailable': '此服务器暂不支持保存对话历史。',
    'chat.history.failed': '对话历史加载失败：{msg}',
    'chat.kb': '知识库',
    'chat.kb.all': '全部知识库',
    'chat.kb.none': '你还没有可阅读的知识库，请联系管理员为你的用户组授权。',
    'chat.placeholder': '输入你的问题…',
    'chat.hint': 'Enter 发送，Shift+Enter 换行',
    'chat.send': '发送',
    'chat.stop': '停止',
    'chat.stopped': '已停止生成。',
    'chat.thinking': '正在检索资料…',
    'chat.welcome.title': '有什么可以帮你？',
    'chat.welcome.text': '答案来自公司文档，每一句都附有可点击的出处。',
    'chat.notfound': '知识库中没有找到相关内容。',
    'chat.blocked': '该回答已被内容过滤拦截。',
    'chat.error': '出错了：{msg}',
    'chat.sources': '参考来源',
    'chat.unsupported': '引用的段落中找不到这句话的依据，请核对原文',
    'chat.unsourced': '以下数字在引用的段落中找不到，请核对原文：{nums}',
    'chat.page': '第 {n} 页',
    'chat.slide': '第 {n} 张幻灯片',
    'chat.sheet': '工作表 {sheet}',
    'chat.sheet.rows': '工作表 {sheet}，第 {a}–{b} 行',
    'chat.copy': '复制',
    'chat.copied': '已复制',
    'chat.rename': '重命名',
    'chat.delete': '删除',
    'chat.delete.confirm': '删除对话“{title}”？此操作无法撤销。',
    'chat.untitled': '未命名对话',
    'chat.rename.prompt': '新的对话名称',
    'chat.loadfailed': '无法打开此对话：{msg}',
    'feedback.up': '有帮助',
    'feedback.down': '没帮助',
    'feedback.comment': '补充说明（可选）',
    'feedback.send': '提交反馈',
    'feedback.thanks': '感谢反馈！',
    'feedback.unavailable': '此服务器暂不支持反馈。',
    'source.title': '来源',
    'source.close': '关闭',
    'source.download': '下载原文件',
    'source.loading': '正在加载原文…',
    'source.fallback': '原文暂不可用，显示的是回答时引用的段落。',
    'source.path': '章节',
    'common.cancel': '取消',
    'common.ok': '确定',
    'common.save': '保存',
    'common.delete': '删除',
    'common.confirm': '请确认',
    'common.loading': '加载中…',
    'common.retry': '重试',
    'common.unavailable': '此功能需要更新版本的服务器（接口 {path} 暂不可用）。',
    'common.failed': '加载失败：{msg}',
    'common.network': '无法连接服务器：{msg}',
    'admin.title': '管理后台',
    'admin.tab.kbs': '知识库',
    'admin.tab.users': '用户',
    'admin.tab.groups': '用户组',
    'admin.tab.tokens': 'API 令牌',
    'admin.tab.feedback': '反馈',
    'admin.tab.queries': '查询日志',
    'admin.tab.audit': '审计日志',
    'admin.tab.blocked': '拦截记录',
    'admin.tab.dictionary': '用户词典',
    'kb.name': '名称',
    'kb.documents': '文档',
    'kb.chunks': '片段',
    'kb.groups': '可阅读的用户组',
    'kb.create': '新建知识库',
    'kb.create.placeholder': '知识库名称，如 hr',
    'kb.created': '已创建知识库 {name}',
    'kb.rename': '重命名',
    'kb.rename.prompt': '知识库的新名称',
    'kb.delete': '删除',
    'kb.delete.confirm': '删除知识库“{name}”及其全部 {n} 篇文档？此操作无法撤销。',
    'kb.deleted': '已删除知识库 {name}',
    'kb.grant': '授权',
    'kb.grant.pick': '选择用户组…',
    'kb.revoke': '取消 {group} 的访问权限',
    'kb.empty': '还没有知识库。先新建一个，然后上传文档。',
    'kb.open': '管理',
    'kb.back': '返回知识库列表',
    'upload.title': '上传文档',
    'upload.files': '选择文件',
    'upload.folder': '选择文件夹',
    'upload.hint': '支持 PDF、Word、Excel、PPT、TXT、Markdown、HTML 和 ZIP 压缩包；也可以把文件拖到这里。',
    'upload.sending': '正在上传 {n} 个文件… {pct}%',
    'upload.failed': '上传失败：{msg}',
    'upload.job': '任务 #{id}',
    'upload.counts': '完成 {done} · 失败 {failed} · 排队 {queued}',
    'upload.finished': '处理完成：成功 {done} 个，失败 {failed} 个。',
    'status.queued': '排队中',
    'status.extracting': '解析中',
    'status.embedding': '向量化',
    'status.done': '完成',
    'status.failed': '失败',
    'status.accepted': '已接收',
    'status.rejected': '已拒绝',
    'status.skipped': '已跳过',
    'docs.title': '文档',
    'docs.search': '搜索文档标题或文件名',
    'docs.total': '共 {n} 篇',
    'docs.empty': '没有文档。',
    'docs.title.col': '标题',
    'docs.format': '格式',
    'docs.pages': '页数',
    'docs.read': '页面读取',
    'docs.read.text': '文本 {n} 页',
    'docs.read.ocr': 'OCR {n} 页',
    'docs.read.failed': '失败 {n} 页：第 {list} 页',
    'docs.read.list': '第 {list} 页',
    'docs.read.unknown': '未记录',
    'docs.size': '大小',
    'docs.added': '添加时间',
    'docs.warnings': '警告',
    'docs.download': '下载',
    'docs.reindex': '重建索引',
    'docs.reindexed': '已开始重建索引：{title}',
    'docs.delete.confirm': '删除文档“{title}”？',
    'docs.deleted': '已删除 {title}',
    'docs.prev': '上一页',
    'docs.next': '下一页',
    'users.name': '用户名',
    'users.role': '角色',
    'users.groups': '用户组',
    'users.created': '创建时间',
    'users.add': '添加用户',
    'users.password': '初始密码',
    'users.groups.placeholder': '用户组，用逗号分隔',
    'users.role.member': '成员',
    'users.role.admin': '管理员',
    'users.edit': '编辑',
    'users.newpassword': '新密码（留空则不修改）',
    'users.wecom': '企业微信账号',
    'users.wecom.placeholder': '企业微信 UserID',
    'users.wecom.none': '未关联',
    'users.delete.confirm': '删除用户“{name}”及其登录会话和 API 令牌？',
    'users.added': '已添加用户 {name}',
    'users.updated': '已更新用户 {name}',
    'users.deleted': '已删除用户 {name}',
    'groups.name': '用户组',
    'groups.members': '成员数',
    'groups.kbs': '可阅读的知识库',
    'groups.add': '添加用户组',
    'groups.delete.confirm': '删除用户组“{name}”？成员保留，授权随之取消。',
    'groups.added': '已添加用户组 {name}',
    'groups.deleted': '已删除用户组 {name}',
    'tokens.name': '用途',
    'tokens.user': '所属用户',
    'tokens.prefix': '前缀',
    'tokens.created': '创建时间',
    'tokens.lastused': '最近使用',
    'tokens.never': '从未使用',
    'status.revoked': '已撤销',
    'tokens.active': '有效',
    'tokens.create': '创建令牌',
    'tokens.name.placeholder': '用途，如 “报表脚本”',
    'tokens.user.placeholder': '所属用户（默认自己）',
    'tokens.once': '请立即复制此令牌，它只显示这一次：',
    'tokens.copy': '复制',
    'tokens.revoke': '撤销',
    'tokens.revoke.confirm': '撤销令牌“{name}”？使用它的程序将无法再访问。',
    'tokens.status': '状态',
    'log.empty': '暂无记录。',
    'dict.title': '用户词典',
    'dict.hint': '每行一个词，可选词频和词性，如 “知库科技 100 nz”。用于中文分词，避免把公司名、产品名拆开。',
    'dict.saved': '词典已保存。',
    'actions': '操作',
  },
  en: {
    'app.name': 'Zhiku',
    'app.tagline': 'Company knowledge assistant',
    'lang.switch': '中文',
    'nav.chat': 'Chat',
    'nav.admin': 'Admin',
    'nav.logout': 'Log out',
    'nav.menu': 'Menu',
    'login.title': 'Log in to Zhiku',
    'login.name': 'User name',
    'login.password': 'Password',
    'login.submit': 'Log in',
    'login.busy': 'Logging in…',
    'login.missing': 'Enter your user name and password.',
    'login.wrong': 'Wrong user name or password.',
    'login.limited': 'Too many attempts; try again in a moment.',
    'login.network': 'Cannot reach the server; check the network and try again.',
    'login.expired': 'Your session has expired; log in again.',
    'login.hint': 'Accounts are created by an admin; ask one if you forgot your password.',
    'login.or': 'or',
    'login.sso': 'Sign in with SSO',
    'chat.new': 'New chat',
    'chat.history': 'Chats',
    'chat.history.empty': 'No chats yet.',
    'chat.history.unavailable': 'This server does not keep chat history yet.',
    'chat.history.failed': 'Cannot load chats: {msg}',
    'chat.kb': 'Knowledge base',
    'chat.kb.all': 'All knowledge bases',
    'chat.kb.none': 'You may not read any knowledge base yet; ask an admin to grant your group one.',
    'chat.placeholder': 'Ask a question…',
    'chat.hint': 'Enter sends, Shift+Enter adds a line',
    'chat.send': 'Send',
    'chat.stop': 'Stop',
    'chat.stopped': 'Stopped.',
    'chat.thinking': 'Searching the documents…',
    'chat.welcome.title': 'How can I help?',
    'chat.welcome.text': 'Answers come from company documents, every sentence with a clickable source.',
    'chat.notfound': 'Nothing relevant was found in the knowledge base.',
    'chat.blocked': 'This answer was blocked by the content filter.',
    'chat.error': 'Something went wrong: {msg}',
    'chat.sources': 'Sources',
    'chat.unsupported': 'The cited passage does not back this sentence: check the source',
    'chat.unsourced': 'These numbers are in no cited passage, check the sources: {nums}',
    'chat.page': 'page {n}',
    'chat.slide': 'slide {n}',
    'chat.sheet': 'Sheet {sheet}',
    'chat.sheet.rows': 'Sheet {sheet}, rows {a}–{b}',
    'chat.copy': 'Copy',
    'chat.copied': 'Copied',
    'chat.rename': 'Rename',
    'chat.delete': 'Delete',
    'chat.delete.confirm': 'Delete the chat “{title}”? This cannot be undone.',
    'chat.untitled': 'Untitled chat',
    'chat.rename.prompt': 'New chat title',
    'chat.loadfailed': 'Cannot open this chat: {msg}',
    'feedback.up': 'Helpful',
    'feedback.down': 'Not helpful',
    'feedback.comment': 'Anything to add? (optional)',
    'feedback.send': 'Send feedback',
    'feedback.thanks': 'Thanks for the feedback!',
    'feedback.unavailable': 'This server does not take feedback yet.',
    'source.title': 'Source',
    'source.close': 'Close',
    'source.download': 'Download the original file',
    'source.loading': 'Loading the passage…',
    'source.fallback': 'The stored passage is not available; this is the text quoted with the answer.',
    'source.path': 'Section',
    'common.cancel': 'Cancel',
    'common.ok': 'OK',
    'common.save': 'Save',
    'common.delete': 'Delete',
    'common.confirm': 'Please confirm',
    'common.loading': 'Loading…',
    'common.retry': 'Retry',
    'common.unavailable': 'This needs a newer server (the endpoint {path} is not available yet).',
    'common.failed': 'Cannot load: {msg}',
    'common.network': 'Cannot reach the server: {msg}',
    'admin.title': 'Administration',
    'admin.tab.kbs': 'Knowledge bases',
    'admin.tab.users': 'Users',
    'admin.tab.groups': 'Groups',
    'admin.tab.tokens': 'API tokens',
    'admin.tab.feedback': 'Feedback',
    'admin.tab.queries': 'Query log',
    'admin.tab.audit': 'Audit log',
    'admin.tab.blocked': 'Blocked answers',
    'admin.tab.dictionary': 'Dictionary',
    'kb.name': 'Name',
    'kb.documents': 'Documents',
    'kb.chunks': 'Chunks',
    'kb.groups': 'Groups that may read it',
    'kb.create': 'New knowledge base',
    'kb.create.placeholder': 'Knowledge base name, e.g. hr',
    'kb.created': 'Created knowledge base {name}',
    'kb.rename': 'Rename',
    'kb.rename.prompt': 'New name of the knowledge base',
    'kb.delete': 'Delete',
    'kb.delete.confirm': 'Delete the knowledge base “{name}” with all {n} documents? This cannot be undone.',
    'kb.deleted': 'Deleted knowledge base {name}',
    'kb.grant': 'Grant',
    'kb.grant.pick': 'Choose a group…',
    'kb.revoke': 'Revoke {group}',
    'kb.empty': 'No knowledge bases yet. Create one, then upload documents.',
    'kb.open': 'Manage',
    'kb.back': 'Back to the knowledge bases',
    'upload.title': 'Upload documents',
    'upload.files': 'Choose files',
    'upload.folder': 'Choose a folder',
    'upload.hint': 'PDF, Word, Excel, PowerPoint, TXT, Markdown, HTML and ZIP archives; you can also drop files here.',
    'upload.sending': 'Uploading {n} files… {pct}%',
    'upload.failed': 'Upload failed: {msg}',
    'upload.job': 'Job #{id}',
    'upload.counts': '{done} done · {failed} failed · {queued} queued',
    'upload.finished': 'Finished: {done} done, {failed} failed.',
    'status.queued': 'queued',
    'status.extracting': 'extracting',
    'status.embedding': 'embedding',
    'status.done': 'done',
    'status.failed': 'failed',
    'status.accepted': 'accepted',
    'status.rejected': 'rejected',
    'status.skipped': 'skipped',
    'docs.title': 'Documents',
    'docs.search': 'Search titles and file names',
    'docs.total': '{n} in all',
    'docs.empty': 'No documents.',
    'docs.title.col': 'Title',
    'docs.format': 'Format',
    'docs.pages': 'Pages',
    'docs.read': 'Pages read',
    'docs.read.text': '{n} text',
    'docs.read.ocr': '{n} by OCR',
    'docs.read.failed': '{n} failed: page {list}',
    'docs.read.list': 'pages {list}',
    'docs.read.unknown': 'not recorded',
    'docs.size': 'Size',
    'docs.added': 'Added',
    'docs.warnings': 'Warnings',
    'docs.download': 'Download',
    'docs.reindex': 'Re-index',
    'docs.reindexed': 'Re-indexing {title}',
    'docs.delete.confirm': 'Delete the document “{title}”?',
    'docs.deleted': 'Deleted {title}',
    'docs.prev': 'Previous',
    'docs.next': 'Next',
    'users.name': 'Name',
    'users.role': 'Role',
    'users.groups': 'Groups',
    'users.created': 'Created',
    'users.add': 'Add user',
    'users.password': 'Initial password',
    'users.groups.placeholder': 'Groups, comma-separated',
    'users.role.member': 'member',
    'users.role.admin': 'admin',
    'users.edit': 'Edit',
    'users.newpassword': 'New password (blank: unchanged)',
    'users.wecom': 'WeCom userid',
    'users.wecom.placeholder': 'WeCom UserID',
    'users.wecom.none': 'not linked',
    'users.delete.confirm': 'Delete the user “{name}” with their sessions and API tokens?',
    'users.added': 'Added user {name}',
    'users.updated': 'Updated user {name}',
    'users.deleted': 'Deleted user {name}',
    'groups.name': 'Group',
    'groups.members': 'Members',
    'groups.kbs': 'Knowledge bases it may read',
    'groups.add': 'Add group',
    'groups.delete.confirm': 'Delete the group “{name}”? Its members stay; its grants go.',
    'groups.added': 'Added group {name}',
    'groups.deleted': 'Deleted group {name}',
    'tokens.name': 'Purpose',
    'tokens.user': 'User',
    'tokens.prefix': 'Prefix',
    'tokens.created': 'Created',
    'tokens.lastused': 'Last used',
    'tokens.never': 'never',
    'status.revoked': 'revoked',
    'tokens.active': 'active',
    'tokens.create': 'Create token',
    'tokens.name.placeholder': 'Purpose, e.g. “report script”',
    'tokens.user.placeholder': 'User (default: you)',
    'tokens.once': 'Copy this token now; it is shown only once:',
    'tokens.copy': 'Copy',
    'tokens.revoke': 'Revoke',
    'tokens.revoke.confirm': 'Revoke the token “{name}”? Programs using it lose access.',
    'tokens.status': 'Status',
    'log.empty': 'Nothing recorded yet.',
    'dict.title': 'User dictionary',
    'dict.hint': 'One word per line, optionally with a frequency and a part of speech, e.g. “知库科技 100 nz”. Chinese word segmentation keeps these words whole (company and product names).',
    'dict.saved': 'Dictionary saved.',
    'actions': 'Actions',
  },
};

export function lang() {
  try {
    return localStorage.getItem(LANG_KEY) === 'en' ? 'en' : 'zh';
  } catch {
    return 'zh';
  }
}

/** The UI string `key` in the current language, with `{name}` placeholders filled. */
export function t(key, vars) {
  const s = STRINGS[lang()][key] ?? STRINGS.zh[key] ?? key;
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

/** Fill the static text of `root`: data-i18n (text), data-i18n-placeholder, data-i18n-title. */
export function applyI18n(root = document) {
  document.documentElement.lang = lang() === 'en' ? 'en' : 'zh-CN';
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll('[data-i18n-title]')) {
    el.title = t(el.dataset.i18nTitle);
    el.setAttribute('aria-label', el.title);
  }
}

/** Wire the language button: switches, remembers the choice, tells the page. */
export function setupLangSwitch(button) {
  button.addEventListener('click', () => {
    const next = lang() === 'en' ? 'zh' : 'en';
    try {
      localStorage.setItem(LANG_KEY, next);
    } catch {
      /* private mode: the switch lasts for this page */
    }
    applyI18n();
    window.dispatchEvent(new Event('langchange'));
  });
}

// ---- API ----

let csrf = null;

export function setCsrf(token) {
  csrf = token || null;
}

export function csrfToken() {
  return csrf;
}

/** A failed API call: HTTP status, the server's message and code. */
export class ApiError extends Error {
  constructor(status, message, code, path) {
    super(message);
    this.status = status;
    this.code = code;
    this.path = path;
  }
  /** The endpoint does not exist on this server (an older build): 404/405/501 from the router. */
  get unavailable() {
    return this.status === 405 || this.status === 501 || (this.status === 404 && /no such page or endpoint/.test(this.message));
  }
}

export function toLogin(reason) {
  const next = location.pathname + location.search;
  const q = new URLSearchParams();
  if (next !== '/' && next !== '/login') q.set('next', next);
  if (reason) q.set('reason', reason);
  const qs = q.toString();
  location.assign('/login' + (qs ? '?' + qs : ''));
}

/** The error body's message, or the status text. */
export async function errorOf(res, path) {
  let message = res.statusText || `HTTP ${res.status}`;
  let code;
  try {
    const j = await res.json();
    if (j && j.error) {
      message = j.error.message || message;
      code = j.error.code;
    }
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, message, code, path);
}

/**
 * Call the API. `body`: an object (JSON), a string (text/plain) or FormData. A 401 sends the
 * browser to the login page (unless `opts.noRedirect`); other failures throw ApiError.
 */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (typeof body === 'string') {
    headers['Content-Type'] = 'text/plain; charset=utf-8';
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', signal: opts.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, t('common.network', { msg: e.message }), 'network', path);
  }
  if (res.status === 401 && !opts.noRedirect) {
    // A session that ended says so on the login page; a first visit just shows the form.
    toLogin(csrf ? 'expired' : undefined);
    throw new ApiError(401, t('login.expired'), 'unauthorized', path);
  }
  if (!res.ok) throw await errorOf(res, path);
  if (res.status === 204) return null;
  const text = await res.text();
  const type = res.headers.get('content-type') || '';
  if (type.includes('json') && text) return JSON.parse(text);
  return text || null;
}

/** Who is logged in; remembers the CSRF token for writes. A 401 goes to the login page. */
export async function loadMe() {
  const me = await api('GET', '/api/me');
  setCsrf(me.csrf);
  return me;
}

export async function logout() {
  // A single sign-on session also logs out at the identity provider, which sends the
  // browser back to the login page.
  let next = '/login';
  try {
    const r = await api('POST', '/api/logout', undefined, { noRedirect: true });
    if (r && r.end_session_url) next = r.end_session_url;
  } finally {
    setCsrf(null);
    location.assign(next);
  }
}

// ---- DOM ----

/** Create an element: attributes (on* = listeners, class, text, dataset) and children. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

let toastBox;
/** A short message at the bottom of the screen; kind: 'ok' | 'error' | 'info'. */
export function toast(message, kind = 'info') {
  if (!toastBox) {
    toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(toastBox);
  }
  const el = h('div', { class: `toast toast-${kind}` }, message);
  toastBox.append(el);
  setTimeout(() => el.classList.add('leaving'), kind === 'error' ? 6000 : 3000);
  setTimeout(() => el.remove(), kind === 'error' ? 6400 : 3400);
}

/** A modal dialog: resolves to true (OK) or false. `input`: ask for a text (resolves to it or null). */
export function dialog(message, { ok, danger = false, input } = {}) {
  return new Promise((resolve) => {
    const field = input !== undefined ? h('input', { class: 'input', type: 'text', value: input }) : null;
    const okBtn = h('button', { class: danger ? 'btn btn-danger' : 'btn btn-primary', type: 'submit' }, ok || t('common.ok'));
    const cancel = h('button', { class: 'btn', type: 'button' }, t('common.cancel'));
    const form = h('form', { method: 'dialog', class: 'dialog-body' },
      h('h2', { class: 'dialog-title' }, t('common.confirm')),
      h('p', {}, message),
      field,
      h('div', { class: 'dialog-actions' }, cancel, okBtn));
    const dlg = h('dialog', { class: 'dialog' }, form);
    let result = false;
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      result = field ? field.value.trim() || null : true;
      dlg.close();
    });
    cancel.addEventListener('click', () => {
      result = field ? null : false;
      dlg.close();
    });
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(field && result === false ? null : result);
    });
    document.body.append(dlg);
    dlg.showModal();
    if (field) {
      field.focus();
      field.select();
    } else {
      okBtn.focus();
    }
  });
}

/** Copy text to the clipboard (with a fallback for plain-http pages where the API is off). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h('textarea', { class: 'offscreen', readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand('copy');
    ta.remove();
    return ok;
  }
}

/** A time as the user's locale shows it: unix seconds or milliseconds, or an ISO string. */
export function fmtTime(v) {
  if (v == null || v === '') return '';
  let d;
  if (typeof v === 'number') d = new Date(v < 1e12 ? v * 1000 : v);
  else d = new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toLocaleString(lang() === 'en' ? 'en-GB' : 'zh-CN', {
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  });
}

export function fmtSize(bytes) {
  if (bytes == null) return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let n = Number(bytes);
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** A message box for a section that cannot load: unavailable endpoint or failure. */
export function problem(e) {
  if (e instanceof ApiError && e.unavailable) {
    return h('div', { class: 'note note-muted unavailable' }, t('common.unavailable', { path: (e.path || '').split('?')[0] }));
  }
  return h('div', { class: 'note note-error', role: 'alert' }, t('common.failed', { msg: e.message }));
}

// ---- icons (inline SVG paths, no icon font) ----

const ICONS = {
  x: 'M6 6l12 12M18 6L6 18',
  plus: 'M12 5v14M5 12h14',
  back: 'M15 6l-6 6 6 6',
  upload: 'M12 20V9M7 14l5-5 5 5M5 4h14',
  folder: 'M3 7V5h7l2 2h9v12H3z',
  refresh: 'M20 12a8 8 0 1 1-2.3-5.7M20 4v5h-5',
  edit: 'M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4',
  trash: 'M5 7h14M10 7V4h4v3M7 7l1 13h8l1-13',
  copy: 'M9 9h10v10H9zM5 15V5h10',
  up: 'M7 11v9H4v-9h3zm0 0l4-7c1.5 0 2.5 1 2 3l-1 3h6c1 0 2 1 1.7 2.2l-1.6 6c-.3 1-1 1.8-2.1 1.8H7',
  down: 'M7 13V4H4v9h3zm0 0l4 7c1.5 0 2.5-1 2-3l-1-3h6c1 0 2-1 1.7-2.2l-1.6-6C17.8 4.8 17.1 4 16 4H7',
  search: 'M11 18a7 7 0 1 1 0-14 7 7 0 0 1 0 14zM16 16l5 5',
  download: 'M12 4v11M7 10l5 5 5-5M5 20h14',
  lock: 'M6 11h12v9H6zM8 11V8a4 4 0 0 1 8 0v3',
  file: 'M6 3h8l4 4v14H6zM14 3v4h4',
};

export function icon(name) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}
