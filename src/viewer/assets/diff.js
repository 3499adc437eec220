// The Diff page: two runs aligned step by step (the alignment of `tapedeck diff`), the
// first divergence marked, and for any row the request and response diffs path by path.

import { api } from './api.js';
import { h, hash, setCrumbs, num } from './dom.js';
import { VList } from './vlist.js';

const ROW = 30;
const RELATION = {
  same: 'same',
  response_changed: 'response differs',
  request_changed: 'request differs',
  only_a: 'only in A',
  only_b: 'only in B',
};

function enc(...parts) {
  return parts.map((p) => encodeURIComponent(String(p))).join('/');
}

export class DiffPage {
  constructor(root, route) {
    this.a = route.a;
    this.b = route.b;
    this.want = route.row;
    this.cursor = 0;
    this.sel = null;
    this.onlyChanges = false;
    this.rows = [];
    this.shown = [];
    setCrumbs([['Sessions', '#/'], [`${this.a} ⇄ ${this.b}`, null]]);
    this.head = h('header', { class: 'runhead' }, h('h1', {}, 'Diff'));
    this.banner = h('div', { class: 'banner' });
    this.filter = h('input', {
      class: 'filter', type: 'search', placeholder: 'Filter rows by name or #step  ( / )', 'aria-label': 'Filter rows',
      on: { input: () => this.apply() },
    });
    this.changesOnly = h('label', { class: 'check' },
      h('input', { type: 'checkbox', on: { change: (e) => { this.onlyChanges = e.target.checked; this.apply(); } } }),
      ' differences only');
    this.box = h('div', { class: 'vbox', role: 'grid', 'aria-label': 'Aligned steps' });
    this.panel = h('aside', { class: 'panel', 'aria-label': 'Row diff' },
      h('p', { class: 'muted hint', text: 'Pick a row (j / k, then enter) to see its request and response diffs.' }));
    this.el = h('section', { class: 'page diff' }, this.head, this.banner,
      h('div', { class: 'split' },
        h('div', { class: 'left' },
          h('div', { class: 'toolbar' }, this.filter, this.changesOnly),
          h('div', { class: 'drow dhead' },
            h('span', { class: 'khead', text: 'kind' }),
            h('span', { class: 'side' }, 'A: ', h('a', { href: hash('s', this.a), text: this.a })),
            h('span', { class: 'rel', text: '' }),
            h('span', { class: 'side' }, 'B: ', h('a', { href: hash('s', this.b), text: this.b }))),
          this.box),
        this.panel));
    root.append(this.el);
    this.list = new VList(this.box, ROW, (i) => this.renderRow(i));
    this.load();
  }

  async load() {
    let d;
    try {
      d = await api('diff/' + enc(this.a, this.b));
    } catch (e) {
      this.banner.replaceChildren(h('p', { class: 'error', text: e.message }));
      return;
    }
    if (!this.el.isConnected) return;
    this.data = d;
    this.rows = d.rows.map((r, i) => ({ ...r, i }));
    const s = d.summary;
    const stat = (label, value, cls) => h('span', { class: 'stat ' + (cls || '') }, h('b', { text: value }), ' ' + label);
    this.head.replaceChildren(h('h1', {}, 'Diff'),
      h('div', { class: 'stats' },
        stat('aligned', num(s.aligned)),
        stat('with another response', num(s.response_changed), s.response_changed ? 'warn' : ''),
        stat('with another request', num(s.request_changed), s.request_changed ? 'warn' : ''),
        stat('only in A', num(s.only_in_a.length), s.only_in_a.length ? 'bad' : ''),
        stat('only in B', num(s.only_in_b.length), s.only_in_b.length ? 'bad' : '')));
    const f = d.first_divergence;
    if (f) {
      const side = (x) => (x === null || x === undefined ? '–' : '#' + x);
      this.banner.replaceChildren(h('div', { class: 'divergence' },
        h('strong', { text: 'First divergence' }),
        ` at step ${side(f.step_a)} in A, ${side(f.step_b)} in B (${f.kind}): `,
        h('span', { text: f.reason }), ' ',
        h('button', { type: 'button', on: { click: () => this.select(d.first, true) } }, 'show')));
    } else {
      this.banner.replaceChildren(h('div', { class: 'divergence same', text: 'No divergence: every step matches, requests and responses.' }));
    }
    this.apply();
    const start = this.want !== null ? this.want : d.first;
    if (start !== null && start !== undefined) this.select(start, true);
  }

  apply() {
    const q = this.filter.value.trim().toLowerCase();
    this.shown = this.rows.filter((r) => {
      if (this.onlyChanges && r.relation === 'same') return false;
      if (!q) return true;
      const hay = [r.a && r.a.name, r.b && r.b.name, r.a && '#' + r.a.step, r.b && '#' + r.b.step, r.kind]
        .filter(Boolean).join(' ').toLowerCase();
      return hay.includes(q);
    });
    this.cursor = Math.min(this.cursor, Math.max(0, this.shown.length - 1));
    this.list.setCount(this.shown.length);
  }

