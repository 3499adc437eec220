// The step panel: one exchange read closely. Its request and response (JSON pretty-printed),
// an LLM call's messages as a conversation, a stream's chunks with their offsets, the
// headers (secrets show as redacted), the usage, the findings that involve it, and the
// steps whose output flowed into it with the value that flowed. Everything recorded is
// shown as text.

import { h, hash, jsonView, parseJson, us, num, bytes, shortUrl } from './dom.js';

const REDACTED = '[REDACTED]';
// How a value reached a step, in the dependency model's terms (trace::causal::Link).
const LINKS = {
  tool_result: 'tool result',
  tool_call_id: 'tool call id',
  assistant_text: 'assistant text',
  tool_output: 'tool answer',
  tool_arguments: 'tool arguments',
  value: 'value',
};
const TABS = ['overview', 'conversation', 'request', 'response', 'stream', 'headers'];
let lastTab = 'overview';

/**
 * @param {object} d      the step, as `api/sessions/NAME/steps/N` returns it
 * @param {object} run    the run page: `label(step)` names a step, `session` its session
 */
export function stepPanel(d, run) {
  const tabs = TABS.filter((t) => available(t, d));
  let tab = tabs.includes(lastTab) ? lastTab : 'overview';
  const body = h('div', { class: 'tabbody' });
  const bar = h('div', { class: 'tabs', role: 'tablist' });
  const show = (t) => {
    tab = t;
    lastTab = t;
    bar.replaceChildren(...tabs.map((x) => h('button', {
      type: 'button', role: 'tab', class: x === t ? 'on' : '', 'aria-selected': String(x === t),
      data: { tab: x }, on: { click: () => show(x) },
    }, x)));
    body.replaceChildren(render(t, d, run));
  };
  show(tab);
  const status = d.response
    ? h('span', { class: 'status ' + (d.response.status >= 400 ? 'bad' : 'good'), text: d.response.status })
    : h('span', { class: 'status bad', text: d.error ? d.error.kind : 'no response' });
  return h('div', { class: 'step', data: { step: d.step } },
    h('div', { class: 'stephead' },
      h('span', { class: 'stepno', text: '#' + d.step }),
      h('span', { class: 'kind ' + d.kind, text: d.kind }),
      h('span', { class: 'method', text: d.request.method }),
      h('span', { class: 'url', title: d.request.url, text: shortUrl(d.request.url) }),
      status),
    bar, body);
}

function available(t, d) {
  switch (t) {
    case 'conversation': return !!(d.llm && (Array.isArray(d.llm.input_messages) || Array.isArray(d.llm.output_messages)));
    case 'response': return !!d.response;
    case 'stream': return !!(d.response && d.response.chunks && d.response.chunks.length);
    default: return true;
  }
}

function render(t, d, run) {
  switch (t) {
    case 'overview': return overview(d, run);
    case 'conversation': return conversation(d.llm);
    case 'request': return bodyView(d.request.body);
    case 'response': return bodyView(d.response.body, d.response.complete);
    case 'stream': return stream(d.response);
    case 'headers': return h('div', {},
      h('h3', { text: 'Request headers' }), headers(d.request.headers),
      d.response ? [h('h3', { text: 'Response headers' }), headers(d.response.headers)] : null);
    default: return h('div');
  }
}

function kv(rows) {
  return h('dl', { class: 'kv' }, rows.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)]));
}

function stepLink(run, s) {
  return h('a', { class: 'steplink', href: hash('s', run.session, 'step', s), data: { step: s } },
    '#' + s + ' ', h('span', { class: 'muted', text: run.label(s) }));
}

function overview(d, run) {
  const t = d.timing;
  const llm = d.llm;
  const first = d.response && d.response.chunks && d.response.chunks.length ? d.response.chunks[0].at_ms : null;
  const out = [
    kv([
      ['URL', h('span', { class: 'wrap', text: d.request.url })],
      ['Agent', d.agent],
      ['Started', '+' + us(t.start)],
      ['Duration', us(t.end - t.start)],
      ['Time to first byte', t.ttfb !== null ? us(t.ttfb) : null],
      ['Time to first token', first !== null ? first.toFixed(1) + ' ms' : null],
      ['Error', d.error ? `${d.error.kind}: ${d.error.message}` : null],
      ['Incomplete', d.response && !d.response.complete ? 'the response did not arrive whole' : null],
    ]),
  ];
  if (llm) {
    out.push(h('h3', { text: 'LLM call' }), kv([
      ['Provider', llm.provider],
      ['Model', llm.response_model && llm.response_model !== llm.request_model
        ? `${llm.request_model || '?'} → ${llm.response_model}` : llm.request_model],
      ['Operation', llm.operation + (llm.stream ? ' (streamed)' : '')],
      ['Input tokens', llm.input_tokens !== null ? num(llm.input_tokens) : null],
      ['Output tokens', llm.output_tokens !== null ? num(llm.output_tokens) : null],
      ['Cache read', llm.cache_read_tokens !== null ? num(llm.cache_read_tokens) : null],
      ['Cache creation', llm.cache_creation_tokens !== null ? num(llm.cache_creation_tokens) : null],
      ['Reasoning tokens', llm.reasoning_tokens !== null ? num(llm.reasoning_tokens) : null],
      ['Max tokens', llm.max_tokens !== null ? num(llm.max_tokens) : null],
      ['Temperature', llm.temperature],
      ['Finish', llm.finish_reasons.join(', ')],
      ['Tools offered', llm.tool_definitions.join(', ')],
      ['Tool calls', llm.tool_calls.map((c) => c.name).join(', ')],
      ['Provider error', llm.error_type ? `${llm.error_type}: ${llm.error_message || ''}` : null],
    ]));
  }
  if (d.findings.length) {
    out.push(h('h3', { text: 'Findings' }), ...d.findings.map((f) => h('div', { class: 'finding ' + f.severity },
      h('div', {}, h('span', { class: 'sev ' + f.severity, text: f.severity }), ' ',
        h('strong', { text: f.detector }), ' at ', ...f.steps.map((s) => stepLink(run, s))),
      h('div', { text: f.summary }),
      h('ul', {}, f.evidence.map((e) => h('li', { text: e }))))));
  }
  out.push(h('h3', { text: 'Walk back' }));
  const flows = d.walk_back.slice().sort((a, b) => b.step - a.step);
  out.push(flows.length
    ? h('div', { class: 'walk' }, h('div', { class: 'muted', text: 'Output of these steps flowed into this one (what replay waits for):' }),
      h('ul', {}, flows.map((f) => h('li', { title: f.why, data: { step: f.step, link: f.link } },
        stepLink(run, f.step), h('span', { class: 'flowlink', text: LINKS[f.link] || f.link }),
        f.value !== null ? h('code', { class: 'flow', text: f.value }) : null))))
    : h('p', { class: 'muted', text: 'No earlier step\'s output is known to flow into this one.' }));
  if (d.used_by.length) {
    out.push(h('div', { class: 'walk' }, h('div', { class: 'muted', text: 'This step\'s output flowed into:' }),
      h('ul', {}, d.used_by.map((s) => h('li', {}, stepLink(run, s))))));
  }
  return h('div', {}, out);
}

