// Small DOM helpers: element builder, toasts, confirmation dialog.

/** h('a', {href: '/x', class: 'y', onclick: fn}, 'text', child…) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function toast(message, kind = 'ok') {
  const t = h('div', { class: `toast ${kind}` }, message);
  document.getElementById('toasts').append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

/** Shows an error from a failed call. */
export function toastError(err) {
  toast(err && err.message ? err.message : String(err), 'error');
}

/**
 * Asks for confirmation; resolves true when confirmed. With `typed`, the user must type that
 * text first (for deletes).
 */
export function confirmDialog({ title, text, ok = 'Confirm', typed = null }) {
  const d = document.getElementById('confirm-dialog');
  const slot = (n) => d.querySelector(`[data-slot="${n}"]`);
  slot('title').textContent = title;
  slot('text').textContent = text;
  slot('ok').textContent = ok;
  const typedLabel = slot('typed');
  const input = d.querySelector('input[name="typed"]');
  input.value = '';
  typedLabel.hidden = !typed;
  slot('expect').textContent = typed || '';
  const okButton = slot('ok');
  const check = () => { okButton.disabled = Boolean(typed) && input.value !== typed; };
  input.oninput = check;
  check();
  d.returnValue = '';
  d.showModal();
  if (typed) input.focus();
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok' && !okButton.disabled), { once: true });
  });
}

/** A table: `cols` = [{label, num?, cls?}], `rows` = arrays of cells. */
export function table(cols, rows, { empty = 'Nothing here.', rowAttrs = () => ({}) } = {}) {
  const head = h('tr', {}, cols.map((c) => h('th', { class: [c.num ? 'num' : '', c.cls || ''].join(' ').trim() || null, scope: 'col' }, c.label)));
  const body = rows.length
    ? rows.map((r, i) => h('tr', rowAttrs(i), r.map((cell, j) => h('td', { class: [cols[j].num ? 'num' : '', cols[j].cls || ''].join(' ').trim() || null }, cell))))
    : [h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, empty))];
  return h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, head), h('tbody', {}, body)));
}

export function tile(label, value, attrs = {}) {
  return h('div', { class: 'tile', ...attrs }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}
