// The Run page: the span tree beside a waterfall (LLM, tool and HTTP bars on one time
// axis, so parallel tool calls show side by side), findings pinned to their steps, and the
// step panel. Selecting a step highlights the steps whose output flowed into it (walk
// back). The list is virtualized and bodies are fetched one step at a time.

import { api, sessionPath } from './api.js';
import { h, hash, setCrumbs, us, num } from './dom.js';
import { VList } from './vlist.js';
import { stepPanel } from './step.js';

const ROW = 26;
const ROLE_TAG = { llm: 'LLM', tool: 'TOOL', http: 'HTTP', agent: 'AGENT', workflow: 'FLOW' };
/** Live reloads of one run at most this often, and never closer than twice the time the
 * last load took: a big run being recorded must not keep the recorder busy rebuilding it. */
const LIVE_MS = 400;

export class RunPage {
  constructor(root, route) {
    this.name = route.session;
    this.wantStep = route.step;
    this.collapsed = new Set();
    this.query = '';
    this.visible = [];
    this.cursor = 0;
    this.selStep = null;
    this.selPos = null;
    this.details = new Map();
    this.fit = false;
    setCrumbs([['Sessions', '#/'], [this.name, null]]);

    this.head = h('header', { class: 'runhead' }, h('h1', { text: this.name }));
    this.findingsBar = h('div', { class: 'findingsbar' });
    this.filter = h('input', {
      class: 'filter', type: 'search', placeholder: 'Filter spans by name or #step  ( / )',
      'aria-label': 'Filter spans',
      on: { input: () => { this.query = this.filter.value.trim().toLowerCase(); this.layout(); } },
    });
    this.axis = h('div', { class: 'axis' });
    this.box = h('div', { class: 'vbox', role: 'tree', 'aria-label': 'Spans' });
    this.panel = h('aside', { class: 'panel', 'aria-label': 'Step' },
      h('p', { class: 'muted hint', text: 'Pick a step (j / k, then enter) to read its request and response.' }));
    this.el = h('section', { class: 'page run' },
      this.head,
      this.findingsBar,
      h('div', { class: 'split' },
        h('div', { class: 'left' },
          h('div', { class: 'toolbar' }, this.filter,
            h('button', { type: 'button', on: { click: () => this.collapseAll(false) } }, 'expand all'),
            h('button', { type: 'button', on: { click: () => this.collapseAll(true) } }, 'collapse tools'),
            this.zoom = h('button', {
              type: 'button', title: 'Time axis: the whole run, or only the rows in view (z)',
              'aria-pressed': 'false', on: { click: () => this.toggleFit() },
            }, 'zoom to rows'),
            h('span', { class: 'spacer' }),
            h('span', { class: 'legend' },
              h('span', {}, h('i', { class: 'swatch llm' }), 'LLM'),
              h('span', {}, h('i', { class: 'swatch tool' }), 'tool'),
              h('span', {}, h('i', { class: 'swatch http' }), 'HTTP'),
              h('span', {}, h('i', { class: 'swatch first' }), 'first token'),
              h('span', {}, h('i', { class: 'swatch flow' }), 'flowed into the open step'))),
          h('div', { class: 'trow thead' }, h('span', { class: 'tname', text: 'Span' }), this.axis),
          this.box),
        this.panel));
    root.append(this.el);
    this.list = new VList(this.box, ROW, (i) => this.renderRow(i));
    this.list.onRange = (first, last) => this.setRange(first, last);
    this.load(true);
  }

  async load(first) {
    let data;
    const started = performance.now();
    try {
      data = await api(sessionPath(this.name, 'run'));
      this.loadMs = performance.now() - started;
    } catch (e) {
      this.head.replaceChildren(h('h1', { text: this.name }), h('p', { class: 'error', text: e.message }));
      return;
    }
    if (!this.el.isConnected) return;
    this.ingest(data);
    this.drawHead();
    this.layout();
    if (first && this.wantStep !== null) this.selectStep(this.wantStep, true);
    else if (this.selStep !== null) this.showStep(this.selStep, false);
  }

  ingest(d) {
    this.data = d;
    this.spans = d.spans;
    this.byId = new Map(d.spans.map((s, i) => [s.id, i]));
    this.stepPos = new Map();
    d.spans.forEach((s, i) => { if (s.exchange) this.stepPos.set(s.step, i); });
    this.total = d.spans.reduce((m, s) => Math.max(m, s.end), 1);
    this.stepFindings = new Map();
    for (const f of d.findings) {
      f.steps.forEach((s, k) => {
        if (!this.stepFindings.has(s)) this.stepFindings.set(s, []);
        this.stepFindings.get(s).push({ f, lead: k === 0 });
      });
    }
    this.inputs = d.inputs;
    this.details.clear();
    this.range = null;
  }

