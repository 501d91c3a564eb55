// The server's REST API with the signed-in user's bearer token. The token lives in this
// tab's session storage only; the password is never stored.
const TOKEN = "fleet.counter.token";
const CALL_TIMEOUT_MS = 15000;

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

// No answer at all: the device is offline or the server is unreachable.
export class NoNetwork extends Error {}

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function forget() {
  sessionStorage.removeItem(TOKEN);
}

export async function call(method, path, {body, headers, auth = true} = {}) {
  const h = {Accept: "application/json", ...(headers || {})};
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (auth && token()) h.Authorization = `Bearer ${token()}`;
  let r;
  try {
    // A server that accepts and never answers is as unreachable as one that refuses.
    r = await fetch(path, {method, headers: h, cache: "no-store", signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
                           body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (e) {
    throw new NoNetwork(String(e));
  }
  if (r.status === 204) return null;
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

export async function signIn(username, password) {
  // A shift's token: long enough for a day on the lot, short if a tablet goes missing.
  const out = await call("POST", "/api/auth/token", {
    auth: false, body: {username, password, label: "counter app", days: 0.5},
  });
  sessionStorage.setItem(TOKEN, out.access_token);
  return out;
}

export async function signOut(tokenId) {
  try {
    if (tokenId) await call("DELETE", `/api/auth/tokens/${tokenId}`);
  } finally {
    forget();
  }
}

export function eventsUrl(seq, locationId) {
  const q = new URLSearchParams({since: String(seq), access_token: token() || ""});
  if (locationId) q.set("location_id", String(locationId));
  return `/api/availability/events?${q}`;
}
