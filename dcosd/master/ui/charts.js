// Inline SVG charts: a gauge (used of total) and horizontal bars per node.
import { svg, h, fmt } from './dom.js';

export function gauge(label, used, total, unit) {
  const frac = total > 0 ? Math.min(1, used / total) : 0;
  const r = 42, c = 2 * Math.PI * r;
  const color = frac > 0.9 ? 'var(--bad)' : frac > 0.7 ? 'var(--warn)' : 'var(--acc)';
  const show = unit === 'MB' ? (v) => fmt.mb(v) : (v) => fmt.num(v, 2);
  return h('div', { class: 'card gauge', 'data-gauge': label },
    h('h2', {}, label),
    svg('svg', { width: 120, height: 120, viewBox: '0 0 120 120', role: 'img', 'aria-label': `${label} ${fmt.num(frac * 100, 0)}% used` },
      svg('circle', { cx: 60, cy: 60, r, fill: 'none', stroke: '#e6e9f0', 'stroke-width': 12 }),
      svg('circle', { cx: 60, cy: 60, r, fill: 'none', stroke: color, 'stroke-width': 12, 'stroke-dasharray': `${c * frac} ${c}`,
        transform: 'rotate(-90 60 60)', 'stroke-linecap': 'butt' }),
      svg('text', { x: 60, y: 66, 'text-anchor': 'middle', style: 'font-size:18px;fill:var(--fg)' }, `${fmt.num(frac * 100, 0)}%`)),
    h('div', { class: 'stat', 'data-used': used, 'data-total': total }, `${show(used)} / ${show(total)}`),
    h('div', { class: 'muted' }, 'used / total'));
}

// rows: [{label, used, total}] → one bar each
export function bars(title, rows, unit) {
  const W = 520, row = 22, top = 6, labelW = 130;
  const height = top * 2 + rows.length * row;
  const show = unit === 'MB' ? (v) => fmt.mb(v) : (v) => fmt.num(v, 2);
  const g = svg('svg', { width: '100%', height, viewBox: `0 0 ${W} ${height}`, preserveAspectRatio: 'xMinYMin meet' });
  rows.forEach((r, i) => {
    const y = top + i * row, frac = r.total > 0 ? Math.min(1, r.used / r.total) : 0, bw = W - labelW - 110;
    g.append(svg('text', { x: 0, y: y + 14 }, r.label.length > 18 ? r.label.slice(0, 17) + '…' : r.label),
      svg('rect', { x: labelW, y: y + 3, width: bw, height: 14, fill: '#e6e9f0', rx: 3 }),
      svg('rect', { x: labelW, y: y + 3, width: Math.max(0, bw * frac), height: 14, fill: 'var(--acc)', rx: 3 }),
      svg('text', { x: labelW + bw + 6, y: y + 14 }, `${show(r.used)} / ${show(r.total)}`));
  });
  return h('div', { class: 'card', 'data-bars': title }, h('h2', {}, title), rows.length ? g : h('p', { class: 'muted' }, 'no nodes'));
}
