// The banner across the page while the server is away (outside the bar's shadow root).
const PAGE_CSS = `
.fleet-banner { position: sticky; top: 0; z-index: 2000; padding: 10px 14px; font: 600 15px system-ui, sans-serif;
  color: #fff; background: #9d0019; text-align: center; }
.fleet-banner[data-why=offline] { background: #5a5a5a; }
`;
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function hm(ms) {
  return new Date(ms).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}
function hhmm(iso) {
  if (!iso) return "-";
  return new Date(iso).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
}
function beep(level) {
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const osc = ctx.createOscillator(); const gain = ctx.createGain();
    osc.type = "square"; osc.frequency.value = level >= 3 ? 880 : 660;
    gain.gain.value = 0.08; osc.connect(gain); gain.connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + 0.35);
  } catch (e) { /* no audio device: the toast still shows */ }
}
function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}
export function render({ model, el: root }) {
  const bar = el("header", {class: "topbar", role: "banner"});
  const nav = el("nav", {"aria-label": "views"});
  for (const [href, label, key] of model.nav) {
    const a = el("a", {href: href, title: `g then ${key}`}, label);
    if (href === model.page) a.setAttribute("aria-current", "page");
    nav.append(a);
  }
  const find = el("form", {class: "find", action: "/vehicle", method: "get", role: "search"});
  const input = el("input", {name: "q", type: "search", placeholder: "Plate or customer  ( / )",
                             "aria-label": "find a vehicle by plate or customer", autocomplete: "off"});
  find.append(input);
  const conn = el("span", {class: "conn", "data-state": "live", role: "status"});
  const dot = el("span", {class: "dot", "aria-hidden": "true"});
  const label = el("span", {class: "label"}, "live");
  const fresh = el("span", {class: "fresh"});
  conn.append(dot, label, fresh);
  const who = el("span", {class: "who"}, model.who);
  const out = el("form", {class: "out", action: "/logout", method: "post"});
  const csrf = el("input", {type: "hidden", name: "csrf", value: ""});
  // The page carries no cookie values: the CSRF token is read from its cookie when needed.
  out.addEventListener("submit", () => { csrf.value = cookie("fleet_csrf"); });
  out.append(csrf);
  out.append(el("button", {type: "submit"}, "Sign out"));
  bar.append(nav, find, conn, who, out);
  const toasts = el("div", {class: "toasts", "aria-live": "polite"});
  root.append(bar, toasts);

  // Silence this long (two beats and a second) means the server is gone even if no socket
  // said so; a socket that closes says so at once (Bokeh's connection_lost, see shell.py).
  const STALE_MS = 2 * model.beat_ms + 1000;
  let lastBeat = Date.now();
  let lostAt = null;  // when the socket closed, if Bokeh told us
  let downSince = null;  // when the page first knew the server was away
  let serverLive = model.server_live;
  let asOf = model.as_of;
  let probing = false;
  let probedAt = 0;
  const PROBE_MS = 400;
  // A socket that is open but has said nothing this long, while the server answers, is dead
  // without having said so: reload then.
  const RELOAD_AFTER_SILENCE_MS = 20000;
  let failures = 0;
  const banner = el("div", {class: "fleet-banner", role: "alert", hidden: ""});
  if (!document.getElementById("fleet-page-css")) {
    const css = el("style", {id: "fleet-page-css"}, PAGE_CSS);
    document.head.append(css);
  }
  document.body.prepend(banner);
  // The page's outermost element (past every shadow root): its stylesheet greys the view.
  function pageRoot() {
    let node = root;
    while (node.getRootNode() instanceof ShadowRoot) node = node.getRootNode().host;
    return node;
  }
  window.addEventListener("fleet-connection-lost", () => {
    if (lostAt === null) lostAt = Date.now();
    show();
  });
  function show() {
    let state = "live";
    const now = Date.now();
    const lost = lostAt !== null || now - lastBeat > STALE_MS;
    if (!navigator.onLine) state = "offline";
    else if (lost && failures >= 1) state = "unreachable";
    else if (lost || !serverLive) state = "reconnecting";
    conn.dataset.state = state;
    label.textContent = state === "unreachable" ? "server unreachable" : state;
    fresh.textContent = " · data as of " + hhmm(asOf);
    fresh.dataset.asOf = asOf;
    const away = state === "offline" || state === "unreachable";
    if (away && downSince === null) downSince = lostAt ?? Math.min(now, lastBeat + 2 * model.beat_ms);
    if (!away && !lost) downSince = null;
    banner.hidden = !away;
    banner.dataset.why = state;
    if (away) {
      const what = state === "offline" ? "Offline (no network)" : "Server unreachable";
      banner.textContent = `${what} since ${hm(downSince)}: showing data as of ${hm(asOf)}; reconnecting`;
    }
    pageRoot().classList.toggle("fleet-stale", away);
    if (state === "live" && !performance.getEntriesByName("fleet-live").length) {
      performance.mark("fleet-live");  // when this page first showed live data (benchmarks read it)
    }
    if (lost && navigator.onLine && !probing && now - probedAt >= PROBE_MS) probe();
  }
  async function probe() {
    probing = true;
    probedAt = Date.now();
    try {
      const r = await fetch("/healthz", {cache: "no-store", signal: AbortSignal.timeout(3000)});
      if (r.ok && (lostAt !== null || Date.now() - lastBeat > RELOAD_AFTER_SILENCE_MS)) {
        // Back, and this page's socket is gone: a fresh page is a fresh session, with
        // everything that changed meanwhile.
        conn.dataset.state = "catching-up";
        label.textContent = "catching up";
        location.reload();
        return;
      }
      // The server answers and the socket is open but quiet (a busy server): keep the page,
      // and what the user has on it, until the next beat comes.
      if (r.ok) failures = 0;
      else failures += 1;
    } catch (e) { failures += 1; }
    probing = false;
    show();
    // Ask again soon: a server that restarts is back within seconds, and each page should be
    // live again within moments of it (a probe of a server that is down costs next to nothing).
    setTimeout(show, PROBE_MS + Math.random() * PROBE_MS / 2);
  }
  model.on("msg:custom", (msg) => {
    if (msg.signed_out) {
      // The session was revoked, expired or its user deactivated: nothing here may act now.
      conn.dataset.state = "signed-out";
      label.textContent = "signed out";
      const back = location.pathname + location.search;
      location.assign("/login?ended=1&next=" + encodeURIComponent(back));
      return;
    }
    if (msg.beat) { lastBeat = Date.now(); failures = 0; serverLive = msg.server_live; show(); }
    if (msg.as_of) { asOf = msg.as_of; show(); }
  });
  window.addEventListener("offline", show);
  window.addEventListener("online", show);
  setInterval(show, 1000);
  show();

  let pending = "";
  document.addEventListener("keydown", (ev) => {
    const t = ev.composedPath()[0];
    const typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable);
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "/") { ev.preventDefault(); input.focus(); return; }
    if (pending === "g") {
      pending = "";
      const hit = model.nav.find(([, , key]) => key === ev.key);
      if (hit) window.location.href = hit[0];
      return;
    }
    if (ev.key === "g") pending = "g";
  });

  model.on("msg:custom", (msg) => {
    if (!msg.toast) return;
    const t = el("div", {class: "toast " + msg.toast.level,
                         role: msg.toast.level === "error" || msg.sound ? "alert" : "status"},
                 msg.toast.text);
    t.addEventListener("click", () => t.remove());
    toasts.prepend(t);
    setTimeout(() => t.remove(), msg.toast.level === "error" ? 15000 : 8000);
    if (msg.sound) {
      beep(msg.level || 3);
      bar.dataset.sounds = String(Number(bar.dataset.sounds || 0) + 1);
    }
  });
}
