// Packages: the catalogue with search; a package's install options as a form generated from its config
// JSON schema; the rendered service definition; install once the services API is there.
import { api, available } from '../api.js';
import { h, clear, notAvailable } from '../dom.js';

export async function render(root, params) {
  root.append(h('h1', {}, 'Packages'));
  if (params[0]) return detail(root, params[0]);
  const q = h('input', { type: 'search', id: 'package-search', placeholder: 'search packages…' });
  const list = h('div', { class: 'grid', id: 'package-list' });
  root.append(h('div', { class: 'toolbar' }, q), list);
  async function search() {
    let packages;
    try { packages = (await api('/package/search', { method: 'POST', body: { query: q.value } })).packages; } catch (e) {
      if (e.status === 404) { clear(list, notAvailable('The package catalogue')); return; } throw e;
    }
    clear(list, packages.length ? packages.map((p) => h('div', { class: 'card click', 'data-package': p.name, style: 'cursor:pointer', onclick: () => { location.hash = `#/packages/${encodeURIComponent(p.name)}`; } },
      h('h2', {}, p.name, ' ', h('span', { class: 'muted' }, p.version)), h('p', {}, p.description), h('p', { class: 'muted' }, (p.tags || []).join(', ')))) : h('p', { class: 'muted' }, 'No package matches.'));
  }
  let t = null;
  q.addEventListener('input', () => { clearTimeout(t); t = setTimeout(search, 150); });
  await search();
}

// One input per schema leaf; objects become fieldsets. read() gives the options back, typed.
export function schemaForm(schema, path = []) {
  const props = (schema && schema.properties) || {};
  const readers = [];
  const el = h('div', {});
  for (const [key, s] of Object.entries(props)) {
    const p = [...path, key];
    const name = p.join('.');
    if (s.type === 'object' && s.properties) {
      const sub = schemaForm(s, p);
      el.append(h('fieldset', {}, h('legend', {}, key), s.description ? h('p', { class: 'muted' }, s.description) : null, sub.el));
      readers.push((out) => { const v = sub.read(); if (Object.keys(v).length) out[key] = v; });
      continue;
    }
    let input;
    if (Array.isArray(s.enum)) input = h('select', { name }, s.enum.map((v) => h('option', { value: String(v), selected: v === s.default }, String(v))));
    else if (s.type === 'boolean') input = h('input', { type: 'checkbox', name, checked: !!s.default });
    else if (s.type === 'integer' || s.type === 'number') input = h('input', { type: 'number', name, value: s.default ?? '', step: s.type === 'integer' ? '1' : 'any', min: s.minimum, max: s.maximum });
    else if (s.type === 'array' || s.type === 'object') input = h('input', { name, value: s.default !== undefined ? JSON.stringify(s.default) : '', placeholder: 'JSON' });
    else input = h('input', { name, value: s.default ?? '', size: 40 });
    el.append(h('label', { class: 'field' }, h('span', {}, key), input, s.description ? h('small', {}, s.description) : null));
    readers.push((out) => {
      if (input.type === 'checkbox') { out[key] = input.checked; return; }
      const v = input.value;
      if (v === '') return;
      if (s.type === 'integer') out[key] = parseInt(v, 10);
      else if (s.type === 'number') out[key] = Number(v);
      else if (s.type === 'array' || s.type === 'object') out[key] = JSON.parse(v);
      else if (Array.isArray(s.enum) && typeof s.enum[0] === 'number') out[key] = Number(v);
      else out[key] = v;
    });
  }
  return { el, read: () => { const out = {}; for (const r of readers) r(out); return out; } };
}

async function detail(root, name) {
  const d = await api('/package/describe', { method: 'POST', body: { packageName: name } });
  const pkg = d.package.package;
  const form = schemaForm(d.config);
  const out = h('pre', { class: 'log', id: 'rendered', style: 'height:260px' });
  const err = h('p', { class: 'error', id: 'package-error' });
  const canInstall = await available('/v2/apps');
  const status = h('p', { id: 'install-status' });
  const renderIt = async () => {
    err.textContent = '';
    try {
      const r = await api('/package/render', { method: 'POST', body: { packageName: name, options: form.read() } });
      out.textContent = JSON.stringify(r.marathonJson, null, 2);
      return r.marathonJson;
    } catch (e) { err.textContent = e.message; return null; }
  };
  const install = async () => {
    const options = form.read();
    try {
      try {
        await api('/package/install', { method: 'POST', body: { packageName: name, options } });
      } catch (e) {
        if (e.status !== 404) throw e;
        const app = await renderIt();
        if (!app) return;
        await api('/v2/apps', { method: 'POST', body: app });
      }
      status.textContent = 'Installed: see Services.';
    } catch (e) { err.textContent = e.message; }
  };
  root.append(h('p', {}, h('a', { href: '#/packages' }, '← Packages')),
    h('div', { class: 'card' }, h('h2', {}, pkg.name, ' ', h('span', { class: 'muted' }, pkg.version)), h('p', {}, pkg.description || ''),
      h('p', { class: 'muted' }, `versions: ${(d.versions || []).join(', ')}`)),
    h('div', { class: 'card', id: 'install-form' }, h('h2', {}, 'Options'), form.el, err,
      h('div', { class: 'toolbar' }, h('button', { class: 'secondary', id: 'render', onclick: renderIt }, 'Preview service definition'),
        canInstall ? h('button', { id: 'install', onclick: install }, 'Install') : h('span', { class: 'muted' }, 'Install needs the services API, which this master does not serve yet.')),
      status, out));
}
