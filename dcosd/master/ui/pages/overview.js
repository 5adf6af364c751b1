// Cluster at a glance: CPU, memory, disk used/total (and per node), tasks by state, service health, recent events.
import { api, available } from '../api.js';
import { gauge, bars } from '../charts.js';
import { h, clear, fmt, badge } from '../dom.js';

export async function render(root, _params, bus) {
  const top = h('div', { class: 'grid', id: 'gauges' });
  const perNode = h('div', { class: 'grid', id: 'per-node' });
  const tasks = h('div', { class: 'card', id: 'task-counts' });
  const services = h('div', { class: 'card', id: 'service-health' });
  const events = h('ul', { class: 'events', id: 'events' });
  root.append(h('h1', {}, 'Cluster overview'), top, perNode,
    h('div', { class: 'grid' }, tasks, services, h('div', { class: 'card' }, h('h2', {}, 'Recent events'), events)));

  async function load() {
    const [c, n] = await Promise.all([api('/dcosd/v1/cluster'), api('/dcosd/v1/nodes')]);
    const t = c.resources.total, u = c.resources.used;
    clear(top, gauge('CPU', u.cpus || 0, t.cpus || 0), gauge('Memory', u.mem || 0, t.mem || 0, 'MB'),
      gauge('Disk', u.disk || 0, t.disk || 0, 'MB'),
      h('div', { class: 'card' }, h('h2', {}, 'Nodes'), h('div', { class: 'stat', id: 'node-count' }, `${c.agents.active} / ${c.agents.total}`),
        h('div', { class: 'muted' }, 'active / registered'),
        h('div', { class: 'muted' }, `masters: ${c.masters.length}, leader ${c.leader || '?'}`)));
    const active = n.nodes.filter((x) => x.state === 'ACTIVE');
    const row = (k) => active.map((x) => ({ label: x.hostname, used: x.used[k] || 0, total: x.resources[k] || 0 }));
    clear(perNode, bars('CPU per node', row('cpus')), bars('Memory per node', row('mem'), 'MB'), bars('Disk per node', row('disk'), 'MB'));
    const counts = Object.entries(c.tasks).filter(([, v]) => v).sort();
    clear(tasks, h('h2', {}, 'Tasks'), counts.length
      ? h('table', {}, h('tbody', {}, counts.map(([s, v]) => h('tr', {}, h('td', {}, badge(s)), h('td', { 'data-count': s }, v)))))
      : h('p', { class: 'muted' }, 'no tasks yet'));
  }
  async function loadServices() {
    if (!(await available('/v2/apps'))) {
      clear(services, h('h2', {}, 'Service health'), h('p', { class: 'muted' }, 'Services are not available on this master.'));
      return;
    }
    const { apps } = await api('/v2/apps');
    let healthy = 0, unhealthy = 0, deploying = 0;
    for (const a of apps) {
      if ((a.tasksUnhealthy || 0) > 0) unhealthy++; else healthy++;
      if ((a.deployments || []).length) deploying++;
    }
    clear(services, h('h2', {}, 'Service health'),
      h('p', {}, h('span', { class: 'stat ok' }, healthy), ' healthy  ', h('span', { class: 'stat error' }, unhealthy), ' unhealthy  ',
        h('span', { class: 'stat warn' }, deploying), ' deploying'));
  }
  function eventLine(e) {
    const what = e.task_id ? ` ${e.task_id}` : e.agent_id ? ` node ${e.hostname || e.agent_id}` : e.app_id ? ` ${e.app_id}` : e.id ? ` ${e.id}` : '';
    const extra = e.updates ? ` (${e.updates.length} update${e.updates.length > 1 ? 's' : ''}: ${e.updates.slice(0, 3).map((u) => fmt.state(u[1])).join(', ')})` : '';
    return h('li', {}, h('span', { class: 'muted' }, new Date(e.time * 1000).toLocaleTimeString(), ' '), e.kind.replace(/_/g, ' '), what, extra);
  }
  async function loadEvents() {
    const r = await api('/dcosd/v1/events/recent?limit=30');
    clear(events, r.events.map(eventLine));
  }
  await Promise.all([load(), loadServices(), loadEvents()]);
  let timer = null;
  bus.on((e) => {
    if (e.kind === 'resync') { load(); loadEvents(); return; }
    events.prepend(eventLine(e));
    while (events.children.length > 30) events.lastChild.remove();
    if (!timer) timer = setTimeout(() => { timer = null; load(); if (/app|deploy/.test(e.kind)) loadServices(); }, 300);
  });
  return { dispose() { clearTimeout(timer); } };
}
