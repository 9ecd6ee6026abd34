// The message browser of one topic: seek a partition by offset or time, page forward and back
// (bounded pages), search the loaded page by key, header or value, show values as text, JSON or
// hex, and produce a test record.

import { api, enc } from './api.js';
import { fill, h, toast, toastError } from './dom.js';
import { b64ToBytes, localInputToNs, localTime, num, showValue } from './format.js';

const MAX_PAGE_BYTES = 1 << 20;

function matches(r, needle, field) {
  if (!needle) return true;
  const n = needle.toLowerCase();
  const has = (s) => typeof s === 'string' && s.toLowerCase().includes(n);
  const inKey = () => has(r.key);
  const inValue = () => has(r.value);
  const inHeaders = () => (r.headers || []).some((x) => has(x.name) || has(x.value));
  if (field === 'key') return inKey();
  if (field === 'value') return inValue();
  if (field === 'header') return inHeaders();
  return inKey() || inValue() || inHeaders();
}

/** One line of the value for the table: text, or the first bytes in hex. */
function preview(r, mode) {
  if (mode !== 'hex' && r.value !== null && r.value !== undefined) return r.value.slice(0, 200);
  const u8 = b64ToBytes(r.value_base64);
  return Array.from(u8.subarray(0, 48), (b) => b.toString(16).padStart(2, '0')).join(' ') + (u8.length > 48 ? ' …' : '');
}

function producer(topic, onProduced) {
  const partition = h('select', { name: 'partition' },
    h('option', { value: '' }, 'by key'),
    topic.partitions.map((p) => h('option', { value: p.partition }, String(p.partition))));
  const key = h('input', { name: 'key', placeholder: 'key' });
  const value = h('textarea', { name: 'value', placeholder: '{"hello": "world"}' });
  const headers = h('input', { name: 'headers', placeholder: 'name=value, name2=value2' });
  const form = h('form', { id: 'produce-form' },
    h('div', { class: 'row' }, h('label', {}, 'Partition', partition), h('label', {}, 'Key', key), h('label', {}, 'Headers', headers)),
    h('label', { class: 'block' }, 'Value', value),
    h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit' }, 'Produce')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const rec = { value: value.value };
    if (key.value) rec.key = key.value;
    if (partition.value !== '') rec.partition = Number(partition.value);
    const hs = {};
    for (const pair of headers.value.split(',').map((x) => x.trim()).filter(Boolean)) {
      const i = pair.indexOf('=');
      if (i <= 0) { toastError(new Error(`header "${pair}" must be name=value`)); return; }
      hs[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
    }
    if (Object.keys(hs).length) rec.headers = hs;
    try {
      const r = await api(`/topics/${enc(topic.name)}/messages`, { method: 'POST', body: { records: [rec] } });
      const ack = r.acks[0];
      toast(`Produced to partition ${ack.partition} at offset ${ack.offset}`);
      onProduced(ack);
    } catch (err) { toastError(err); }
  });
  return h('details', { class: 'panel' }, h('summary', {}, 'Produce a test record'), form);
}

