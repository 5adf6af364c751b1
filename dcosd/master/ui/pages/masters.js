// Masters: the leader, every master's term, commit index and (seen from the leader) replication lag;
// a master this one's raft stream cannot reach shows as unreachable, as in `dcosd cluster status`.
// "Make leader" hands leadership to a follower (`dcosd cluster transfer-leader --to ID`).
import { api } from '../api.js';
import { h, clear } from '../dom.js';

function leadButton(m, after) {
  const b = h('button', { class: 'secondary', 'data-action': 'lead', 'data-id': m.id }, 'Make leader');
  b.addEventListener('click', async () => {
    if (!confirm(`Hand leadership to master ${m.id}? Writes pause for a moment.`)) return;
    b.disabled = true;
    try { await api('/dcosd/v1/cluster/leader', { method: 'POST', body: { to: m.id } }); }
    catch (e) { alert(e.message); }
    after();
  });
  return b;
}

export async function render(root, _params, bus) {
  const body = h('div', { class: 'card' });
  root.append(h('h1', {}, 'Masters'), body);
  async function load() {
    const c = await api('/dcosd/v1/cluster');
    const opt = (v) => (v === undefined || v === null ? '-' : v);
    const replicated = c.masters.length > 1 && c.masters.some((m) => m.leader);
    clear(body, h('p', {}, 'Leader: ', h('strong', { id: 'leader' }, c.leader || 'none elected')),
      h('table', {}, h('thead', {}, h('tr', {}, ['Master', 'ID', 'Role', 'Term', 'Commit index', 'Match index', 'Lag', ''].map((x) => h('th', {}, x)))),
        h('tbody', {}, c.masters.map((m) => h('tr', { 'data-master': m.url },
          h('td', {}, m.url), h('td', {}, opt(m.id)), h('td', {}, m.role || (m.leader ? 'leader' : m.reachable === false ? 'unreachable' : 'follower')),
          h('td', {}, m.term), h('td', {}, opt(m.commit_index)), h('td', {}, opt(m.match_index)), h('td', { class: 'lag' }, opt(m.lag)),
          h('td', {}, replicated && !m.leader && m.reachable !== false && m.id ? leadButton(m, load) : ''))))));
  }
  await load();
  const iv = setInterval(load, 3000);  // lag moves without commits of interest: a slow poll
  return { dispose() { clearInterval(iv); } };
}
