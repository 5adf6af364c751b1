// The master's HTTP API from the page: the operator token on every request, live events over SSE.
const KEY = 'dcosd.token';
export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};
export class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
let unauthorized = () => {};
export function onUnauthorized(fn) { unauthorized = fn; }

function headers(json, proxy) {
  const hd = {};
  const t = token.get();
  if (t) hd.Authorization = `Bearer ${t}`;
  if (json) hd['Content-Type'] = 'application/json';
  // A follower master answers writes with 307 to the leader, another origin a page cannot follow with
  // its token: ask it to forward them instead (dcosd/master/services/leader_proxy.py).
  if (proxy) hd['X-Dcosd-Proxy'] = 'leader';
  return hd;
}

export async function request(path, { method = 'GET', body, signal, proxy = false } = {}) {
  const r = await fetch(path, { method, headers: headers(body !== undefined, proxy), signal,
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)) });
  if (r.status === 401) { unauthorized(); throw new HttpError(401, 'operator token required'); }
  if (!r.ok) {
    let msg = r.statusText;
    try { const j = await r.json(); msg = j.message || j.error || JSON.stringify(j); } catch (_) { /* not JSON */ }
    throw new HttpError(r.status, msg);
  }
  return r;
}
export async function api(path, opts = {}) {
  const r = await request(path, { ...opts, proxy: true });  // whole answers only: streams are not proxied
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}
// Whether an optional API (services, jobs) exists on this master: 404 means absent.
const known = new Map();
export async function available(path) {
  if (known.has(path)) return known.get(path);
  let ok;
  try { await api(path); ok = true; } catch (e) { if (e.status === 404 || e.status === 405) ok = false; else throw e; }
  known.set(path, ok);
  return ok;
}
// A streamed response, chunk by chunk as text (task logs with follow=1, exec output).
export async function stream(path, onText, opts = {}) {
  const r = await request(path, opts);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    onText(dec.decode(value, { stream: true }), r);
  }
}
// Server-sent events over fetch (EventSource cannot send the Authorization header).
export function subscribe(onEvent, onStatus) {
  let stopped = false, ctrl = null;
  async function loop() {
    while (!stopped) {
      ctrl = new AbortController();
      let buf = '';
      try {
        await stream('/dcosd/v1/events', (text) => {
          buf += text;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i); buf = buf.slice(i + 2);
            const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
            if (!data) continue;
            const ev = JSON.parse(data);
            if (ev.kind === 'hello') onStatus('up', ev); else onEvent(ev);
          }
        }, { signal: ctrl.signal });
      } catch (e) { if (e.status === 401) { stopped = true; } }
      if (stopped) break;
      onStatus('down');
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  loop();
  return () => { stopped = true; if (ctrl) ctrl.abort(); };
}
