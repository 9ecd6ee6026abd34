// Consumer groups: the list with total lag, and one group's offsets, lag chart, members and reset.

import { api, enc } from './api.js';
import { lineChart } from './chart.js';
import { confirmDialog, fill, h, table, tile, toast, toastError } from './dom.js';
import { localInputToNs, num } from './format.js';

const PAGE = 50;

export async function groupsPage(ctx) {
  document.title = 'Groups · Obelisk';
  const r = await api('/groups', { signal: ctx.signal });
  if (!ctx.alive) return;
  const all = r.groups;
  let offset = 0;
  const filter = h('input', { type: 'search', placeholder: 'filter groups', 'aria-label': 'Filter groups' });
  const list = h('div', { id: 'group-list' });
  const prev = h('button', { type: 'button' }, '‹ Previous');
  const next = h('button', { type: 'button' }, 'Next ›');
  const info = h('span', { class: 'muted' });
  const draw = async () => {
    const needle = filter.value.trim().toLowerCase();
    const matching = all.filter((g) => g.toLowerCase().includes(needle));
    const page = matching.slice(offset, offset + PAGE);
    info.textContent = matching.length ? `${offset + 1}–${offset + page.length} of ${num(matching.length)}` : '';
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= matching.length;
    const details = await Promise.all(page.map((g) => api(`/groups/${enc(g)}`, { signal: ctx.signal }).catch(() => null)));
    if (!ctx.alive) return;
    fill(list, table(
      [{ label: 'group' }, { label: 'topics' }, { label: 'partitions', num: true }, { label: 'total lag', num: true }],
      page.map((g, i) => {
        const d = details[i];
        const topics = d ? [...new Set(d.partitions.map((p) => p.topic))] : [];
        return [h('a', { href: `/ui/groups/${enc(g)}` }, g), topics.join(', '), d ? num(d.partitions.length) : '—', d ? num(d.total_lag) : '—'];
      }),
      { empty: all.length ? 'No group matches.' : 'No consumer group has committed an offset yet.', rowAttrs: (i) => ({ dataset: { group: page[i] } }) },
    ));
  };
  prev.onclick = () => { offset = Math.max(0, offset - PAGE); draw(); };
  next.onclick = () => { offset += PAGE; draw(); };
  filter.oninput = () => { offset = 0; draw(); };
  fill(ctx.main, h('h1', {}, 'Consumer groups'), h('div', { class: 'pager' }, filter, prev, next, info), list);
  await draw();
  ctx.every(5000, () => draw().catch(() => {}));
}

/** Members, when the group API reports them (shape-tolerant: shows what each member has). */
function members(list) {
  if (!Array.isArray(list)) return null;
  const idOf = (m) => m.member_id ?? m.id ?? m.name ?? m.client_id ?? '?';
  const partsOf = (m) => {
    const a = m.partitions ?? m.assignment ?? m.assignments ?? [];
    return (Array.isArray(a) ? a : [a]).map((p) => (typeof p === 'object' ? `${p.topic ?? ''}${p.topic ? '/' : ''}${p.partition ?? JSON.stringify(p)}` : String(p)));
  };
  const rest = (m) => Object.entries(m)
    .filter(([k]) => !['member_id', 'id', 'name', 'partitions', 'assignment', 'assignments'].includes(k))
    .map(([k, v]) => h('span', { class: 'tag' }, `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`));
  return [h('h2', {}, `Members (${list.length})`), table(
    [{ label: 'member' }, { label: 'partitions' }, { label: 'details' }],
    list.map((m) => [h('code', {}, String(idOf(m))), partsOf(m).map((p) => h('span', { class: 'tag' }, p)), rest(m)]),
    { empty: 'No member is connected.' },
  )];
}

/** A shared group's settings and in-flight windows (records handed out and not yet settled). */
function sharedState(s) {
  if (!s) return null;
  const dlq = s.dead_letter_topic;
  return [
    h('h2', {}, 'Shared group'),
    h('div', { class: 'grid' },
      tile('In flight', num(s.in_flight), { dataset: { stat: 'in-flight' } }),
      tile('Locked', num(s.locked), { dataset: { stat: 'locked' } }),
      tile('Dead letters', s.dead_letters == null ? '0' : num(s.dead_letters), { dataset: { stat: 'dead-letters' } }),
      tile('Max deliveries', num(s.max_deliveries)),
      tile('Ack timeout', `${num(s.ack_timeout_ms / 1000)} s`)),
    h('p', { class: 'muted' }, 'Dead letters go to ',
      s.dead_letters == null ? h('code', {}, dlq) : h('a', { href: `/ui/topics/${enc(dlq)}` }, dlq),
      `; at most ${num(s.max_in_flight)} records in flight per partition.`),
    table(
      [{ label: 'topic' }, { label: 'partition', num: true }, { label: 'position', num: true }, { label: 'next', num: true },
        { label: 'in flight', num: true }, { label: 'locked', num: true }, { label: 'redelivered', num: true }, { label: 'most deliveries', num: true }],
      s.partitions.map((p) => [h('a', { href: `/ui/topics/${enc(p.topic)}` }, p.topic), num(p.partition), num(p.position), num(p.next),
        num(p.in_flight), num(p.locked), num(p.redelivered), num(p.max_deliveries_seen)]),
      { empty: 'Nothing has been handed out yet.' },
    ),
  ];
}