  drawHead() {
    const d = this.data;
    const t = d.totals;
    const stat = (label, value, cls) => h('span', { class: 'stat ' + (cls || '') }, h('b', { text: value }), ' ' + label);
    this.compare = h('select', {
      'aria-label': 'Compare with another session',
      on: {
        focus: () => this.fillCompare(),
        change: (e) => { if (e.target.value) location.hash = hash('diff', this.name, e.target.value); },
      },
    }, h('option', { value: '', text: 'Diff with…' }));
    this.head.replaceChildren(
      h('h1', { text: d.session }),
      h('div', { class: 'stats' },
        stat('duration', us(t.duration_ms * 1000)),
        stat('events', num(d.events)),
        stat('LLM calls', num(t.llm_calls)),
        stat('tool calls', num(t.tool_calls)),
        stat('tokens', num(t.input_tokens + t.output_tokens)),
        stat('errors', num(t.errors), t.errors ? 'bad' : ''),
        stat('findings', num(d.findings.length), d.findings.length ? 'warn' : ''),
        d.agents.length > 1 ? stat('agents', d.agents.join(', ')) : null),
      h('span', { class: 'spacer' }),
      this.compare);
    this.findingsBar.replaceChildren(...d.findings.map((f) => h('button', {
      type: 'button', class: 'fchip ' + f.severity, title: f.summary,
      data: { detector: f.detector, step: f.steps[0] },
      on: { click: () => this.selectStep(f.steps[0], true) },
    }, h('span', { class: 'sev ' + f.severity, text: f.severity }), ' ' + f.detector + ' at #' + f.steps.join(', #'))));
    this.findingsBar.hidden = d.findings.length === 0;
  }

  toggleFit() {
    this.fit = !this.fit;
    this.zoom.setAttribute('aria-pressed', String(this.fit));
    this.zoom.classList.toggle('on', this.fit);
    this.list.draw();
  }

  /** The time window the bars are drawn in: the whole run, or the rows being drawn. */
  setRange(first, last) {
    let from = 0;
    let to = this.total;
    if (this.fit && last > first) {
      from = Infinity;
      to = 0;
      for (let i = first; i < last; i++) {
        const s = this.spans[this.visible[i]];
        if (s.depth === 0 && last - first > 1) continue;
        from = Math.min(from, s.start);
        to = Math.max(to, s.end);
      }
      if (!(to > from)) { from = 0; to = this.total; }
    }
    if (this.range && this.range.from === from && this.range.to === to) return;
    this.range = { from, to };
    // Zoomed in, the first tick says where the window starts and the others how far on.
    const ticks = [0, 0.25, 0.5, 1].map((x) => {
      const label = this.fit && x > 0 ? '+' + us((to - from) * x) : us(from + (to - from) * x);
      const t = h('span', { class: 'tick', text: label });
      t.style.left = x * 100 + '%';
      if (x === 1) t.classList.add('last');
      return t;
    });
    this.axis.replaceChildren(...ticks);
  }

  async fillCompare() {
    if (this.compareFilled) return;
    this.compareFilled = true;
    try {
      const d = await api('sessions');
      for (const s of d.sessions) {
        if (s.name !== this.name) this.compare.append(h('option', { value: s.name, text: s.name }));
      }
    } catch (_) { /* the select stays empty */ }
  }

  /** Which spans are rows: all, less collapsed subtrees, or the matches of the filter. */
  layout() {
    const spans = this.spans;
    if (!spans) return;
    const q = this.query;
    let keep = null;
    if (q) {
      keep = new Set();
      spans.forEach((s) => {
        const hit = s.name.toLowerCase().includes(q) || (s.step !== undefined && ('#' + s.step) === q) || s.role === q;
        if (!hit) return;
        for (let p = s; p; p = p.parent !== undefined ? spans[this.byId.get(p.parent)] : null) {
          if (keep.has(p.id)) break;
          keep.add(p.id);
        }
      });
    }
    const vis = [];
    let skip = Infinity;
    for (let i = 0; i < spans.length; i++) {
      const s = spans[i];
      if (s.depth > skip) continue;
      skip = Infinity;
      if (keep && !keep.has(s.id)) continue;
      vis.push(i);
      if (!keep && this.collapsed.has(s.id)) skip = s.depth;
    }
    const cur = this.visible[this.cursor];
    this.visible = vis;
    const again = vis.indexOf(cur);
    this.cursor = again >= 0 ? again : Math.min(this.cursor, Math.max(0, vis.length - 1));
    this.list.setCount(vis.length);
  }