  side(x) {
    if (!x) return h('span', { class: 'side none', text: '—' });
    const bad = x.error || (x.status && x.status >= 400);
    return h('span', { class: 'side', title: x.name },
      h('span', { class: 'stepno', text: '#' + x.step }), ' ',
      h('span', { class: 'label', text: x.name }), ' ',
      h('span', { class: 'status ' + (bad ? 'bad' : 'good'), text: x.error || x.status || '' }));
  }

  renderRow(vi) {
    const r = this.shown[vi];
    const cls = ['drow', 'row-' + r.relation];
    if (vi === this.cursor) cls.push('cursor');
    if (r.i === this.sel) cls.push('selected');
    if (r.i === this.data.first) cls.push('first');
    return h('div', {
      class: cls.join(' '), role: 'row', data: { row: r.i, relation: r.relation },
      on: { click: () => { this.cursor = vi; this.select(r.i, false); } },
    },
    h('span', { class: 'kind ' + r.kind, text: r.kind }),
    this.side(r.a),
    h('span', { class: 'rel', title: RELATION[r.relation] },
      r.i === this.data.first ? h('span', { class: 'firstmark', text: 'first divergence' }) : RELATION[r.relation]),
    this.side(r.b));
  }

  async select(i, scroll) {
    this.sel = i;
    const vi = this.shown.findIndex((r) => r.i === i);
    if (vi >= 0) {
      this.cursor = vi;
      if (scroll) this.list.center(vi); else this.list.reveal(vi);
    }
    this.list.draw();
    const target = hash('diff', this.a, this.b, 'row', i);
    if (location.hash !== target) history.pushState(null, '', target);
    const r = this.rows[i];
    if (!r) return;
    if (r.relation === 'same') {
      this.panel.replaceChildren(this.rowHead(r), h('p', { class: 'muted', text: 'Same request, same response.' }));
      return;
    }
    this.panel.replaceChildren(this.rowHead(r), h('p', { class: 'muted', text: 'Loading…' }));
    let d;
    try {
      d = await api('diff/' + enc(this.a, this.b, 'rows', i));
    } catch (e) {
      this.panel.replaceChildren(this.rowHead(r), h('p', { class: 'error', text: e.message }));
      return;
    }
    if (this.sel !== i) return;
    const dv = d.divergence;
    this.panel.replaceChildren(this.rowHead(r),
      h('p', { class: 'reason', text: dv.reason }),
      changes('Request', dv.request_diff),
      changes('Response', dv.response_diff));
  }

  rowHead(r) {
    return h('div', { class: 'rowhead' },
      h('span', { class: 'kind ' + r.kind, text: r.kind }), ' ',
      r.a ? h('a', { href: hash('s', this.a, 'step', r.a.step), text: `A #${r.a.step}` }) : 'not in A', ' ⇄ ',
      r.b ? h('a', { href: hash('s', this.b, 'step', r.b.step), text: `B #${r.b.step}` }) : 'not in B', ' · ',
      h('span', { class: 'rel-' + r.relation, text: RELATION[r.relation] }));
  }

  onRoute(r) {
    if (r.row !== null && r.row !== this.sel && this.data) this.select(r.row, true);
  }

  onKey(e) {
    const n = this.shown.length;
    if (e.key === 'j' || e.key === 'ArrowDown') this.cursor = Math.min(n - 1, this.cursor + 1);
    else if (e.key === 'k' || e.key === 'ArrowUp') this.cursor = Math.max(0, this.cursor - 1);
    else if (e.key === 'Enter' && n) { this.select(this.shown[this.cursor].i, false); return true; }
    else if (e.key === 'Escape') {
      if (this.filter.value) { this.filter.value = ''; this.apply(); } else location.hash = '#/';
      return true;
    } else return false;
    this.list.reveal(this.cursor);
    return true;
  }

  focusFilter() {
    this.filter.focus();
    this.filter.select();
  }

  onLive(msg) {
    if (!msg.reset && msg.session !== this.a && msg.session !== this.b) return;
    clearTimeout(this.liveTimer);
    this.liveTimer = setTimeout(() => { this.want = this.sel; this.load(); }, 500);
  }

  destroy() {
    clearTimeout(this.liveTimer);
    this.list.destroy();
  }
}

function value(v) {
  if (v === undefined) return h('span', { class: 'muted', text: '—' });
  const s = typeof v === 'string' ? v : JSON.stringify(v, null, 1);
  return h('pre', { class: 'val', text: s.length > 4000 ? s.slice(0, 4000) + '…' : s });
}

function changes(title, list) {
  if (!list.length) return h('div', {}, h('h3', { text: title }), h('p', { class: 'muted', text: 'no difference' }));
  return h('div', {}, h('h3', { text: `${title}: ${list.length} path${list.length === 1 ? '' : 's'} differ` }),
    h('table', { class: 'changes' },
      h('thead', {}, h('tr', {}, ['path', '', 'A', 'B'].map((x) => h('th', { text: x })))),
      h('tbody', {}, list.slice(0, 500).map((c) => h('tr', { class: 'op-' + c.op },
        h('td', { class: 'path', text: c.path }),
        h('td', { class: 'op', text: c.op === 'added' ? '+' : c.op === 'removed' ? '−' : '≠' }),
        h('td', {}, value(c.a)),
        h('td', {}, value(c.b)))))));
}
