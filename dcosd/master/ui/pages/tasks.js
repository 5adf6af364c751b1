// Tasks: a virtualised table (only the rows in view are in the DOM, so 1,000s stay smooth),
// patched live from events; a task's page with its status history and a log viewer that follows.
import { api, stream } from '../api.js';
import { h, clear, fmt, badge } from '../dom.js';

const ROW = 28;
const ACTIVE = new Set(['QUEUED', 'TASK_STAGING', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_KILLING', 'TASK_UNREACHABLE']);

export async function render(root, params, bus) {
  if (params[0]) return detail(root, params[0], bus);
  const tasks = new Map();
  const nodes = new Map();
  let rows = [];
  const filter = h('input', { id: 'task-filter', placeholder: 'filter by id, name, node…', type: 'search' });
  const which = h('select', { id: 'task-which' }, h('option', { value: 'active' }, 'active'), h('option', { value: 'all' }, 'all'));
  const count = h('span', { class: 'muted', id: 'task-count' });
  const vt = h('div', { class: 'vt', id: 'task-table' });
  const spacer = h('div', { style: 'position:relative' });
  vt.append(spacer);
  root.append(h('h1', {}, 'Tasks'), h('div', { class: 'toolbar' }, filter, which, h('span', { class: 'spacer' }), count),
    h('div', { class: 'vt-head' }, ['Task', 'Name', 'State', 'Node', 'CPUs', 'Mem'].map((x) => h('span', {}, x))), vt);

  async function load() {
    const [t, n] = await Promise.all([api(`/dcosd/v1/tasks?limit=100000${which.value === 'all' ? '&all=1' : ''}`), api('/dcosd/v1/nodes')]);
    tasks.clear();
    for (const x of t.tasks) tasks.set(x.id, slim(x));
    nodes.clear();
    for (const x of n.nodes) nodes.set(x.id, x.hostname);
    refilter();
  }
  function slim(x) {
    const res = x.resources || (x.spec && x.spec.resources) || {};
    return { id: x.id, name: x.name || (x.spec && x.spec.name) || '', state: x.state, agent_id: x.agent_id || null,
      cpus: res.cpus, mem: res.mem, t: x.created_at || x.submitted_at || 0 };
  }
  function refilter() {
    const q = filter.value.trim().toLowerCase();
    rows = [...tasks.values()].filter((x) => (which.value === 'all' || ACTIVE.has(x.state)) &&
      (!q || x.id.toLowerCase().includes(q) || x.name.toLowerCase().includes(q) || (nodes.get(x.agent_id) || '').toLowerCase().includes(q)));
    rows.sort((a, b) => b.t - a.t || (a.id < b.id ? -1 : 1));
    count.textContent = `${rows.length} task${rows.length === 1 ? '' : 's'}`;
    spacer.style.height = `${rows.length * ROW}px`;
    draw(true);
  }
  let drawn = '';
  function draw(force) {
    const first = Math.max(0, Math.floor(vt.scrollTop / ROW) - 10);
    const last = Math.min(rows.length, first + Math.ceil((vt.clientHeight || 560) / ROW) + 20);
    const key = `${first}:${last}`;
    if (!force && key === drawn) return;
    drawn = key;
    const out = [];
    for (let i = first; i < last; i++) {
      const x = rows[i];
      out.push(h('div', { class: 'row', style: `top:${i * ROW}px`, 'data-task': x.id, onclick: () => { location.hash = `#/tasks/${encodeURIComponent(x.id)}`; } },
        h('span', { title: x.id }, x.id), h('span', {}, x.name), h('span', {}, badge(x.state)),
        h('span', {}, nodes.get(x.agent_id) || '-'), h('span', {}, fmt.num(x.cpus, 2)), h('span', {}, fmt.num(x.mem, 0))));
    }
    spacer.replaceChildren(...out);
  }
  vt.addEventListener('scroll', () => draw(false), { passive: true });
  filter.addEventListener('input', refilter);
  which.addEventListener('change', load);
  await load();

  let pending = false;
  const later = () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; refilter(); }); } };
  bus.on((e) => {
    if (e.kind === 'resync' || e.kind === 'agent_register') { load(); return; }
    if (e.kind === 'task_submit') tasks.set(e.task_id, { id: e.task_id, name: e.name || '', state: 'QUEUED', agent_id: null, t: e.time });
    else if (e.kind === 'task_place') { const x = tasks.get(e.task_id); if (x) Object.assign(x, { state: 'TASK_STAGING', agent_id: e.agent_id }); else { load(); return; } }
    else if (e.updates) for (const [id, st] of e.updates) { const x = tasks.get(id); if (x) x.state = st; }
    else if (e.kind === 'framework_launch') { load(); return; }
    else return;
    later();
  });
}

