// The viewer's shell: routes (the URL's #fragment addresses a session, a step, a diff),
// the keyboard, the theme, and the live stream from a recording daemon.
//
//   #/                      Sessions
//   #/s/NAME                a run        #/s/NAME/step/N   ... with step N open
//   #/diff/A/B              a diff       #/diff/A/B/row/I  ... with row I open

import { api, events } from './api.js';
import { h, clear } from './dom.js';
import { SessionsPage } from './sessions.js';
import { RunPage } from './run.js';
import { DiffPage } from './diff.js';

const main = document.getElementById('main');
let page = null;

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const parts = raw === '' ? [] : raw.split('/').map((p) => {
    try {
      return decodeURIComponent(p);
    } catch (_) {
      return p;
    }
  });
  if (parts[0] === 's' && parts[1] !== undefined) {
    const step = parts[2] === 'step' ? Number(parts[3]) : null;
    return { page: 'run', key: 'run:' + parts[1], session: parts[1], step: Number.isFinite(step) ? step : null };
  }
  if (parts[0] === 'diff' && parts[1] !== undefined && parts[2] !== undefined) {
    const row = parts[3] === 'row' ? Number(parts[4]) : null;
    return { page: 'diff', key: `diff:${parts[1]}:${parts[2]}`, a: parts[1], b: parts[2], row: Number.isFinite(row) ? row : null };
  }
  return { page: 'sessions', key: 'sessions' };
}

function route() {
  const r = parseRoute();
  if (page && page.key === r.key) {
    page.onRoute(r);
    return;
  }
  if (page) page.destroy();
  clear(main);
  const Page = { sessions: SessionsPage, run: RunPage, diff: DiffPage }[r.page];
  page = new Page(main, r);
  page.key = r.key;
}

// --- keyboard ----------------------------------------------------------------------------

function typing(el) {
  return el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT');
}

document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (typing(document.activeElement)) {
    if (e.key === 'Escape' || (e.key === 'Enter' && document.activeElement.classList.contains('filter'))) {
      document.activeElement.blur();
      if (e.key === 'Escape' && page) page.onKey(e);
      e.preventDefault();
    }
    return;
  }
  if (e.key === 't') return toggleTheme();
  if (e.key === '?') return toggleHelp();
  if (e.key === '/') {
    e.preventDefault();
    if (page) page.focusFilter();
    return;
  }
  if (e.key === 'Escape' && !document.getElementById('keys').hidden) return toggleHelp();
  if (page && page.onKey(e)) e.preventDefault();
});

// --- theme -------------------------------------------------------------------------------

const THEME_KEY = 'tapedeck-theme';

function applyTheme(t) {
  document.documentElement.dataset.theme = t;
}

function toggleTheme() {
  const next = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
  applyTheme(next);
  try {
    localStorage.setItem(THEME_KEY, next);
  } catch (_) { /* private mode: the choice lasts this page only */ }
}

function toggleHelp() {
  const k = document.getElementById('keys');
  k.hidden = !k.hidden;
}

let saved = null;
try {
  saved = localStorage.getItem(THEME_KEY);
} catch (_) { /* no storage */ }
applyTheme(saved || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'));
document.getElementById('theme').addEventListener('click', toggleTheme);
document.getElementById('help').addEventListener('click', toggleHelp);

// --- live --------------------------------------------------------------------------------

function connectLive() {
  const badge = document.getElementById('live');
  badge.hidden = false;
  events('live', (type, data) => {
    // A (re)connection may have missed exchanges: the page reloads what it shows.
    if (type === 'hello') {
      if (page) page.onLive({ reset: true });
    } else if (type === 'exchange') {
      let msg = null;
      try {
        msg = JSON.parse(data);
      } catch (_) {
        return;
      }
      if (page) page.onLive(msg);
    } else if (type === 'reset') {
      if (page) page.onLive({ reset: true });
    }
  }, (connected) => {
    badge.classList.toggle('on', connected);
    badge.title = connected ? 'Connected: exchanges appear as they are recorded' : 'Disconnected; reconnecting';
  });
}

async function start() {
  try {
    const info = await api('info');
    document.getElementById('source').textContent = info.source;
    if (info.live) connectLive();
  } catch (e) {
    main.append(h('p', { class: 'error', text: e.message }));
  }
}

window.addEventListener('hashchange', route);
route();
start();
