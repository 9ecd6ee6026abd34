// One topic: its partitions, the message browser, a test producer, delete.

import { api, enc } from './api.js';
import { fill, h, table, tile, toastError } from './dom.js';
import { bytes, num, retention } from './format.js';
import { messageBrowser } from './browser.js';
import { deleteTopic } from './topics.js';
import { navigate } from './app.js';

export async function topicPage(ctx, name) {
  document.title = `${name} · Topics · Obelisk`;
  const t = await api(`/topics/${enc(name)}`, { signal: ctx.signal });
  if (!ctx.alive) return;
  const tiles = h('div', { class: 'grid' });
  const parts = h('div', { id: 'partitions' });
  const del = h('button', { type: 'button', class: 'danger' }, 'Delete topic');
  del.onclick = async () => {
    try { if (await deleteTopic(name)) navigate('/ui/topics'); } catch (err) { toastError(err); }
  };
  const draw = (topic) => {
    fill(tiles,
      tile('Partitions', num(topic.partition_count)),
      tile('Records', num(topic.messages)),
      tile('Size', bytes(topic.size_bytes)),
      tile('Retention', retention(topic.retention_ms, topic.retention_bytes)));
    fill(parts, table(
      [{ label: 'partition', num: true }, { label: 'start', num: true }, { label: 'end', num: true }, { label: 'records', num: true }, { label: 'size', num: true }, { label: 'segments', num: true }, { label: 'state' }],
      topic.partitions.map((p) => [
        num(p.partition), num(p.log_start), num(p.log_end), num(p.messages), bytes(p.size_bytes), num(p.segments),
        p.read_only ? h('span', { class: 'pill s-unhealthy' }, 'read-only') : h('span', { class: 'pill s-healthy' }, 'writable'),
      ]),
    ));
  };
  draw(t);
  const browser = h('section', { id: 'browser' });
  fill(ctx.main,
    h('p', {}, h('a', { href: '/ui/topics' }, '‹ Topics')),
    h('h1', {}, name),
    tiles,
    h('h2', {}, 'Partitions'), parts,
    h('h2', {}, 'Messages'), browser,
    h('h2', {}, 'Danger zone'), h('div', { class: 'panel' }, del));
  messageBrowser(ctx, browser, t);
  ctx.every(5000, async () => {
    try {
      const fresh = await api(`/topics/${enc(name)}`, { signal: ctx.signal });
      if (ctx.alive) draw(fresh);
    } catch { /* shown on the next user action */ }
  });
}