async function detail(root, id, bus) {
  const info = h('div', { class: 'card', id: 'task-info' });
  const log = h('pre', { class: 'log', id: 'task-log' });
  const tabs = h('div', { class: 'tabs' });
  const status = h('span', { class: 'muted', id: 'log-status' });
  root.append(h('p', {}, h('a', { href: '#/tasks' }, '← Tasks')), h('h1', {}, 'Task ', h('code', {}, id)), info,
    h('div', { class: 'card' }, h('div', { class: 'toolbar' }, h('h2', { style: 'margin:0' }, 'Logs'), tabs, h('span', { class: 'spacer' }), status), log));
  let ctrl = null;
  async function load() {
    const t = await api(`/dcosd/v1/tasks/${encodeURIComponent(id)}`);
    const res = t.resources || t.spec.resources || {};
    const cmd = t.spec.argv ? t.spec.argv.join(' ') : (t.spec.command || t.spec.cmd || '');
    clear(info, h('dl', { class: 'kv' },
      h('dt', {}, 'State'), h('dd', { id: 'task-state' }, badge(t.state), t.message ? h('span', { class: 'muted' }, ' ', t.message) : null),
      h('dt', {}, 'Name'), h('dd', {}, t.name || ''), h('dt', {}, 'Command'), h('dd', {}, h('code', {}, cmd)),
      h('dt', {}, 'Node'), h('dd', {}, t.agent_id ? h('a', { href: `#/nodes/${t.agent_id}` }, t.agent_id) : '-'),
      h('dt', {}, 'Resources'), h('dd', {}, `cpus ${fmt.num(res.cpus, 2)}, mem ${fmt.num(res.mem, 0)} MB, disk ${fmt.num(res.disk || 0, 0)} MB`),
      h('dt', {}, 'Exit code'), h('dd', {}, t.exit_code ?? '-')),
      h('h3', {}, 'History'), h('table', {}, h('tbody', {}, (t.statuses || []).map((s) =>
        h('tr', {}, h('td', {}, fmt.when(s.timestamp)), h('td', {}, badge(s.state)), h('td', {}, s.reason || ''), h('td', {}, s.message || ''))))));
    return t;
  }
  async function follow(which) {
    if (ctrl) ctrl.abort();
    ctrl = new AbortController();
    for (const b of tabs.children) b.classList.toggle('on', b.textContent === which);
    log.textContent = '';
    status.textContent = 'following…';
    try {
      await stream(`/dcosd/v1/tasks/${encodeURIComponent(id)}/logs/${which}?offset=0&follow=1`, (text) => {
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.append(text);
        if (atEnd) log.scrollTop = log.scrollHeight;
      }, { signal: ctrl.signal });
      status.textContent = 'ended';
    } catch (e) {
      if (e.name !== 'AbortError') status.textContent = e.message;
    }
  }
  tabs.append(...['stdout', 'stderr'].map((s) => h('button', { onclick: () => follow(s) }, s)));
  const t = await load();
  if (t.agent_id) follow('stdout'); else status.textContent = 'not placed yet: no output';
  bus.on((e) => {
    if (e.kind === 'resync' || (e.updates && e.updates.some((u) => u[0] === id)) || e.task_id === id) {
      load().then((x) => { if (x.agent_id && !ctrl) follow('stdout'); });
    }
  });
  return { dispose() { if (ctrl) ctrl.abort(); } };
}
