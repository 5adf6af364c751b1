// Tiny DOM helpers: h() builds elements, svg() builds SVG, fmt.* formats numbers and times.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  return fill(el, attrs, children);
}
const SVGNS = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVGNS, tag), attrs, children, true);
}
function fill(el, attrs, children, isSvg) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class' && !isSvg) el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k in el && !isSvg && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
export function clear(el, ...children) { el.replaceChildren(); for (const c of children.flat()) if (c) el.append(c); return el; }
export const fmt = {
  num: (n, d = 1) => (n === undefined || n === null) ? '-' : (Math.round(n * 10 ** d) / 10 ** d).toString(),
  mb: (n) => n >= 1024 ? `${fmt.num(n / 1024)} GB` : `${fmt.num(n, 0)} MB`,
  when: (t) => t ? new Date(t * 1000).toLocaleString() : '-',
  ago: (t) => { if (!t) return '-'; const s = Date.now() / 1000 - t; return s < 60 ? `${Math.max(0, s | 0)}s ago` : s < 3600 ? `${s / 60 | 0}m ago` : `${s / 3600 | 0}h ago`; },
  state: (s) => (s || '').replace(/^TASK_/, ''),
};
export function badge(text, cls) { return h('span', { class: `badge ${cls || text}` }, fmt.state(text)); }
export function notAvailable(what, detail) {
  return h('div', { class: 'na', 'data-na': what }, h('strong', {}, `${what} is not available on this master.`),
    h('p', {}, detail || 'This dcosd master does not serve that API yet; the rest of the UI works without it.'));
}
