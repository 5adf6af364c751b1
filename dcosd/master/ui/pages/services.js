// Services (Marathon v2 API): list with health and instances; create from a form or JSON; scale, restart,
// suspend, delete; versions and rollback; running deployments with their progress, live.
import { api, available } from '../api.js';
import { h, clear, fmt, badge, notAvailable } from '../dom.js';

const enc = (id) => id.split('/').filter(Boolean).map(encodeURIComponent).join('/');

function health(a) {
  if ((a.tasksUnhealthy || 0) > 0) return badge('unhealthy');
  if ((a.deployments || []).length) return badge('deploying', 'QUEUED');
  if (a.instances === 0) return badge('suspended', 'TASK_KILLED');
  return (a.tasksRunning || 0) >= a.instances ? badge('healthy') : badge('waiting', 'QUEUED');
}
async function act(fn) { try { await fn(); } catch (e) { alert(e.message); } }

export async function render(root, params, bus) {
  root.append(h('h1', {}, 'Services'));
  if (!(await available('/v2/apps'))) {
    root.append(notAvailable('Services', 'The services framework (Marathon /v2 API) is not running on this master yet.'));
    return;
  }
  if (params[0]) return detail(root, '/' + params.join('/'), bus);
  const deps = h('div', { class: 'card', id: 'deployments' });
  const list = h('div', { class: 'card', id: 'apps' });
  const create = h('div', { class: 'card', id: 'create', hidden: true });
  root.append(h('div', { class: 'toolbar' }, h('button', { id: 'new-service', onclick: () => { create.hidden = !create.hidden; } }, 'New service')), create, deps, list);
  buildCreate(create, () => { create.hidden = true; load(); });

  async function load() {
    const [{ apps }, d] = await Promise.all([api('/v2/apps'), api('/v2/deployments').catch(() => [])]);
    clear(list, h('h2', {}, 'Services'), apps.length ? h('table', {}, h('thead', {}, h('tr', {}, ['ID', 'Status', 'Instances', 'Healthy', 'CPUs', 'Mem', 'Actions'].map((x) => h('th', {}, x)))),
      h('tbody', {}, apps.map((a) => h('tr', { 'data-app': a.id },
        h('td', {}, h('a', { href: `#/services${a.id}` }, a.id)), h('td', {}, health(a)),
        h('td', { class: 'instances' }, `${a.tasksRunning || 0} / ${a.instances}`), h('td', {}, `${a.tasksHealthy || 0}`),
        h('td', {}, fmt.num(a.cpus, 2)), h('td', {}, fmt.num(a.mem, 0)),
        h('td', {}, actions(a, load))))))
      : h('p', { class: 'muted' }, 'No services yet.'));
    clear(deps, h('h2', {}, 'Deployments'), d.length ? d.map((x) => {
      const frac = x.totalSteps ? (x.currentStep - 1 + 0.5) / x.totalSteps : 0;
      return h('div', { 'data-deployment': x.id }, h('div', {}, (x.affectedApps || []).join(', '), ' — step ', x.currentStep, ' of ', x.totalSteps, ' ',
        h('span', { class: 'muted' }, (x.currentActions || []).map((c) => `${c.action} ${c.app}`).join(', '))),
      h('div', { class: 'progress' }, h('div', { style: `width:${Math.round(frac * 100)}%` })));
    }) : h('p', { class: 'muted', id: 'no-deployments' }, 'No deployment running.'));
  }
  await load();
  let timer = null;
  const iv = setInterval(load, 5000);
  bus.on(() => { if (!timer) timer = setTimeout(() => { timer = null; load(); }, 250); });
  return { dispose() { clearTimeout(timer); clearInterval(iv); } };
}

function actions(a, after) {
  const scale = h('button', { class: 'secondary', onclick: () => { const n = prompt(`Instances of ${a.id}:`, a.instances); if (n !== null) act(async () => { await api(`/v2/apps/${enc(a.id)}`, { method: 'PUT', body: { instances: Number(n) } }); after(); }); } }, 'Scale');
  const restart = h('button', { class: 'secondary', onclick: () => act(async () => { await api(`/v2/apps/${enc(a.id)}/restart`, { method: 'POST', body: {} }); after(); }) }, 'Restart');
  const suspend = h('button', { class: 'secondary', onclick: () => act(async () => { await api(`/v2/apps/${enc(a.id)}`, { method: 'PUT', body: { instances: 0 } }); after(); }) }, 'Suspend');
  const del = h('button', { class: 'danger', onclick: () => { if (confirm(`Delete ${a.id}?`)) act(async () => { await api(`/v2/apps/${enc(a.id)}`, { method: 'DELETE' }); after(); }); } }, 'Delete');
  return h('span', { class: 'toolbar', style: 'margin:0' }, scale, restart, suspend, del);
}