// --- conversation ------------------------------------------------------------------------

function conversation(llm) {
  const out = [];
  if (Array.isArray(llm.system_instructions) && llm.system_instructions.length) {
    out.push(message('system', llm.system_instructions));
  }
  for (const m of llm.input_messages || []) out.push(message(m.role, m.parts || []));
  if (Array.isArray(llm.output_messages) && llm.output_messages.length) {
    out.push(h('div', { class: 'divider', text: 'response' }));
    for (const m of llm.output_messages) out.push(message(m.role || 'assistant', m.parts || [], m.finish_reason));
  }
  return h('div', { class: 'conversation' }, out);
}

function message(role, parts, finish) {
  return h('div', { class: 'msg role-' + String(role).replace(/[^a-z_]/g, '') },
    h('div', { class: 'who' }, String(role), finish ? h('span', { class: 'muted', text: ' · ' + finish }) : null),
    parts.map(part));
}

function part(p) {
  switch (p.type) {
    case 'text':
      return h('div', { class: 'text', text: p.content });
    case 'reasoning':
      return h('div', { class: 'text reasoning', text: p.content });
    case 'tool_call':
      return h('div', { class: 'toolcall' },
        h('div', { class: 'tc' }, 'tool call ', h('strong', { text: p.name }), p.id ? h('span', { class: 'muted', text: ' ' + p.id }) : null),
        jsonView(p.arguments));
    case 'tool_call_response': {
      const v = typeof p.response === 'string' ? parseJson(p.response) : p.response;
      return h('div', { class: 'toolresult' },
        h('div', { class: 'tc' }, 'tool result', p.id ? h('span', { class: 'muted', text: ' ' + p.id }) : null),
        v !== undefined ? jsonView(v) : h('pre', { class: 'text', text: String(p.response) }));
    }
    default:
      return jsonView(p);
  }
}

// --- bodies, streams, headers -----------------------------------------------------------

function bodyView(b, complete) {
  if (b.missing) return h('p', { class: 'error', text: 'The body is missing from the store: ' + b.missing });
  const meta = h('div', { class: 'bodymeta muted' },
    bytes(b.len), b.content_type ? ' · ' + b.content_type : '', b.encoding ? ' · ' + b.encoding + ' on the wire' : '',
    b.truncated ? ' · first ' + bytes(b.text.length) + ' shown (export the tape for the rest)' : '',
    complete === false ? ' · incomplete' : '');
  if (b.len === 0) return h('div', {}, meta, h('p', { class: 'muted', text: '(empty body)' }));
  if (b.binary) return h('div', {}, meta, h('pre', { class: 'hex', text: b.text }));
  const v = b.truncated ? undefined : parseJson(b.text);
  return h('div', {}, meta, v !== undefined ? jsonView(v, b.text.length) : h('pre', { class: 'text', text: b.text }));
}

function stream(r) {
  const rows = r.chunks.map((c, i) => h('tr', {},
    h('td', { class: 'num', text: i + 1 }),
    h('td', { class: 'num', text: c.at_ms.toFixed(1) }),
    h('td', { class: 'num', text: num(c.offset) }),
    h('td', { class: 'num', text: num(c.len) }),
    h('td', {}, h('pre', { class: 'chunk', text: c.text === null ? '' : c.text }))));
  return h('div', {},
    h('p', { class: 'muted', text: `${num(r.chunks_total)} chunks` + (r.chunks_total > r.chunks.length ? `, first ${r.chunks.length} shown` : '') }),
    h('table', { class: 'chunks' },
      h('thead', {}, h('tr', {}, ['#', 'at ms', 'offset', 'bytes', 'data'].map((x) => h('th', { text: x })))),
      h('tbody', {}, rows)));
}

function headers(list) {
  if (!list.length) return h('p', { class: 'muted', text: '(none)' });
  return h('table', { class: 'headers' }, h('tbody', {}, list.map(([k, v]) => h('tr', {},
    h('th', { text: k }),
    h('td', {}, v.includes(REDACTED)
      ? [h('span', { class: 'redacted', title: 'tapedeck never stores this value', text: 'redacted' }), ' ',
        h('span', { class: 'muted', text: v === REDACTED ? '' : v })]
      : h('span', { class: 'wrap', text: v }))))));
}
