// Jobs (Metronome-style /v1/jobs): definitions, run now, run history.
import { api, available } from '../api.js';
import { h, clear, fmt, notAvailable } from '../dom.js';

export async function render(root, _params, bus) {
  root.append(h('h1', {}, 'Jobs'));
  if (!(await available('/v1/jobs'))) {
    root.append(notAvailable('Jobs', 'The jobs framework (/v1/jobs) is not running on this master yet.'));
    return;
  }
  const body = h('div', { class: 'card', id: 'jobs' });
  root.append(body);
  async function load() {
    const jobs = await api('/v1/jobs?embed=history&embed=activeRuns');
    const list = Array.isArray(jobs) ? jobs : (jobs.jobs || []);
    clear(body, list.length ? h('table', {}, h('thead', {}, h('tr', {}, ['Job', 'Schedule', 'Active', 'Last success', 'Last failure', 'Successes', 'Failures', ''].map((x) => h('th', {}, x)))),
      h('tbody', {}, list.map((j) => {
        const hist = j.history || {};
        const sched = (j.schedules || []).map((s) => s.cron).join(', ') || '-';
        return h('tr', { 'data-job': j.id }, h('td', {}, j.id), h('td', {}, sched), h('td', {}, (j.activeRuns || []).length),
          h('td', {}, hist.lastSuccessAt || '-'), h('td', {}, hist.lastFailureAt || '-'), h('td', {}, hist.successCount ?? '-'), h('td', {}, hist.failureCount ?? '-'),
          h('td', {}, h('button', { onclick: async () => { try { await api(`/v1/jobs/${encodeURIComponent(j.id)}/runs`, { method: 'POST', body: {} }); load(); } catch (e) { alert(e.message); } } }, 'Run now')));
      }))) : h('p', { class: 'muted' }, 'No jobs defined.'), h('p', { class: 'muted' }, `updated ${fmt.when(Date.now() / 1000)}`));
  }
  await load();
  let timer = null;
  bus.on(() => { if (!timer) timer = setTimeout(() => { timer = null; load(); }, 500); });
  return { dispose() { clearTimeout(timer); } };
}
