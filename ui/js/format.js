// Formatting numbers, sizes, durations, and record bytes (text, JSON, hex).

const nf = new Intl.NumberFormat();
export const num = (n) => (n === null || n === undefined ? '—' : nf.format(n));

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function duration(seconds) {
  let s = Math.floor(seconds);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${hh}h ${m}m`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** Retention in ms as a person reads it; 0 is the server's default. */
export function retention(ms, bytesLimit) {
  const parts = [];
  if (ms) parts.push(duration(ms / 1000));
  if (bytesLimit) parts.push(bytes(bytesLimit));
  return parts.length ? parts.join(' / ') : 'server default';
}

export const rate = (r) => `${r >= 100 ? Math.round(r) : r.toFixed(1)}/s`;

export function localTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function b64ToBytes(b64) {
  const bin = atob(b64 || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** A classic hex dump: offset, 16 bytes, printable ASCII. */
export function hexDump(u8, max = 4096) {
  const lines = [];
  const n = Math.min(u8.length, max);
  for (let i = 0; i < n; i += 16) {
    const row = u8.subarray(i, Math.min(i + 16, n));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${i.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  if (u8.length > max) lines.push(`… ${u8.length - max} more bytes`);
  return lines.join('\n');
}

/** The value as shown in `mode` (text | json | hex). */
export function showValue(text, b64, mode) {
  if (mode === 'hex') return hexDump(b64ToBytes(b64));
  if (text === null || text === undefined) return `(binary, ${b64ToBytes(b64).length} bytes: choose hex)`;
  if (mode === 'json') {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return `(not JSON) ${text}`; }
  }
  return text;
}

/** Unix nanoseconds of a datetime-local input's value, as a decimal string (exact). */
export function localInputToNs(value) {
  const ms = new Date(value).getTime();
  if (Number.isNaN(ms)) return null;
  return `${ms}000000`;
}
