// Asking the viewer's JSON API. Paths are relative to the page (`/_tapedeck/ui/`). Each
// request carries the store's token in a header: the link the page was opened through
// brings it in its query, the page keeps it in its origin's storage (scoped to this
// daemon's port, as a cookie would not be) and takes it out of the address bar.

export class ApiError extends Error {}

const TOKEN_KEY = 'tapedeck-token';
const TOKEN_HEADER = 'x-tapedeck-token';

function takeToken() {
  const params = new URLSearchParams(location.search);
  const given = params.get('token');
  if (given === null) {
    try {
      return localStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }
  try {
    localStorage.setItem(TOKEN_KEY, given);
  } catch (_) { /* no storage: this page alone holds it */ }
  params.delete('token');
  const rest = params.toString();
  history.replaceState(history.state, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
  return given;
}

const token = takeToken();

/** Request headers for the API: `accept` and the token. */
export function apiHeaders(accept) {
  const h = { accept };
  if (token) h[TOKEN_HEADER] = token;
  return h;
}

export async function api(path) {
  let resp;
  try {
    resp = await fetch('api/' + path, { headers: apiHeaders('application/json') });
  } catch (e) {
    throw new ApiError('the viewer is not answering (' + e.message + '); is tapedeck still running?');
  }
  let body;
  try {
    body = await resp.json();
  } catch (_) {
    throw new ApiError(`HTTP ${resp.status} from api/${path}`);
  }
  if (!resp.ok) {
    throw new ApiError((body && body.error && body.error.message) || `HTTP ${resp.status}`);
  }
  return body;
}

/**
 * Reads the API's event stream at `path` (server-sent events, read with fetch so the
 * request carries the token; EventSource sends no header), calling `on(type, data)` for
 * each event and `state(connected)` as the connection comes and goes. Reconnects after
 * `retryMs` when the stream ends or fails, as EventSource does.
 */
export function events(path, on, state, retryMs = 1000) {
  const run = async () => {
    for (;;) {
      try {
        const resp = await fetch('api/' + path, { headers: apiHeaders('text/event-stream'), cache: 'no-store' });
        if (resp.ok && resp.body) {
          state(true);
          const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value;
            // Events end at a blank line; lines at LF, CR or CR LF.
            for (;;) {
              const m = /\r\n\r\n|\n\n|\r\r/.exec(buf);
              if (!m) break;
              dispatch(buf.slice(0, m.index), on);
              buf = buf.slice(m.index + m[0].length);
            }
          }
        }
      } catch (_) { /* reconnect below */ }
      state(false);
      await new Promise((r) => setTimeout(r, retryMs));
    }
  };
  run();
}

function dispatch(block, on) {
  let type = 'message';
  const data = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length || type !== 'message') on(type, data.join('\n'));
}

/** The path of a session's API endpoints. */
export function sessionPath(name, ...rest) {
  return ['sessions', name, ...rest].map((p) => encodeURIComponent(String(p))).join('/');
}
