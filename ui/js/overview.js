// Overview: component health, uptime, rates chart, disk, connections per protocol.

import { api } from './api.js';
import { lineChart } from './chart.js';
import { fill, h, table, tile } from './dom.js';
import { bytes, duration, num, rate } from './format.js';

function component(name, c) {
  const details = Object.entries(c.details || {}).map(([k, v]) => [
    h('dt', {}, k.replaceAll('_', ' ')),
    h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v)),
  ]);
  return h('div', { class: 'card', dataset: { component: name } },
    h('h3', {}, name.replaceAll('_', ' '), h('span', { class: `pill s-${c.status}` }, c.status)),
    h('dl', {}, details));
}

export async function overviewPage(ctx) {
  document.title = 'Overview · Obelisk';
  const tiles = h('div', { class: 'grid' });
  const chart = h('div', { class: 'panel', id: 'rates-chart' });
  const conns = h('div');
  const comps = h('div', { class: 'cards' });
  const status = h('span', { class: 'pill' }, '…');
  fill(ctx.main,
    h('h1', {}, 'Overview ', status),
    tiles,
    h('h2', {}, 'Produce and consume rates (records/s, last 6 minutes)'), chart,
    h('h2', {}, 'Connections'), conns,
    h('h2', {}, 'Components'), comps);

  const refresh = async () => {
    const [health, ov, hist] = await Promise.all([
      api('/health', { accept: [503], signal: ctx.signal }),
      api('/stats/overview', { signal: ctx.signal }),
      api('/stats/history', { signal: ctx.signal }),
    ]);
    if (!ctx.alive) return;
    status.className = `pill s-${health.status}`;
    status.textContent = health.status;
    const last = hist.samples[hist.samples.length - 1];
    fill(tiles,
      tile('Uptime', duration(ov.uptime_seconds), { title: `since ${ov.started_at}` }),
      tile('Disk used', bytes(ov.disk_bytes), { dataset: { stat: 'disk' } }),
      tile('Topics', num(ov.topics), { dataset: { stat: 'topics' } }),
      tile('Partitions', `${num(ov.partitions)}${ov.read_only_partitions ? ` (${ov.read_only_partitions} read-only)` : ''}`),
      tile('Records stored', num(ov.records)),
      tile('Segments', num(ov.segments)),
      tile('Consumer groups', num(ov.groups)),
      tile('Produce rate', last ? rate(last.produce_rate) : '—'),
      tile('Consume rate', last ? rate(last.consume_rate) : '—'));
    lineChart(chart, [
      { name: 'produced', points: hist.samples.map((x) => [x.t_ms, x.produce_rate]) },
      { name: 'consumed (committed)', points: hist.samples.map((x) => [x.t_ms, x.consume_rate]) },
    ], { format: (v) => num(Math.round(v)), label: 'produce and consume rates' });
    fill(conns, table(
      [{ label: 'protocol' }, { label: 'state' }, { label: 'open', num: true }, { label: 'limit', num: true }, { label: 'refused', num: true }],
      Object.entries(ov.connections).map(([p, c]) => [p, h('span', { class: `pill s-${c.state}` }, c.state), num(c.open), c.max ? num(c.max) : '—', num(c.refused)]),
    ));
    fill(comps, Object.entries(health.components).map(([n, c]) => component(n, c)));
  };
  await refresh();
  ctx.every(2000, () => refresh().catch(() => {}));
}