function buildCreate(root, done) {
  const f = {
    id: h('input', { name: 'id', placeholder: '/web', required: true }),
    cmd: h('input', { name: 'cmd', placeholder: 'python3 -m http.server $PORT0', size: 50 }),
    instances: h('input', { name: 'instances', type: 'number', value: '1', min: '0' }),
    cpus: h('input', { name: 'cpus', type: 'number', value: '0.1', step: '0.05', min: '0' }),
    mem: h('input', { name: 'mem', type: 'number', value: '32', min: '1' }),
    port: h('input', { name: 'port', type: 'checkbox' }),
    hc: h('input', { name: 'health', type: 'checkbox' }),
  };
  const json = h('textarea', { rows: 12, name: 'json' });
  const err = h('p', { class: 'error' });
  const mode = { v: 'form' };
  const form = h('div', {}, Object.entries({ 'ID': f.id, 'Command': f.cmd, 'Instances': f.instances, 'CPUs': f.cpus, 'Memory (MB)': f.mem,
    'One port ($PORT0)': f.port, 'TCP health check': f.hc }).map(([k, el]) => h('label', { class: 'field' }, h('span', {}, k), el)));
  const fromForm = () => {
    const app = { id: f.id.value.startsWith('/') ? f.id.value : `/${f.id.value}`, cmd: f.cmd.value, instances: Number(f.instances.value),
      cpus: Number(f.cpus.value), mem: Number(f.mem.value) };
    if (f.port.checked || f.hc.checked) app.portDefinitions = [{ port: 0, protocol: 'tcp' }];
    if (f.hc.checked) app.healthChecks = [{ protocol: 'TCP', portIndex: 0, intervalSeconds: 2, gracePeriodSeconds: 10 }];
    return app;
  };
  const tabs = h('div', { class: 'tabs' },
    h('button', { class: 'on', onclick: (e) => { mode.v = 'form'; form.hidden = false; json.hidden = true; sel(e); } }, 'Form'),
    h('button', { onclick: (e) => { mode.v = 'json'; json.value = JSON.stringify(fromForm(), null, 2); form.hidden = true; json.hidden = false; sel(e); } }, 'JSON'));
  const sel = (e) => { for (const b of tabs.children) b.classList.toggle('on', b === e.target); };
  json.hidden = true;
  root.append(h('h2', {}, 'New service'), tabs, form, json, err,
    h('button', { id: 'create-service', onclick: () => act(async () => {
      err.textContent = '';
      let app;
      try { app = mode.v === 'json' ? JSON.parse(json.value) : fromForm(); } catch (e) { err.textContent = `JSON: ${e.message}`; return; }
      try { await api('/v2/apps', { method: 'POST', body: app }); done(); } catch (e) { err.textContent = e.message; }
    }) }, 'Create'));
}

async function detail(root, id, bus) {
  const body = h('div', {});
  root.append(h('p', {}, h('a', { href: '#/services' }, '← Services')), body);
  async function load() {
    const { app } = await api(`/v2/apps/${enc(id)}?embed=app.tasks`);
    const versions = await api(`/v2/apps/${enc(id)}/versions`).then((v) => v.versions || []).catch(() => []);
    clear(body, h('h1', {}, app.id, ' ', health(app)),
      h('div', { class: 'card' }, h('dl', { class: 'kv' },
        h('dt', {}, 'Instances'), h('dd', {}, `${app.tasksRunning || 0} running of ${app.instances} (${app.tasksHealthy || 0} healthy)`),
        h('dt', {}, 'Command'), h('dd', {}, h('code', {}, app.cmd || (app.args || []).join(' '))),
        h('dt', {}, 'Resources'), h('dd', {}, `cpus ${app.cpus}, mem ${app.mem} MB`), h('dt', {}, 'Version'), h('dd', {}, app.version || '-')),
      h('p', {}, actions(app, load))),
      h('div', { class: 'card' }, h('h2', {}, 'Tasks'), h('table', {}, h('tbody', {}, (app.tasks || []).map((t) =>
        h('tr', { class: 'click', onclick: () => { location.hash = `#/tasks/${encodeURIComponent(t.id)}`; } }, h('td', {}, t.id), h('td', {}, t.host || ''), h('td', {}, badge(t.state || 'TASK_RUNNING'))))))),
      h('div', { class: 'card' }, h('h2', {}, 'Versions'), h('table', {}, h('tbody', {}, versions.map((v) => h('tr', {}, h('td', {}, v),
        h('td', {}, v === app.version ? h('span', { class: 'muted' }, 'current') : h('button', { class: 'secondary', onclick: () => act(async () => {
          const old = await api(`/v2/apps/${enc(id)}/versions/${encodeURIComponent(v)}`);
          for (const k of ['version', 'versionInfo', 'tasks', 'deployments', 'tasksRunning', 'tasksStaged', 'tasksHealthy', 'tasksUnhealthy', 'lastTaskFailure']) delete old[k];
          await api(`/v2/apps/${enc(id)}`, { method: 'PUT', body: old }); load();
        }) }, 'Roll back to this'))))))));
  }
  await load();
  let timer = null;
  bus.on(() => { if (!timer) timer = setTimeout(() => { timer = null; load(); }, 300); });
  return { dispose() { clearTimeout(timer); } };
}