function resetForm(group, topics, onDone) {
  const topic = h('select', { name: 'topic', 'aria-label': 'Topic' }, topics.map((t) => h('option', { value: t }, t)));
  const to = h('select', { name: 'to', 'aria-label': 'Reset to' }, [['earliest', 'earliest'], ['latest', 'latest'], ['offset', 'an offset'], ['time', 'a time']].map(([v, l]) => h('option', { value: v }, l)));
  const offset = h('input', { name: 'offset', type: 'number', min: 0, placeholder: 'offset', hidden: true, 'aria-label': 'Offset' });
  const time = h('input', { name: 'time', type: 'datetime-local', step: 1, hidden: true, 'aria-label': 'Time' });
  to.onchange = () => { offset.hidden = to.value !== 'offset'; time.hidden = to.value !== 'time'; };
  const form = h('form', { class: 'row', id: 'reset-form' },
    h('label', {}, 'Topic', topic), h('label', {}, 'Reset to', to), offset, time,
    h('button', { type: 'submit', class: 'danger' }, 'Reset offsets…'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let body;
    let what;
    if (to.value === 'offset') {
      if (offset.value === '') { toastError(new Error('enter an offset')); return; }
      body = { offset: Number(offset.value) };
      what = `offset ${offset.value} (clamped into each partition)`;
    } else if (to.value === 'time') {
      const ns = localInputToNs(time.value);
      if (!ns) { toastError(new Error('choose a date and time')); return; }
      // Unix nanoseconds exceed JavaScript's exact integers: send the decimal text as a JSON number.
      body = `{"timestamp_ns":${ns}}`;
      what = `the first record at or after ${new Date(time.value).toLocaleString()}`;
    } else {
      body = to.value;
      what = `the ${to.value} offset`;
    }
    const ok = await confirmDialog({
      title: `Reset ${group} on ${topic.value}?`,
      text: `Every partition of ${topic.value} is set to ${what} for group ${group}. Consumers of the group re-read or skip records from there.`,
      ok: 'Reset offsets',
    });
    if (!ok) return;
    try {
      const payload = typeof body === 'string' && body.startsWith('{')
        ? await api(`/topics/${enc(topic.value)}/reset`, { method: 'POST', rawBody: `{"group":${JSON.stringify(group)},"to":${body}}` })
        : await api(`/topics/${enc(topic.value)}/reset`, { method: 'POST', body: { group, to: body } });
      toast(`Reset: ${payload.offsets.map((o) => `p${o.partition}→${o.offset}`).join(', ')}`);
      onDone();
    } catch (err) { toastError(err); }
  });
  return h('div', { class: 'panel' }, form);
}

export async function groupPage(ctx, group) {
  document.title = `${group} · Groups · Obelisk`;
  const tiles = h('div', { class: 'grid' });
  const chart = h('div', { class: 'panel', id: 'lag-chart' });
  const parts = h('div', { id: 'group-partitions' });
  const memberBox = h('div', { id: 'members' });
  const sharedBox = h('div', { id: 'shared-state' });
  const resetBox = h('div');
  let topicsKey = '';
  const refresh = async () => {
    const [d, hist] = await Promise.all([
      api(`/groups/${enc(group)}`, { signal: ctx.signal }),
      api(`/groups/${enc(group)}/history`, { signal: ctx.signal }),
    ]);
    if (!ctx.alive) return;
    const topics = [...new Set(d.partitions.map((p) => p.topic))].sort();
    fill(tiles,
      tile('Total lag', num(d.total_lag), { dataset: { stat: 'total-lag' } }),
      tile('Topics', num(topics.length)),
      tile('Partitions', num(d.partitions.length)),
      Array.isArray(d.members) ? tile('Members', num(d.members.length)) : null);
    // The server's samples, plus the value just read so a change shows at once.
    const points = hist.samples.map((x) => [x.t_ms, x.lag]);
    points.push([Date.now(), d.total_lag]);
    lineChart(chart, [{ name: 'total lag', points }], { format: (v) => num(Math.round(v)), label: 'lag over time' });
    fill(parts, table(
      [{ label: 'topic' }, { label: 'partition', num: true }, { label: 'committed', num: true }, { label: 'log end', num: true }, { label: 'lag', num: true }],
      d.partitions.map((p) => [h('a', { href: `/ui/topics/${enc(p.topic)}` }, p.topic), num(p.partition), num(p.committed), num(p.log_end), num(p.lag)]),
      { empty: 'The group has no committed offsets in existing topics.' },
    ));
    fill(memberBox, members(d.members));
    fill(sharedBox, sharedState(d.shared));
    if (d.shared) {
      // A shared group's position moves as its records are settled, not by a commit.
      if (topicsKey !== '\u0000shared') {
        topicsKey = '\u0000shared';
        fill(resetBox, h('p', { class: 'muted' }, 'A shared group moves on as its records are settled; its position is not reset here.'));
      }
    } else if (topics.join('\n') !== topicsKey) {
      topicsKey = topics.join('\n');
      fill(resetBox, topics.length ? resetForm(group, topics, () => refresh().catch(toastError)) : h('p', { class: 'muted' }, 'Nothing to reset.'));
    }
  };
  fill(ctx.main,
    h('p', {}, h('a', { href: '/ui/groups' }, '‹ Groups')),
    h('h1', {}, group),
    tiles,
    h('h2', {}, 'Lag over time (last 6 minutes)'), chart,
    h('h2', {}, 'Committed offsets and lag'), parts,
    sharedBox,
    memberBox,
    h('h2', {}, 'Reset offsets'), resetBox);
  await refresh();
  ctx.every(2000, () => refresh().catch(() => {}));
}
