// Topics: the paged list (filter by prefix), create, delete with confirmation.

import { api, enc } from './api.js';
import { confirmDialog, fill, h, table, toast, toastError } from './dom.js';
import { bytes, num, retention } from './format.js';

const PAGE = 50;

export async function deleteTopic(name) {
  const ok = await confirmDialog({
    title: `Delete topic ${name}?`,
    text: 'Every record of every partition is deleted. This cannot be undone.',
    ok: 'Delete topic',
    typed: name,
  });
  if (!ok) return false;
  await api(`/topics/${enc(name)}`, { method: 'DELETE' });
  toast(`Topic ${name} deleted`);
  return true;
}

function createForm(onCreated) {
  const name = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._\\-]+', placeholder: 'orders', maxlength: 249 });
  const partitions = h('input', { name: 'partitions', type: 'number', min: 0, placeholder: 'default' });
  const hours = h('input', { name: 'retention_hours', type: 'number', min: 0, step: 'any', placeholder: 'default' });
  const mib = h('input', { name: 'retention_mib', type: 'number', min: 0, step: 'any', placeholder: 'default' });
  const form = h('form', { class: 'row', id: 'create-topic' },
    h('label', {}, 'Name', name),
    h('label', {}, 'Partitions', partitions),
    h('label', {}, 'Retention (hours)', hours),
    h('label', {}, 'Retention (MiB per partition)', mib),
    h('button', { class: 'primary', type: 'submit' }, 'Create topic'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { name: name.value.trim() };
    if (partitions.value) body.partitions = Number(partitions.value);
    if (hours.value) body.retention_ms = Math.round(Number(hours.value) * 3_600_000);
    if (mib.value) body.retention_bytes = Math.round(Number(mib.value) * 1048576);
    try {
      const t = await api('/topics', { method: 'POST', body });
      toast(`Topic ${t.name} created with ${t.partition_count} partitions`);
      form.reset();
      onCreated(t);
    } catch (err) { toastError(err); }
  });
  return h('details', { class: 'panel' }, h('summary', {}, 'Create a topic'), form);
}

export async function topicsPage(ctx) {
  document.title = 'Topics · Obelisk';
  const params = new URLSearchParams(location.search);
  let offset = Math.max(0, Number(params.get('offset')) || 0);
  let prefix = params.get('prefix') || '';
  const list = h('div', { id: 'topic-list' });
  const info = h('span', { class: 'muted' });
  const prev = h('button', { type: 'button' }, '‹ Previous');
  const next = h('button', { type: 'button' }, 'Next ›');
  const filter = h('input', { type: 'search', placeholder: 'name prefix', value: prefix, 'aria-label': 'Filter by name prefix' });

  const load = async () => {
    const q = new URLSearchParams({ offset, limit: PAGE });
    if (prefix) q.set('prefix', prefix);
    const r = await api(`/topics?${q}`, { signal: ctx.signal });
    if (!ctx.alive) return;
    if (r.topics.length === 0 && offset > 0 && r.total > 0) {
      offset = Math.max(0, Math.floor((r.total - 1) / PAGE) * PAGE);
      return load();
    }
    history.replaceState(null, '', `/ui/topics?${new URLSearchParams({ ...(offset ? { offset } : {}), ...(prefix ? { prefix } : {}) })}`.replace(/\?$/, ''));
    info.textContent = r.total ? `${offset + 1}–${offset + r.topics.length} of ${num(r.total)}` : 'no topics';
    prev.disabled = offset === 0;
    next.disabled = offset + r.topics.length >= r.total;
    fill(list, table(
      [{ label: 'topic' }, { label: 'partitions', num: true }, { label: 'records', num: true }, { label: 'size', num: true }, { label: 'retention', cls: 'hide-narrow' }, { label: '' }],
      r.topics.map((t) => [
        h('a', { href: `/ui/topics/${enc(t.name)}` }, t.name),
        num(t.partition_count), num(t.messages), bytes(t.size_bytes),
        retention(t.retention_ms, t.retention_bytes),
        h('button', {
          type: 'button', class: 'danger', 'aria-label': `Delete ${t.name}`,
          onclick: async () => { try { if (await deleteTopic(t.name)) await load(); } catch (err) { toastError(err); } },
        }, 'Delete'),
      ]),
      { empty: prefix ? `No topic starts with “${prefix}”.` : 'No topics yet: create one above.', rowAttrs: (i) => ({ dataset: { topic: r.topics[i].name } }) },
    ));
  };
  prev.onclick = () => { offset = Math.max(0, offset - PAGE); load().catch(toastError); };
  next.onclick = () => { offset += PAGE; load().catch(toastError); };
  let debounce;
  filter.oninput = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { prefix = filter.value.trim(); offset = 0; load().catch(toastError); }, 250);
  };
  fill(ctx.main,
    h('h1', {}, 'Topics'),
    createForm(() => load().catch(toastError)),
    h('div', { class: 'pager' }, filter, prev, next, info),
    list);
  await load();
  ctx.every(5000, () => load().catch(() => {}));
}
