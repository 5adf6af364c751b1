// The page: token login, a hash router over the pages, and one live event stream shared by them.
import { api, token, onUnauthorized, subscribe } from './api.js';
import { clear, h } from './dom.js';

const PAGES = {
  overview: () => import('./pages/overview.js'),
  services: () => import('./pages/services.js'),
  tasks: () => import('./pages/tasks.js'),
  nodes: () => import('./pages/nodes.js'),
  jobs: () => import('./pages/jobs.js'),
  packages: () => import('./pages/packages.js'),
  masters: () => import('./pages/masters.js'),
};
const main = document.getElementById('main');
const live = document.getElementById('live');
let current = null;      // {onEvent, dispose} of the page shown
let unsubscribe = null;
const listeners = new Set();

export const bus = {
  // Pages register for events while shown; 'resync' and reconnects make them reload their data.
  on(fn) { listeners.add(fn); return () => listeners.delete(fn); },
};

function emit(ev) { for (const fn of [...listeners]) { try { fn(ev); } catch (e) { console.error(e); } } }

async function route() {
  const [name, ...rest] = (location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  const page = PAGES[name] ? name : 'overview';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page);
  if (current && current.dispose) current.dispose();
  current = null;
  listeners.clear();
  const root = h('div', { 'data-view': page });
  clear(main, root);
  try {
    const mod = await PAGES[page]();
    current = (await mod.render(root, rest.map(decodeURIComponent), bus)) || null;
  } catch (e) {
    if (e.status !== 401) clear(root, h('p', { class: 'error' }, `Could not load ${page}: ${e.message}`));
  }
}

function showLogin(message) {
  const dlg = document.getElementById('login');
  document.getElementById('login-error').textContent = message || '';
  if (!dlg.open) dlg.showModal();
}

async function start() {
  try {
    await api('/dcosd/v1/cluster');
  } catch (e) {
    if (e.status === 401) return; // the login dialog is up
    clear(main, h('p', { class: 'error' }, `Cannot reach the master: ${e.message}`));
    return;
  }
  document.getElementById('logout').hidden = !token.get();
  if (unsubscribe) unsubscribe();
  unsubscribe = subscribe(emit, (status) => {
    live.className = `live ${status}`;
    live.textContent = status === 'up' ? 'live' : 'reconnecting…';
    if (status === 'up') emit({ kind: 'resync' });
  });
  window.addEventListener('hashchange', route);
  await route();
}

onUnauthorized(() => showLogin(token.get() ? 'That token was refused.' : ''));
document.getElementById('login-form').addEventListener('submit', (ev) => {
  const t = document.getElementById('login-token').value.trim();
  if (!t) { ev.preventDefault(); return; }
  token.set(t);
  start();
});
document.getElementById('logout').addEventListener('click', () => { token.clear(); location.reload(); });
start();
