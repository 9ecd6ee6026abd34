// Calls to the broker's REST API. Every call sends `Authorization: Bearer <token>` once a token
// is known; a 401 asks for one (kept in sessionStorage, for this tab only) and retries.

const TOKEN_KEY = 'obelisk.console.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

let asking = null;

/** One dialog for all the calls that got a 401 at the same time. */
function askToken(hadToken) {
  if (!asking) {
    asking = new Promise((resolve) => {
      const d = document.getElementById('token-dialog');
      const input = d.querySelector('input[name="token"]');
      input.value = '';
      d.querySelector('p').textContent = hadToken
        ? 'The broker refused the token (401). Enter another API token; it is kept for this browser tab only.'
        : 'The broker answered 401: it needs an API token. It is kept for this browser tab only.';
      d.returnValue = '';
      d.showModal();
      d.addEventListener('close', () => {
        const t = d.returnValue === 'ok' ? input.value.trim() : '';
        if (t) sessionStorage.setItem(TOKEN_KEY, t);
        window.dispatchEvent(new Event('obelisk-token'));
        asking = null;
        resolve(t);
      }, { once: true });
    });
  }
  return asking;
}

export function hasToken() {
  return Boolean(sessionStorage.getItem(TOKEN_KEY));
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * `api('/topics', {method, body, accept: [503]})` (`rawBody`: JSON text sent as is): resolves with the parsed JSON (null for an
 * empty body); rejects with an ApiError carrying the server's error code and message. Statuses
 * in `accept` resolve too (e.g. /health's 503 report).
 */
export async function api(path, { method = 'GET', body, rawBody, accept = [], signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const payload = rawBody !== undefined ? rawBody : body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined) headers['Content-Type'] = 'application/json';
    const resp = await fetch(path, {
      method, headers, signal, body: payload,
    });
    if (resp.status === 401 && attempt < 3) {
      const t = await askToken(Boolean(token));
      if (t) continue;
    }
    const text = await resp.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    if (resp.ok || accept.includes(resp.status)) return json;
    const err = json && json.error;
    throw new ApiError(resp.status, err ? err.code : `http_${resp.status}`, err ? err.message : `${method} ${path}: HTTP ${resp.status}`);
  }
}

export const enc = encodeURIComponent;
