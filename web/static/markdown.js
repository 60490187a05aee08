// Safe markdown for model answers: the text is never parsed as HTML. Blocks (paragraphs,
// lists, headings, quotes, code, simple tables) and inline marks (bold, italic, code) are
// built as DOM nodes whose text is set with text nodes, so markup in an answer shows as
// text. `[n]` citation markers become chips through a callback.
//
// Also: which passage sentences a cited answer sentence rests on (for highlighting).

const MARKER = /\[(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\]/g;

function el(tag, cls) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

/**
 * Render `text` into a DocumentFragment. `chip(n, sentence)` makes the node for citation
 * marker `n` (the answer sentence carrying it is passed for highlighting), or returns null
 * to leave the marker as text.
 */
export function renderMarkdown(text, { chip } = {}) {
  const frag = document.createDocumentFragment();
  const lines = String(text ?? '').replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  let para = [];
  let list = null; // {el, ordered}

  const flushPara = () => {
    if (!para.length) return;
    const p = el('p');
    const src = para.join('\n');
    appendInline(p, src, 0, { src, chip });
    frag.append(p);
    para = [];
  };
  const closeList = () => {
    list = null;
  };

  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)/);
    if (fence) {
      flushPara();
      closeList();
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1;
      const pre = el('pre');
      const code = el('code');
      code.textContent = body.join('\n');
      pre.append(code);
      frag.append(pre);
      continue;
    }
    if (/^\s*$/.test(line)) {
      flushPara();
      closeList();
      i += 1;
      continue;
    }
    const heading = line.match(/^\s{0,3}(#{1,6})\s+(.*)$/);
    if (heading) {
      flushPara();
      closeList();
      const level = Math.min(6, heading[1].length + 2);
      const hEl = el(`h${level}`, 'md-h');
      appendInline(hEl, heading[2], 0, { src: heading[2], chip });
      frag.append(hEl);
      i += 1;
      continue;
    }
    if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flushPara();
      closeList();
      frag.append(el('hr'));
      i += 1;
      continue;
    }
    if (isTableRow(line) && i + 1 < lines.length && /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/.test(lines[i + 1])) {
      flushPara();
      closeList();
      const table = el('table', 'md-table');
      const thead = el('thead');
      thead.append(tableRow(line, 'th', chip));
      table.append(thead);
      const tbody = el('tbody');
      i += 2;
      while (i < lines.length && isTableRow(lines[i])) {
        tbody.append(tableRow(lines[i], 'td', chip));
        i += 1;
      }
      table.append(tbody);
      const wrap = el('div', 'md-table-wrap');
      wrap.append(table);
      frag.append(wrap);
      continue;
    }
    const quote = line.match(/^\s{0,3}>\s?(.*)$/);
    if (quote) {
      flushPara();
      closeList();
      const body = [quote[1]];
      i += 1;
      while (i < lines.length && /^\s{0,3}>/.test(lines[i])) {
        body.push(lines[i].replace(/^\s{0,3}>\s?/, ''));
        i += 1;
      }
      const bq = el('blockquote');
      const src = body.join('\n');
      appendInline(bq, src, 0, { src, chip });
      frag.append(bq);
      continue;
    }
    const item = line.match(/^\s*(?:([-*+•·])|(\d{1,3})[.)、])\s+(.*)$/);
    if (item) {
      flushPara();
      const ordered = !item[1];
      if (!list || list.ordered !== ordered) {
        list = { el: el(ordered ? 'ol' : 'ul'), ordered };
        if (ordered && item[2] !== '1') list.el.setAttribute('start', item[2]);
        frag.append(list.el);
      }
      // Continuation lines (indented, not a new item) belong to this item.
      const body = [item[3]];
      i += 1;
      while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !/^\s*(?:[-*+•·]|\d{1,3}[.)、])\s+/.test(lines[i])) {
        body.push(lines[i].trim());
        i += 1;
      }
      const li = el('li');
      const src = body.join('\n');
      appendInline(li, src, 0, { src, chip });
      list.el.append(li);
      continue;
    }
    closeList();
    para.push(line);
    i += 1;
  }
  flushPara();
  return frag;
}

function isTableRow(line) {
  return /^\s*\|.*\|\s*$/.test(line);
}

function tableRow(line, cellTag, chip) {
  const tr = el('tr');
  const cells = line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|');
  for (const c of cells) {
    const cell = el(cellTag);
    const src = c.trim();
    appendInline(cell, src, 0, { src, chip });
    tr.append(cell);
  }
  return tr;
}

