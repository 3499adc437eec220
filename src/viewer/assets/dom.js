// Building the page from data. Recorded bodies, URLs and names are attacker-controlled:
// every string goes into the page as a text node (textContent), never as markup, and a
// link can only point inside the viewer (a "#/..." route).

/** An element: h('div', {class: 'x', text: 'y', on: {click: f}}, child, 'text', ...). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      switch (k) {
        case 'class': el.className = v; break;
        case 'text': el.textContent = String(v); break;
        case 'href': el.setAttribute('href', route(v)); break;
        case 'on': for (const [ev, f] of Object.entries(v)) el.addEventListener(ev, f); break;
        case 'data': for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv); break;
        case 'hidden': el.hidden = true; break;
        case 'checked': el.checked = true; break;
        case 'disabled': el.disabled = true; break;
        case 'value': el.value = String(v); break;
        default: el.setAttribute(k, String(v));
      }
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** A viewer route; anything else (a recorded URL, say) is refused. */
function route(v) {
  const s = String(v);
  if (!s.startsWith('#/')) throw new Error('links stay inside the viewer: ' + s);
  return s;
}

/** The route of a page: parts are encoded one by one. */
export function hash(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(String(p))).join('/');
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function setCrumbs(items) {
  const nav = document.getElementById('crumbs');
  clear(nav);
  document.title = items[items.length - 1][0] + ' · tapedeck';
  items.forEach(([text, href], i) => {
    if (i > 0) nav.append(h('span', { class: 'sep', text: '/' }));
    nav.append(href ? h('a', { href, text }) : h('span', { text }));
  });
}

// --- formats ---------------------------------------------------------------------------

export function ms(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return '–';
  if (v === 0) return '0';
  if (v < 1) return v.toFixed(2) + ' ms';
  if (v < 1000) return v.toFixed(v < 10 ? 1 : 0) + ' ms';
  if (v < 60000) return (v / 1000).toFixed(v < 10000 ? 2 : 1) + ' s';
  const m = Math.floor(v / 60000);
  return m + ' min ' + Math.round((v % 60000) / 1000) + ' s';
}

/** Microseconds (the API's unit for times in a run) as a duration. */
export function us(v) {
  return v === undefined || v === null ? '–' : ms(v / 1000);
}

export function num(v) {
  if (v === undefined || v === null) return '–';
  return Number(v).toLocaleString('en-US');
}

export function bytes(v) {
  if (v === undefined || v === null) return '–';
  if (v < 1024) return v + ' B';
  if (v < 1 << 20) return (v / 1024).toFixed(1) + ' KiB';
  return (v / (1 << 20)).toFixed(1) + ' MiB';
}

export function when(unixNs) {
  if (!unixNs) return '–';
  const d = new Date(unixNs / 1e6);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A URL shortened to host and path, for a row. */
export function shortUrl(u) {
  try {
    const x = new URL(u);
    return x.host + x.pathname + (x.search ? x.search : '');
  } catch (_) {
    return String(u);
  }
}

// --- JSON, shown as text with its parts told apart by class -----------------------------

/** Large bodies are shown as plain text: highlighting them would cost seconds. */
const HIGHLIGHT_LIMIT = 200_000;

/** A <pre> with a JSON value pretty-printed (keys, strings, numbers in their colours). */
export function jsonView(value, textLength) {
  const pre = h('pre', { class: 'json' });
  if ((textLength || 0) > HIGHLIGHT_LIMIT) {
    pre.textContent = JSON.stringify(value, null, 2);
    return pre;
  }
  const out = [];
  write(value, '', out);
  pre.append(...out);
  return pre;
}

function write(v, indent, out) {
  const inner = indent + '  ';
  if (Array.isArray(v)) {
    if (v.length === 0) return out.push('[]');
    out.push('[\n');
    v.forEach((x, i) => {
      out.push(inner);
      write(x, inner, out);
      out.push(i + 1 < v.length ? ',\n' : '\n');
    });
    out.push(indent + ']');
  } else if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 0) return out.push('{}');
    out.push('{\n');
    keys.forEach((k, i) => {
      out.push(inner, h('span', { class: 'k', text: JSON.stringify(k) }), ': ');
      write(v[k], inner, out);
      out.push(i + 1 < keys.length ? ',\n' : '\n');
    });
    out.push(indent + '}');
  } else if (typeof v === 'string') {
    out.push(h('span', { class: 's', text: JSON.stringify(v) }));
  } else if (typeof v === 'number') {
    out.push(h('span', { class: 'n', text: String(v) }));
  } else {
    out.push(h('span', { class: 'b', text: String(v) }));
  }
}

/** A body's text parsed as JSON when it is JSON; `undefined` otherwise. */
export function parseJson(text) {
  if (typeof text !== 'string') return undefined;
  const t = text.trimStart();
  if (!(t.startsWith('{') || t.startsWith('['))) return undefined;
  try {
    return JSON.parse(text);
  } catch (_) {
    return undefined;
  }
}
