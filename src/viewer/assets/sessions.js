// The Sessions page: every recorded run with what went wrong in it, and the failing runs
// grouped by signature (the same groups as `tapedeck cluster`).

import { api } from './api.js';
import { h, hash, setCrumbs, ms, num, when } from './dom.js';
import { VList } from './vlist.js';

const ROW = 32;
/** While summaries are still being built, ask again this often. */
const POLL_MS = 500;

const COLUMNS = [
  { key: 'name', label: 'Session', get: (r) => r.name },
  { key: 'agents', label: 'Agents', get: (r) => (r.summary ? r.summary.agents.join(', ') : '') },
  { key: 'events', label: 'Events', num: true, get: (r) => r.events },
  { key: 'started', label: 'Started', get: (r) => r.first_unix_ns },
  { key: 'duration', label: 'Duration', num: true, get: (r) => r.summary && r.summary.duration_ms },
  { key: 'tokens', label: 'Tokens', num: true, get: (r) => r.summary && r.summary.input_tokens + r.summary.output_tokens },
  { key: 'errors', label: 'Errors', num: true, get: (r) => r.summary && r.summary.errors },
  { key: 'findings', label: 'Findings', num: true, get: (r) => r.summary && r.summary.findings },
  { key: 'parent', label: 'Parent', get: (r) => (r.summary && r.summary.parent) || '' },
];

function signatureText(sig) {
  return [sig.detector, sig.tool, sig.error, sig.position].filter((x) => x && x !== '-').join(' · ');
}

export class SessionsPage {
  constructor(root) {
    setCrumbs([['Sessions', null]]);
    this.rows = [];
    this.shown = [];
    this.sort = { key: 'started', desc: true };
    this.query = '';
    this.only = null; // a cluster's members, when one is picked
    this.picked = new Set(); // two sessions to diff
    this.cursor = 0;
    this.timer = null;

    this.clusters = h('section', { class: 'clusters', 'aria-label': 'Failing sessions by signature' });
    this.filter = h('input', {
      class: 'filter', type: 'search', placeholder: 'Filter sessions  ( / )',
      'aria-label': 'Filter sessions',
      on: { input: () => { this.query = this.filter.value.trim().toLowerCase(); this.apply(); } },
    });
    this.chip = h('span', { class: 'chips' });
    this.count = h('span', { class: 'muted' });
    this.diffButton = h('button', {
      type: 'button', class: 'primary', disabled: true,
      title: 'Tick two sessions, then compare them step by step',
      on: { click: () => this.openDiff() },
    }, 'Diff selected');
    this.head = h('div', { class: 'srow shead cols', role: 'row' });
    this.box = h('div', { class: 'vbox', role: 'grid', 'aria-label': 'Sessions' });
    this.el = h('section', { class: 'page sessions' },
      this.clusters,
      h('div', { class: 'toolbar' }, this.filter, this.chip, this.count, h('span', { class: 'spacer' }), this.diffButton),
      this.head,
      this.box);
    root.append(this.el);
    this.list = new VList(this.box, ROW, (i) => this.renderRow(i));
    this.drawHead();
    this.load();
  }

  async load() {
    clearTimeout(this.timer);
    let data;
    try {
      data = await api('sessions');
    } catch (e) {
      this.clusters.replaceChildren(h('p', { class: 'error', text: e.message }));
      return;
    }
    if (!this.el.isConnected) return;
    this.rows = data.sessions;
    this.hasParent = this.rows.some((r) => r.summary && r.summary.parent);
    this.drawHead();
    this.drawClusters(data);
    this.apply();
    if (data.pending > 0) this.timer = setTimeout(() => this.load(), POLL_MS);
  }

  columns() {
    return COLUMNS.filter((c) => c.key !== 'parent' || this.hasParent);
  }

  drawHead() {
    this.head.classList.toggle('with-parent', !!this.hasParent);
    this.box.classList.toggle('with-parent', !!this.hasParent);
    this.head.replaceChildren(
      h('span', { class: 'pick' }),
      ...this.columns().map((c) => {
        const on = this.sort.key === c.key;
        return h('button', {
          type: 'button', class: 'sorter' + (c.num ? ' num' : '') + (on ? ' on' : ''),
          'aria-sort': on ? (this.sort.desc ? 'descending' : 'ascending') : 'none',
          on: { click: () => this.sortBy(c.key) },
        }, c.label, on ? (this.sort.desc ? ' ▼' : ' ▲') : '');
      }));
  }

  drawClusters(data) {
    const box = this.clusters;
    if (!data.clusters) {
      box.replaceChildren(h('p', { class: 'muted', text: `Reading sessions… ${data.pending} left` }));
      return;
    }
    const failing = data.clusters.filter((c) => c.signature);
    const clean = data.clusters.filter((c) => !c.signature).reduce((n, c) => n + c.count, 0);
    const cards = failing.map((c) => h('div', { class: 'cluster' },
      h('span', { class: 'count', text: c.count }),
      h('div', { class: 'what' },
        h('div', { class: 'sig', title: signatureText(c.signature), text: signatureText(c.signature) }),
        h('div', { class: 'muted' }, 'e.g. ', h('a', { href: hash('s', c.representative), text: c.representative }))),
      h('button', {
        type: 'button', title: 'Show only these sessions',
        on: { click: () => this.pick(c) },
      }, c.count === 1 ? 'show' : `show ${c.count}`)));
    box.replaceChildren(
      h('h2', {}, failing.length ? 'Failing sessions by signature' : 'No failing sessions',
        h('span', { class: 'muted', text: ` · ${clean} without findings` })),
      h('div', { class: 'cards' }, cards));
  }

