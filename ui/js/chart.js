// A small SVG line chart: time on x, values on y, up to three series.

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/**
 * Draws into `el`: `series` = [{name, points: [[t_ms, value]…]}], `format` labels the y axis.
 * The window is the last `windowMs` milliseconds.
 */
export function lineChart(el, series, { format = String, windowMs = 6 * 60_000, height = 180, label = 'chart' } = {}) {
  const W = Math.max(320, Math.round(el.clientWidth || 800));
  const H = height;
  const pad = { l: 56, r: 10, t: 10, b: 22 };
  const now = Math.max(Date.now(), ...series.flatMap((x) => x.points.map((p) => p[0])));
  const t0 = now - windowMs;
  const all = series.flatMap((x) => x.points.filter((p) => p[0] >= t0).map((p) => p[1]));
  const ymax = niceMax(Math.max(0, ...all));
  const x = (t) => pad.l + ((t - t0) / windowMs) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - (v / ymax) * (H - pad.t - pad.b);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(s('line', { class: 'grid-line', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
    svg.append(s('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, format(v)));
  }
  for (let m = 0; m <= windowMs / 60_000; m++) {
    const t = now - m * 60_000;
    svg.append(s('text', { x: x(t), y: H - 6, 'text-anchor': m === 0 ? 'end' : 'middle' }, m === 0 ? 'now' : `-${m}m`));
  }
  series.forEach((ser, i) => {
    const pts = ser.points.filter((p) => p[0] >= t0);
    if (!pts.length) return;
    const d = pts.map((p, j) => `${j ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
    svg.append(s('path', { class: `s${i}`, d, 'data-series': ser.name }));
  });
  const legend = document.createElement('div');
  legend.className = 'legend';
  series.forEach((ser, i) => {
    const item = document.createElement('span');
    item.className = `s${i}`;
    const last = ser.points.length ? ser.points[ser.points.length - 1][1] : null;
    item.append(document.createElement('i'), `${ser.name}${last === null ? '' : `: ${format(last)}`}`);
    legend.append(item);
  });
  el.classList.add('chart');
  el.replaceChildren(legend, svg);
}
