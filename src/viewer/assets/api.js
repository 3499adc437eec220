// Asking the viewer's JSON API. Paths are relative to the page (`/_tapedeck/ui/`); the
// browser sends the access cookie with each request (the server set it when the page was
// opened through its link), so no token is ever handled here.

export class ApiError extends Error {}

export async function api(path) {
  let resp;
  try {
    resp = await fetch('api/' + path, { headers: { accept: 'application/json' } });
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

/** The path of a session's API endpoints. */
export function sessionPath(name, ...rest) {
  return ['sessions', name, ...rest].map((p) => encodeURIComponent(String(p))).join('/');
}