  pick(cluster) {
    this.only = new Set(cluster.sessions);
    this.chip.replaceChildren(h('button', {
      type: 'button', class: 'chip', title: 'Show every session',
      on: { click: () => { this.only = null; this.chip.replaceChildren(); this.apply(); } },
    }, signatureText(cluster.signature), ' ×'));
    this.apply();
  }

  sortBy(key) {
    if (this.sort.key === key) this.sort.desc = !this.sort.desc;
    else this.sort = { key, desc: key !== 'name' && key !== 'agents' };
    this.drawHead();
    this.apply();
  }

  apply() {
    const q = this.query;
    const col = COLUMNS.find((c) => c.key === this.sort.key);
    let rows = this.rows.filter((r) => {
      if (this.only && !this.only.has(r.name)) return false;
      if (!q) return true;
      const s = r.summary;
      const hay = [r.name, s && s.agents.join(' '), s && s.signature && signatureText(s.signature)]
        .filter(Boolean).join(' ').toLowerCase();
      return hay.includes(q);
    });
    rows = rows.slice().sort((a, b) => {
      const x = col.get(a); const y = col.get(b);
      if (x === y) return 0;
      if (x === undefined || x === null) return 1;
      if (y === undefined || y === null) return -1;
      const c = x < y ? -1 : 1;
      return this.sort.desc ? -c : c;
    });
    this.shown = rows;
    this.cursor = Math.min(this.cursor, Math.max(0, rows.length - 1));
    this.count.textContent = `${rows.length} of ${this.rows.length} sessions`;
    this.list.setCount(rows.length);
  }

  renderRow(i) {
    const r = this.shown[i];
    const s = r.summary;
    const cells = {
      name: h('a', { class: 'name', href: hash('s', r.name), text: r.name, title: r.name }),
      agents: h('span', { class: 'ellipsis', text: s ? s.agents.join(', ') || '–' : '…' }),
      events: h('span', { class: 'num', text: num(r.events) }),
      started: h('span', { class: 'muted', text: when(r.first_unix_ns) }),
      duration: h('span', { class: 'num', text: s ? ms(s.duration_ms) : '…' }),
      tokens: h('span', { class: 'num', title: s ? `${num(s.input_tokens)} in, ${num(s.output_tokens)} out` : null, text: s ? num(s.input_tokens + s.output_tokens) : '…' }),
      errors: h('span', { class: 'num' + (s && s.errors ? ' bad' : ''), text: s ? s.errors : '…' }),
      findings: s && s.findings
        ? h('span', { class: 'num' }, h('span', { class: 'sev ' + s.severity, title: s.signature ? signatureText(s.signature) : null, text: s.findings }))
        : h('span', { class: 'num muted', text: s ? '0' : '…' }),
      parent: s && s.parent ? h('a', { href: hash('s', s.parent), text: s.parent }) : h('span', { class: 'muted', text: '–' }),
    };
    const box = h('input', {
      type: 'checkbox', 'aria-label': 'Pick ' + r.name + ' for a diff',
      checked: this.picked.has(r.name),
      on: { change: (e) => this.toggle(r.name, e.target.checked) },
    });
    return h('div', {
      class: 'srow cols' + (i === this.cursor ? ' cursor' : '') + (this.hasParent ? ' with-parent' : ''),
      role: 'row', data: { session: r.name },
      on: { click: (e) => { if (e.target === box || e.target.tagName === 'A') return; this.cursor = i; location.hash = hash('s', r.name); } },
    }, h('span', { class: 'pick' }, box), ...this.columns().map((c) => cells[c.key]));
  }

  toggle(name, on) {
    if (on) this.picked.add(name); else this.picked.delete(name);
    while (this.picked.size > 2) this.picked.delete(this.picked.values().next().value);
    this.diffButton.disabled = this.picked.size !== 2;
    this.list.draw();
  }

  openDiff() {
    const [a, b] = [...this.picked];
    const order = (n) => this.rows.findIndex((r) => r.name === n);
    const [x, y] = order(a) <= order(b) ? [a, b] : [b, a];
    location.hash = hash('diff', x, y);
  }

  onRoute() {}

  onKey(e) {
    const n = this.shown.length;
    if (e.key === 'j' || e.key === 'ArrowDown') this.cursor = Math.min(n - 1, this.cursor + 1);
    else if (e.key === 'k' || e.key === 'ArrowUp') this.cursor = Math.max(0, this.cursor - 1);
    else if (e.key === 'Enter' && n) { location.hash = hash('s', this.shown[this.cursor].name); return true; }
    else if (e.key === 'x' && n) { const r = this.shown[this.cursor]; this.toggle(r.name, !this.picked.has(r.name)); return true; }
    else if (e.key === 'Escape') { this.filter.value = ''; this.query = ''; this.only = null; this.chip.replaceChildren(); this.apply(); return true; }
    else return false;
    this.list.reveal(this.cursor);
    return true;
  }

  focusFilter() {
    this.filter.focus();
    this.filter.select();
  }

  onLive() {
    clearTimeout(this.liveTimer);
    this.liveTimer = setTimeout(() => this.load(), 300);
  }

  destroy() {
    clearTimeout(this.timer);
    clearTimeout(this.liveTimer);
    this.list.destroy();
  }
}
