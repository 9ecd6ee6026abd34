// The console's router: pages under /ui/, links handled in the page (history API), each page
// rendered into <main> with a context whose timers and requests stop when the page is left.

import { api, forgetToken, hasToken } from './api.js';
import { fill, h } from './dom.js';
import { overviewPage } from './overview.js';
import { topicsPage } from './topics.js';
import { topicPage } from './topic.js';
import { groupsPage, groupPage } from './groups.js';

const routes = [
  [/^\/ui\/?$/, 'overview', overviewPage],
  [/^\/ui\/topics\/?$/, 'topics', topicsPage],
  [/^\/ui\/topics\/([^/]+)\/?$/, 'topics', topicPage],
  [/^\/ui\/groups\/?$/, 'groups', groupsPage],
  [/^\/ui\/groups\/([^/]+)\/?$/, 'groups', groupPage],
];

let current = null;

/** What a page gets: where to draw, a signal for its requests, timers cleared when it is left. */
class PageContext {
  constructor(main) {
    this.main = main;
    this.abort = new AbortController();
    this.signal = this.abort.signal;
    this.timers = [];
  }

  /** Calls `fn` every `ms` while the page is shown (not while the tab is hidden). */
  every(ms, fn) {
    const run = () => { if (!this.signal.aborted && !document.hidden) fn(); };
    this.timers.push(setInterval(run, ms));
  }

  get alive() { return !this.signal.aborted; }

  close() {
    this.abort.abort();
    this.timers.forEach(clearInterval);
  }
}

export function navigate(href, replace = false) {
  if (replace) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  render();
}

async function render() {
  const main = document.getElementById('main');
  if (current) current.close();
  const ctx = new PageContext(main);
  current = ctx;
  const path = location.pathname;
  const found = routes.find(([re]) => re.test(path));
  document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('active', Boolean(found) && a.dataset.nav === found[1]));
  if (!found) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'No console page at ', h('code', {}, path), '. ', h('a', { href: '/ui/' }, 'Overview')));
    document.title = 'Not found · Obelisk';
    return;
  }
  const [re, , page] = found;
  const args = path.match(re).slice(1).map(decodeURIComponent);
  fill(main, h('p', { class: 'muted' }, 'Loading…'));
  try {
    await page(ctx, ...args);
  } catch (err) {
    if (!ctx.alive) return;
    fill(main, h('h1', {}, 'Could not load this page'), h('p', { class: 'error-box' }, err.message || String(err)));
  }
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest && ev.target.closest('a[href]');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || a.target) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui')) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', render);

function showSignout() {
  document.getElementById('signout').hidden = !hasToken();
}
window.addEventListener('obelisk-token', showSignout);
document.getElementById('signout').addEventListener('click', () => { forgetToken(); location.reload(); });

async function headerHealth() {
  showSignout();
  const el = document.getElementById('health');
  try {
    const r = await api('/health', { accept: [503] });
    el.className = `pill s-${r.status}`;
    el.textContent = r.status;
  } catch {
    el.className = 'pill s-down';
    el.textContent = 'unreachable';
  }
}

headerHealth();
setInterval(() => { if (!document.hidden) headerHealth(); }, 5000);
render();