  collapseAll(tools) {
    this.collapsed.clear();
    if (tools) this.spans.forEach((s) => { if (s.role === 'tool' && s.children) this.collapsed.add(s.id); });
    this.layout();
  }

  /** The steps whose output flowed into `step`: direct ones, and all of them (transitively). */
  walkBack(step) {
    const direct = new Set(this.inputs[step] || []);
    const all = new Set();
    const todo = [...direct];
    while (todo.length) {
      const s = todo.pop();
      if (all.has(s)) continue;
      all.add(s);
      for (const x of this.inputs[s] || []) todo.push(x);
    }
    return { direct, all };
  }

  label(step) {
    const p = this.stepPos.get(step);
    return p === undefined ? '' : this.spans[p].name;
  }

  get session() {
    return this.name;
  }

  renderRow(vi) {
    const pos = this.visible[vi];
    const s = this.spans[pos];
    const cls = ['trow', 'role-' + s.role];
    if (vi === this.cursor) cls.push('cursor');
    if (pos === this.selPos) cls.push('selected');
    if (s.error) cls.push('error');
    if (s.exchange && this.walk) {
      if (this.walk.direct.has(s.step)) cls.push('in-direct');
      else if (this.walk.all.has(s.step)) cls.push('in-chain');
    }
    const name = h('span', { class: 'tname', title: s.name });
    name.style.paddingLeft = 6 + s.depth * 14 + 'px';
    if (s.children) {
      const open = !this.collapsed.has(s.id);
      name.append(h('button', {
        type: 'button', class: 'twisty', 'aria-label': open ? 'collapse' : 'expand', 'aria-expanded': String(open),
        on: { click: (e) => { e.stopPropagation(); this.toggle(s.id); } },
      }, open ? '▾' : '▸'));
    } else {
      name.append(h('span', { class: 'twisty' }));
    }
    name.append(h('span', { class: 'tag ' + s.role, text: ROLE_TAG[s.role] || s.role }),
      h('span', { class: 'label', text: s.name }));
    if (s.exchange) name.append(h('span', { class: 'stepno', text: '#' + s.step }));
    if (s.flag === 'empty') name.append(h('span', { class: 'flag', title: 'The tool answered nothing', text: 'empty' }));
    const pinned = s.exchange ? this.stepFindings.get(s.step) : null;
    if (pinned) {
      for (const { f, lead } of pinned) {
        name.append(h('span', {
          class: 'pin ' + f.severity + (lead ? ' lead' : ''), title: f.detector + ': ' + f.summary,
          data: { detector: f.detector }, text: lead ? f.detector : '•',
        }));
      }
    }
    const bar = h('span', { class: 'bar ' + s.role + (s.error ? ' err' : '') + (s.flag === 'empty' ? ' empty' : '') });
    const { from, to } = this.range || { from: 0, to: this.total };
    const span = Math.max(1, to - from);
    const left = Math.min(100, Math.max(0, ((s.start - from) / span) * 100));
    const width = Math.max(Math.min(100 - left, ((s.end - Math.max(s.start, from)) / span) * 100), 0.15);
    bar.style.left = left + '%';
    bar.style.width = width + '%';
    const lane = h('span', { class: 'lane' }, bar);
    if (s.ttft !== undefined && s.end > s.start) {
      const tick = h('span', { class: 'ttft', title: 'first token after ' + us(s.ttft) });
      tick.style.left = ((s.start + s.ttft - from) / span) * 100 + '%';
      lane.append(tick);
    }
    const dur = h('span', { class: 'dur', text: us(s.end - s.start) + (s.ttft !== undefined ? ' · ttft ' + us(s.ttft) : '') });
    if (left + width > 70) {
      dur.classList.add('before');
      dur.style.right = 100 - left + '%';
    } else {
      dur.style.left = left + width + '%';
    }
    lane.append(dur);
    return h('div', {
      class: cls.join(' '), role: 'treeitem', 'aria-level': String(s.depth + 1),
      data: { span: s.id, step: s.exchange ? s.step : '', role: s.role },
      on: { click: () => { this.cursor = vi; this.open(pos); } },
    }, name, lane);
  }