export function messageBrowser(ctx, el, topic) {
  const state = { partition: 0, offset: topic.partitions[0] ? topic.partitions[0].log_start : 0, page: 50, records: [], logStart: 0, logEnd: 0, selected: null };
  const partSel = h('select', { name: 'partition', 'aria-label': 'Partition' }, topic.partitions.map((p) => h('option', { value: p.partition }, `partition ${p.partition}`)));
  const offsetIn = h('input', { name: 'offset', type: 'number', min: 0, value: state.offset, 'aria-label': 'Offset' });
  const timeIn = h('input', { name: 'time', type: 'datetime-local', step: 1, 'aria-label': 'Time' });
  const pageSel = h('select', { name: 'page', 'aria-label': 'Page size' }, [20, 50, 100, 200, 500].map((n) => h('option', { value: n, selected: n === state.page }, `${n} per page`)));
  const search = h('input', { name: 'search', type: 'search', placeholder: 'search the loaded records', 'aria-label': 'Search' });
  const field = h('select', { name: 'field', 'aria-label': 'Search in' }, ['any', 'key', 'header', 'value'].map((f) => h('option', { value: f }, f === 'any' ? 'key, header or value' : f)));
  const view = h('select', { name: 'view', 'aria-label': 'Show values as' }, [['text', 'text'], ['json', 'JSON (pretty)'], ['hex', 'hex']].map(([v, l]) => h('option', { value: v }, l)));
  const prev = h('button', { type: 'button' }, '‹ Back');
  const next = h('button', { type: 'button' }, 'Forward ›');
  const info = h('span', { class: 'muted', id: 'page-info' });
  const rows = h('div', { id: 'records' });
  const detail = h('div', { id: 'record-detail' });

  const draw = () => {
    const needle = search.value.trim();
    const shown = state.records.filter((r) => matches(r, needle, field.value));
    const first = state.records[0];
    const last = state.records[state.records.length - 1];
    info.textContent = state.records.length
      ? `offsets ${num(first.offset)}–${num(last.offset)} of ${num(state.logStart)}–${num(state.logEnd)}${needle ? ` · ${shown.length} match` : ''}`
      : `no records at offset ${num(state.offset)} (partition holds ${num(state.logStart)}–${num(state.logEnd)})`;
    prev.disabled = state.offset <= state.logStart;
    next.disabled = !last || last.offset + 1 >= state.logEnd;
    const body = shown.map((r) => {
      const tr = h('tr', { class: 'record', tabindex: 0, dataset: { offset: r.offset } },
        h('td', { class: 'num' }, num(r.offset)),
        h('td', { class: 'hide-narrow' }, localTime(r.timestamp)),
        h('td', { class: 'mono' }, r.key === null ? '(binary)' : r.key),
        h('td', { class: 'hide-narrow' }, (r.headers || []).map((x) => h('span', { class: 'tag' }, `${x.name}=${x.value ?? '(binary)'}`))),
        h('td', { class: 'value-cell mono' }, preview(r, view.value)));
      const open = () => { state.selected = r; drawDetail(); };
      tr.addEventListener('click', open);
      tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
      return tr;
    });
    fill(rows, h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'offset'), h('th', { class: 'hide-narrow' }, 'time'), h('th', {}, 'key'), h('th', { class: 'hide-narrow' }, 'headers'), h('th', {}, 'value'))),
      h('tbody', {}, body.length ? body : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, needle ? 'No loaded record matches.' : 'No records.'))))));
    drawDetail();
  };

  const drawDetail = () => {
    const r = state.selected;
    if (!r || !state.records.includes(r)) { fill(detail); return; }
    fill(detail, h('div', { class: 'panel' },
      h('h3', {}, `Partition ${state.partition}, offset ${r.offset}`),
      h('p', { class: 'muted' }, `${r.timestamp} · key `, h('code', {}, r.key ?? `(binary) ${r.key_base64}`)),
      (r.headers || []).length ? h('p', {}, r.headers.map((x) => h('span', { class: 'tag' }, `${x.name}=${x.value ?? `(binary) ${x.value_base64}`}`))) : null,
      h('pre', { id: 'record-value' }, showValue(r.value, r.value_base64, view.value))));
  };

  /** Loads one page from `offset` (clamped into the partition). */
  let seq = 0;
  const load = async (offset) => {
    const mine = ++seq;
    const q = new URLSearchParams({ partition: state.partition, offset: Math.max(0, offset), limit: state.page, max_bytes: MAX_PAGE_BYTES });
    let r;
    try {
      r = await api(`/topics/${enc(topic.name)}/messages?${q}`, { signal: ctx.signal });
    } catch (err) {
      if (err.status !== 416) throw err;
      // Below the log start (retention removed it): start at the first record still stored.
      const o = await api(`/topics/${enc(topic.name)}/offsets`, { signal: ctx.signal });
      const p = o.partitions.find((x) => x.partition === state.partition);
      return load(p.log_start);
    }
    // A newer request (another click) wins over this one.
    if (!ctx.alive || mine !== seq) return;
    state.offset = Math.max(0, offset);
    state.records = r.records;
    state.logStart = r.log_start;
    state.logEnd = r.log_end;
    offsetIn.value = state.offset;
    draw();
  };
  const run = (p) => p.catch(toastError);

  const seekOffset = h('form', { class: 'row' }, h('label', {}, 'Offset', offsetIn), h('button', { type: 'submit' }, 'Go'));
  seekOffset.addEventListener('submit', (ev) => { ev.preventDefault(); run(load(Number(offsetIn.value) || 0)); });
  const seekTime = h('form', { class: 'row' }, h('label', {}, 'Time', timeIn), h('button', { type: 'submit' }, 'Go to time'));
  seekTime.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const ns = localInputToNs(timeIn.value);
    if (!ns) { toastError(new Error('choose a date and time')); return; }
    run((async () => {
      const o = await api(`/topics/${enc(topic.name)}/offsets?timestamp_ns=${ns}`, { signal: ctx.signal });
      const p = o.partitions.find((x) => x.partition === state.partition);
      await load(p.offset);
    })());
  });
  const earliest = h('button', { type: 'button', onclick: () => run(load(state.logStart)) }, 'Earliest');
  const latest = h('button', { type: 'button', onclick: () => run(load(Math.max(state.logStart, state.logEnd - state.page))) }, 'Latest');
  prev.onclick = () => run(load(Math.max(state.logStart, state.offset - state.page)));
  next.onclick = () => {
    const last = state.records[state.records.length - 1];
    run(load(last ? last.offset + 1 : state.offset));
  };
  partSel.onchange = () => {
    state.partition = Number(partSel.value);
    const p = topic.partitions.find((x) => x.partition === state.partition);
    run(load(p ? p.log_start : 0));
  };
  pageSel.onchange = () => { state.page = Number(pageSel.value); run(load(state.offset)); };
  search.oninput = draw;
  field.onchange = draw;
  view.onchange = draw;

  fill(el,
    h('div', { class: 'panel' },
      h('div', { class: 'row' }, partSel, pageSel, earliest, latest, seekOffset, seekTime),
      h('div', { class: 'row' }, search, field, h('label', {}, 'Show values as', view)),
      h('div', { class: 'pager' }, prev, next, info),
      rows),
    detail,
    producer(topic, async (ack) => {
      state.partition = ack.partition;
      partSel.value = String(ack.partition);
      await run(load(Math.max(0, ack.offset - state.page + 1)));
    }));
  run(load(state.offset));
}