const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([\s\S]+?)\*\*|__([\s\S]+?)__|(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])|\[(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\]|\n/g;

/** Append the inline nodes of `s` (found at offset `base` of the block source `ctx.src`). */
function appendInline(parent, s, base, ctx) {
  const re = new RegExp(INLINE.source, 'g');
  let last = 0;
  let m;
  while ((m = re.exec(s))) {
    if (m.index > last) parent.append(document.createTextNode(s.slice(last, m.index)));
    last = m.index + m[0].length;
    if (m[0] === '\n') {
      parent.append(el('br'));
    } else if (m[1]) {
      const code = el('code');
      code.textContent = m[2].trim() ? m[2].replace(/^ (.*) $/, '$1') : m[2];
      parent.append(code);
    } else if (m[3] !== undefined || m[4] !== undefined) {
      const strong = el('strong');
      const inner = m[3] ?? m[4];
      appendInline(strong, inner, base + m.index + 2, ctx);
      parent.append(strong);
    } else if (m[5] !== undefined) {
      const em = el('em');
      appendInline(em, m[5], base + m.index + 1, ctx);
      parent.append(em);
    } else if (m[6] !== undefined) {
      const numbers = m[6].split(/\s*[,，、]\s*/).map(Number);
      const sentence = carrierSentence(ctx.src, base + m.index);
      const chips = ctx.chip ? numbers.map((n) => ctx.chip(n, sentence)) : [];
      if (chips.length && chips.every(Boolean)) {
        const group = el('span', 'cites');
        group.append(...chips);
        parent.append(group);
      } else {
        parent.append(document.createTextNode(m[0]));
      }
    }
  }
  if (last < s.length) parent.append(document.createTextNode(s.slice(last)));
}

/** Remove markdown punctuation and citation markers, leaving the words. */
export function plainText(s) {
  return String(s ?? '')
    .replace(new RegExp(MARKER.source, 'g'), '')
    .replace(/`+|\*\*|__|(^|\n)\s*(#{1,6}|>|[-*+•·]|\d{1,3}[.)、])\s+/g, '$1')
    .replace(/[*_]/g, '');
}

// Only full stops end the cited sentence: a marker after "…5天；…10天；…15天。" cites all three clauses.
const TERMINATORS = /[。！？!?]|\.(?=\s|$)|\n/;

/** The answer text a marker at `pos` of `src` cites: back to the previous sentence end or
 * the previous marker, whichever is nearer ("A；[1]B；[2]": [2] cites B). A marker after a full
 * stop cites the sentence before it; adjacent markers ("A[1][2]") cite the same text. */
export function carrierSentence(src, pos) {
  const head = src.slice(0, pos).replace(/(\s*\[\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\])+\s*$/, '');
  const re = new RegExp(MARKER.source, 'g');
  let after = 0;
  let m;
  while ((m = re.exec(head))) after = m.index + m[0].length;
  let before = plainText(head.slice(after)).replace(/[\s。！？!?；;.,，:：]+$/, '');
  let start = 0;
  for (let k = before.length - 1; k >= 0; k -= 1) {
    if (TERMINATORS.test(before[k]) && (before[k] !== '.' || /\s/.test(before[k + 1] ?? ' '))) {
      start = k + 1;
      break;
    }
  }
  const strip = (x) => x.replace(/^[\s。！？!?；;.,，:：]+/, '').trim();
  let sentence = strip(before.slice(start));
  // Too short to match on (e.g. "是的[1]"): take the sentence before it too.
  if (sentence.length < 4 && start > 0) sentence = strip(before);
  return sentence;
}

/** Split text into sentences, keeping every character (joined, they give the text back). */
export function sentences(text) {
  const out = [];
  const re = /[。！？!?；;]+[”"’')）」]*|\.(?=\s|$)[”"’')）]*|\n+/g;
  let start = 0;
  let m;
  while ((m = re.exec(text))) {
    const end = m.index + m[0].length;
    if (end > start) out.push(text.slice(start, end));
    start = end;
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

/** Comparable features. Text is cut at spaces and punctuation; inside each piece, Han
 * characters and runs of other letters or digits are tokens, and the features are pairs of
 * neighbouring tokens ("满20", "20年", "年休", "休假"), so that clauses differing only in their
 * numbers stay apart. A piece of one non-Han token (an English word, a number) is a feature
 * by itself. */
export function features(s) {
  const out = new Set();
  for (const piece of String(s).toLowerCase().split(/[\s\p{P}\p{S}]+/u)) {
    const tokens = piece.match(/\p{Script=Han}|[^\p{Script=Han}]+/gu) || [];
    if (tokens.length === 1) {
      if (/\p{Script=Han}/u.test(tokens[0]) || tokens[0].length > 1 || /\d/.test(tokens[0])) out.add(tokens[0]);
      continue;
    }
    for (let k = 0; k + 1 < tokens.length; k += 1) out.add(`${tokens[k]}\u0001${tokens[k + 1]}`);
  }
  return out;
}

/**
 * Which of `passage`'s sentences support `sentence`: indexes into sentences(passage).
 * Greedy cover of the answer sentence's features: the passage sentence sharing the most,
 * then each one adding at least two more (and a quarter of its own features); plus any
 * passage sentence the answer sentence nearly repeats (80% of its features).
 */
export function supportingSentences(passage, sentence) {
  const parts = sentences(passage);
  const want = features(sentence);
  const chosen = new Set();
  if (!want.size) return { parts, chosen };
  const feats = parts.map(features);
  const left = new Set(want);
  for (let round = 0; round < parts.length && left.size; round += 1) {
    let best = -1;
    let gain = 0;
    feats.forEach((f, k) => {
      if (chosen.has(k)) return;
      let g = 0;
      for (const x of f) if (left.has(x)) g += 1;
      if (g > gain) {
        gain = g;
        best = k;
      }
    });
    if (best < 0 || gain < 2 || (chosen.size && gain < feats[best].size * 0.25)) break;
    chosen.add(best);
    for (const x of feats[best]) left.delete(x);
  }
  feats.forEach((f, k) => {
    let shared = 0;
    for (const x of f) if (want.has(x)) shared += 1;
    if (shared >= 2 && shared >= f.size * 0.8) chosen.add(k);
  });
  return { parts, chosen };
}