  toggle(id) {
    if (this.collapsed.has(id)) this.collapsed.delete(id); else this.collapsed.add(id);
    this.layout();
  }

  /** Opens the span at `pos`: its exchange, or for a tool call the exchange it made. */
  open(pos) {
    const s = this.spans[pos];
    let step = s.exchange ? s.step : null;
    if (step === null && s.role === 'tool') {
      const child = this.spans.slice(pos + 1).find((c) => c.parent === s.id && c.exchange);
      step = child ? child.step : s.step;
    }
    this.selPos = pos;
    if (step === null || step === undefined) {
      this.selStep = null;
      this.walk = null;
      this.panel.replaceChildren(h('p', { class: 'muted hint', text: s.name + ': ' + us(s.end - s.start) }));
      this.list.draw();
      return;
    }
    const target = hash('s', this.name, 'step', step);
    if (location.hash !== target) {
      this.selectStep(step, false, pos);
      history.pushState(null, '', target);
    } else {
      this.selectStep(step, false, pos);
    }
  }

  /** Selects a step's exchange row (expanding what hides it) and shows it in the panel. */
  selectStep(step, scroll, pos) {
    const p = pos !== undefined ? pos : this.stepPos.get(step);
    if (p === undefined) {
      this.panel.replaceChildren(h('p', { class: 'error', text: `${this.name} has no step ${step}` }));
      return;
    }
    for (let a = this.spans[p]; a && a.parent !== undefined; a = this.spans[this.byId.get(a.parent)]) {
      this.collapsed.delete(a.parent);
    }
    if (this.query && !this.visible.includes(p)) {
      this.query = '';
      this.filter.value = '';
    }
    this.layout();
    this.selPos = p;
    this.selStep = step;
    this.walk = this.walkBack(step);
    const vi = this.visible.indexOf(p);
    if (vi >= 0) {
      this.cursor = vi;
      if (scroll) this.list.center(vi); else this.list.reveal(vi);
    }
    this.list.draw();
    this.showStep(step, true);
  }

  async showStep(step, loading) {
    if (loading && !this.details.has(step)) {
      this.panel.replaceChildren(h('p', { class: 'muted hint', text: `Loading step ${step}…` }));
    }
    let d = this.details.get(step);
    if (!d) {
      try {
        d = await api(sessionPath(this.name, 'steps', step));
      } catch (e) {
        if (this.selStep === step) this.panel.replaceChildren(h('p', { class: 'error', text: e.message }));
        return;
      }
      this.details.set(step, d);
    }
    if (this.selStep !== step || !this.el.isConnected) return;
    this.panel.replaceChildren(stepPanel(d, this));
  }

  onRoute(r) {
    if (r.step !== null && r.step !== this.selStep) this.selectStep(r.step, true);
  }

  onKey(e) {
    const n = this.visible.length;
    const cur = this.spans ? this.spans[this.visible[this.cursor]] : null;
    switch (e.key) {
      case 'j': case 'ArrowDown': this.cursor = Math.min(n - 1, this.cursor + 1); break;
      case 'k': case 'ArrowUp': this.cursor = Math.max(0, this.cursor - 1); break;
      case 'Enter': if (n) this.open(this.visible[this.cursor]); return true;
      case 'ArrowLeft': case 'h': if (cur && cur.children) { this.collapsed.add(cur.id); this.layout(); } return true;
      case 'ArrowRight': case 'l': if (cur && cur.children) { this.collapsed.delete(cur.id); this.layout(); } return true;
      case 'w': {
        const from = this.selStep !== null ? this.inputs[this.selStep] : null;
        if (from && from.length) location.hash = hash('s', this.name, 'step', from[from.length - 1]);
        return true;
      }
      case 'z': this.toggleFit(); return true;
      case 'Escape':
        if (this.query) { this.query = ''; this.filter.value = ''; this.layout(); } else location.hash = '#/';
        return true;
      default: return false;
    }
    this.list.reveal(this.cursor);
    return true;
  }

  focusFilter() {
    this.filter.focus();
    this.filter.select();
  }

  onLive(msg) {
    if (!msg.reset && msg.session !== this.name) return;
    if (this.liveTimer) return;
    this.liveTimer = setTimeout(() => {
      this.liveTimer = null;
      this.load(false);
    }, Math.max(LIVE_MS, 2 * (this.loadMs || 0)));
  }

  destroy() {
    clearTimeout(this.liveTimer);
    this.list.destroy();
  }
}
