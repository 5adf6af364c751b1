// Nodes: state, maintenance (drain/undrain), resources, attributes; a node's tasks; the record of node exec runs.
import { api } from '../api.js';
import { h, clear, fmt, badge } from '../dom.js';

const res = (u, t, k, mb) => `${mb ? fmt.mb(u[k] || 0) : fmt.num(u[k] || 0, 2)} / ${mb ? fmt.mb(t[k] || 0) : fmt.num(t[k] || 0, 2)}`;

async function maintenance() {
  try { return (await api('/dcosd/v1/maintenance')).nodes; } catch (e) { if (e.status === 404) return {}; throw e; }
}
function drainButton(n, drained, after) {
  const b = h('button', { class: drained ? 'secondary' : 'danger', 'data-action': drained ? 'undrain' : 'drain', 'data-node': n.hostname },
    drained ? 'Undrain' : 'Drain');
  b.addEventListener('click', async (ev) => {
    ev.stopPropagation();
    if (!drained && !confirm(`Drain ${n.hostname}? No new tasks will be placed there.`)) return;
    b.disabled = true;
    try { await api(`/dcosd/v1/nodes/${encodeURIComponent(n.id)}/${drained ? 'undrain' : 'drain'}`, { method: 'POST', body: {} }); }
    catch (e) { alert(e.message); }
    after();
  });
  return b;
}

export async function render(root, params, bus) {
  if (params[0]) return detail(root, params[0], bus);
  const body = h('div', { class: 'card' });
  const hist = h('div', { class: 'card', id: 'exec-history' });
  root.append(h('h1', {}, 'Nodes'), body, hist);
  async function load() {
    const [{ nodes }, m] = await Promise.all([api('/dcosd/v1/nodes'), maintenance()]);
    clear(body, h('table', { id: 'node-table' }, h('thead', {}, h('tr', {}, ['Node', 'IP', 'State', 'Maintenance', 'CPUs', 'Memory', 'Disk', 'Attributes', ''].map((x) => h('th', {}, x)))),
      h('tbody', {}, nodes.map((n) => h('tr', { class: 'click', 'data-node': n.hostname, onclick: () => { location.hash = `#/nodes/${n.id}`; } },
        h('td', { title: n.id }, n.hostname), h('td', {}, n.ip), h('td', {}, badge(n.state), n.connected ? '' : h('span', { class: 'muted' }, ' (disconnected)')),
        h('td', { class: 'maint' }, m[n.id] ? badge('draining') : h('span', { class: 'muted' }, '-')),
        h('td', {}, res(n.used, n.resources, 'cpus')), h('td', {}, res(n.used, n.resources, 'mem', true)), h('td', {}, res(n.used, n.resources, 'disk', true)),
        h('td', {}, Object.entries(n.attributes).map(([k, v]) => `${k}:${v}`).join(' ')),
        h('td', {}, drainButton(n, !!m[n.id], load)))))));
  }
  async function loadHistory() {
    let runs;
    try { runs = (await api('/dcosd/v1/exec/history?limit=20')).runs; } catch (e) { if (e.status === 404) return; throw e; }
    clear(hist, h('h2', {}, 'Commands run on nodes'), runs.length ? h('table', {}, h('thead', {}, h('tr', {}, ['When', 'Who', 'Command', 'Where', 'Result'].map((x) => h('th', {}, x)))),
      h('tbody', {}, runs.map((r) => h('tr', {}, h('td', {}, fmt.when(r.started_at)), h('td', {}, r.who), h('td', {}, h('code', {}, r.command.join(' '))),
        h('td', {}, r.targets.map((t) => t.task_id ? `task ${t.task_id}` : t.hostname).join(', ')),
        h('td', {}, r.finished_at === null ? 'running' : r.failed ? h('span', { class: 'error' }, `${r.failed} failed`) : h('span', { class: 'ok' }, 'ok'))))))
      : h('p', { class: 'muted' }, 'No command has been run with dcosd node exec yet.'));
  }
  await Promise.all([load(), loadHistory()]);
  let timer = null;
  bus.on((e) => {
    if (/^(agent_|node_|task_|resync|framework_launch)/.test(e.kind) && !timer) timer = setTimeout(() => { timer = null; load(); }, 300);
    if (/^exec_/.test(e.kind) || e.kind === 'resync') loadHistory();
  });
  return { dispose() { clearTimeout(timer); } };
}

async function detail(root, id, bus) {
  const body = h('div', {});
  root.append(h('p', {}, h('a', { href: '#/nodes' }, '← Nodes')), body);
  async function load() {
    const [n, m] = await Promise.all([api(`/dcosd/v1/nodes/${encodeURIComponent(id)}`), maintenance()]);
    clear(body, h('h1', {}, 'Node ', n.hostname, ' ', m[n.id] ? badge('draining') : badge(n.state)),
      h('div', { class: 'card' }, h('dl', { class: 'kv' },
        h('dt', {}, 'ID'), h('dd', {}, n.id), h('dt', {}, 'Address'), h('dd', {}, n.address),
        h('dt', {}, 'Backend'), h('dd', {}, `${n.backend.backend || '?'} (cgroup ${n.backend.cgroup_version || '?'})`),
        h('dt', {}, 'CPUs'), h('dd', {}, res(n.used, n.resources, 'cpus')), h('dt', {}, 'Memory'), h('dd', {}, res(n.used, n.resources, 'mem', true)),
        h('dt', {}, 'Disk'), h('dd', {}, res(n.used, n.resources, 'disk', true)),
        h('dt', {}, 'Attributes'), h('dd', {}, Object.entries(n.attributes).map(([k, v]) => `${k}:${v}`).join(' ') || '-'),
        h('dt', {}, 'Maintenance'), h('dd', { id: 'node-maint' }, m[n.id] ? `draining since ${fmt.when(m[n.id].since)}` : 'none', ' ', drainButton(n, !!m[n.id], load))),
      ),
      h('div', { class: 'card' }, h('h2', {}, `Tasks (${n.tasks.length})`), h('table', {}, h('tbody', {}, n.tasks.map((t) =>
        h('tr', { class: 'click', onclick: () => { location.hash = `#/tasks/${encodeURIComponent(t.id)}`; } },
          h('td', {}, t.id), h('td', {}, t.name), h('td', {}, badge(t.state)), h('td', {}, fmt.num(t.resources.cpus, 2)), h('td', {}, fmt.num(t.resources.mem, 0))))))));
  }
  await load();
  let timer = null;
  bus.on(() => { if (!timer) timer = setTimeout(() => { timer = null; load(); }, 300); });
  return { dispose() { clearTimeout(timer); } };
}
