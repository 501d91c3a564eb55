// The counter app: the lot board, vehicle detail, status changes (swipe or sheet), search and
// overdue, online or off. Screens are plain DOM built from the Fleet state (sync.js).
import * as api from "./api.js";
import * as push from "./push.js";
import * as store from "./store.js";
import {Fleet, UNDO_MS} from "./sync.js";
import {hhmm, instantToWall, late, shown, wallToInstant} from "./time.js";

const fleet = new Fleet();
const view = document.getElementById("view");
const banner = document.getElementById("banner");
const bar = document.getElementById("bar");
const sheet = document.getElementById("sheet");
const toasts = document.getElementById("toasts");
const fresh = document.getElementById("fresh");
const USER = "fleet.counter.user";

const WORDS = {available: "available", reserved: "reserved", rented: "rented", cleaning: "cleaning",
  maintenance: "maintenance", in_transit: "in transit", out_of_service: "out of service"};
// The board's order: what needs a person first.
const ORDER = ["rented", "cleaning", "maintenance", "reserved", "in_transit", "available", "out_of_service"];
// Swipes: right for the next step of the turnaround, left to send the car to the workshop.
const SWIPE_RIGHT = {rented: ["cleaning", "returned"], cleaning: ["available", "ready"]};
const SWIPE_LEFT = ["maintenance", "to maintenance"];
const REASONS = {cleaning: "returned, to cleaning", available: "cleaned and ready",
  maintenance: "sent to maintenance", out_of_service: "out of service"};
let transitions = null;
let locations = null;
let stopCamera = null;
const elsewhere = new Map();  // cars of other lots looked up by id  // the open camera, stopped when the screen changes

const squeeze = (text) => String(text).replace(/[\s-]/g, "").toUpperCase();

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;  // text children are appended as text nodes: nothing here is parsed as markup
}

function toast(text, {level = "info", action = null, ms = 6000} = {}) {
  const t = el("div", {class: `toast ${level}`, role: level === "error" ? "alert" : "status"},
               el("span", {}, text));
  if (action) {
    t.append(el("button", {type: "button", onclick: async () => { t.remove(); await action.run(); }},
                action.label));
  }
  toasts.prepend(t);
  setTimeout(() => t.remove(), ms);
  return t;
}

function badge(v) {
  const key = v.overdue && v.status === "rented" ? "overdue" : v.status;
  const word = key === "overdue" ? "OVERDUE" : WORDS[v.status] || v.status;
  return el("span", {class: `badge ${key}`}, word);
}

function lotName() {
  const lot = (locations || []).find((l) => l.id === fleet.locationId);
  return lot ? `${lot.code} · ${lot.name}` : "all lots";
}

function lotZone() {
  const lot = (locations || []).find((l) => l.id === fleet.locationId);
  return lot ? lot.time_zone : Intl.DateTimeFormat().resolvedOptions().timeZone;
}

// --- connection and freshness ----------------------------------------------------------------

function showConnection() {
  const waiting = fleet.queue.filter((q) => q.state === "pending").length;
  const offline = !fleet.online;
  banner.hidden = !offline && !waiting;
  banner.className = `banner ${offline ? "offline" : "syncing"}`;
  // "Offline" is the device without a network; a network without our server says so.
  const why = navigator.onLine ? "Server unreachable" : "Offline";
  banner.textContent = offline
    ? `${why}, showing data as of ${hhmm(fleet.asOf)}` + (waiting ? ` · ${waiting} change${waiting > 1 ? "s" : ""} waiting to send` : "")
    : `${waiting} change${waiting > 1 ? "s" : ""} sending…`;
  fresh.textContent = `${offline ? "offline" : "live"} · data as of ${hhmm(fleet.asOf)}`;
  fresh.dataset.state = offline ? "offline" : "live";
  fresh.dataset.asOf = fleet.asOf || "";
}

// --- screens ---------------------------------------------------------------------------------

function loginScreen(message) {
  bar.hidden = true;
  const user = el("input", {id: "username", name: "username", autocomplete: "username", required: true});
  const pass = el("input", {id: "password", name: "password", type: "password", autocomplete: "current-password", required: true});
  const note = el("p", {class: "error", role: "alert"}, message || "");
  const form = el("form", {class: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    note.textContent = "";
    try {
      const issued = await api.signIn(user.value.trim(), pass.value);
      pass.value = "";
      const me = {...await api.call("GET", "/api/auth/me"), token_id: issued.token.id};
      sessionStorage.setItem(USER, JSON.stringify(me));
      await start(me);
    } catch (e) {
      note.textContent = e instanceof api.NoNetwork ? "No connection: signing in needs the server."
        : e.status === 401 ? "Wrong username or password." : e.message;
    }
  }},
    el("h1", {}, "Fleet counter"),
    el("label", {for: "username"}, "Username"), user,
    el("label", {for: "password"}, "Password"), pass,
    el("button", {type: "submit", class: "primary"}, "Sign in"), note);
  view.replaceChildren(form);
  user.focus();
}

function conflictCards() {
  return fleet.queue.filter((q) => q.state === "conflict").map((q) => {
    const now = q.current || fleet.vehicles.get(q.vehicle_id);
    const theirs = now ? `${WORDS[now.status] || now.status}` + (now.updated_by_name ? ` (by ${now.updated_by_name}, ${hhmm(now.last_updated)})` : "") : "unknown";
    return el("section", {class: "conflict", "data-plate": q.plate, role: "alert"},
      el("h3", {}, `${q.plate}: your change did not apply`),
      el("p", {}, (q.problem && q.problem.detail) || "the car changed meanwhile"),
      el("div", {class: "choices"},
        el("div", {class: "state mine"}, el("b", {}, "Yours "), `${WORDS[q.from_status] || q.from_status} → ${WORDS[q.to_status] || q.to_status}`, el("small", {}, ` made ${hhmm(q.made_at)}`)),
        el("div", {class: "state theirs"}, el("b", {}, "Now "), theirs)),
      el("div", {class: "actions"},
        el("button", {type: "button", class: "primary", onclick: () => fleet.resolve(q.id, false)}, `Keep ${now ? WORDS[now.status] || now.status : "current"}`),
        el("button", {type: "button", onclick: () => fleet.resolve(q.id, true)}, `Apply ${WORDS[q.to_status] || q.to_status}`)));
  });
}

function sortedVehicles() {
  return [...fleet.vehicles.values()].map((v) => fleet.shown(v)).sort((a, b) =>
    (b.overdue - a.overdue) || (ORDER.indexOf(a.status) - ORDER.indexOf(b.status)) || a.plate.localeCompare(b.plate));
}

function vehicleRow(v) {
  const zone = v.time_zone || lotZone();
  const right = SWIPE_RIGHT[v.status];
  const canLeft = transitions && (transitions[v.status] || []).includes(SWIPE_LEFT[0]);
  const row = el("li", {class: "vehicle", "data-id": v.vehicle_id, "data-plate": v.plate, "data-status": v.status},
    el("div", {class: "hint right", "aria-hidden": "true"}, right ? right[1] : ""),
    el("div", {class: "hint left", "aria-hidden": "true"}, canLeft ? SWIPE_LEFT[1] : ""),
    el("a", {class: "card", href: `#/vehicle/${v.vehicle_id}`, draggable: "false"},
      el("div", {class: "line1"}, el("b", {class: "plate"}, v.plate), badge(v),
         v.pending ? el("span", {class: "pending", title: "waiting to be sent"}, "pending") : null),
      el("div", {class: "line2"}, `${v.make} ${v.model} · ${v.category_code}`),
      v.customer_name ? el("div", {class: "line3"}, v.customer_name,
        v.expected_available_at ? ` · back ${shown(v.expected_available_at, zone)}` : "",
        v.overdue ? el("span", {class: "late"}, ` · ${late(v.expected_available_at)}`) : null) : null));
  swipe(row, v, right, canLeft);
  return row;
}

function swipe(row, v, right, canLeft) {
  const card = row.querySelector(".card");
  let x0 = null, dx = 0, moved = false;
  row.addEventListener("pointerdown", (ev) => { x0 = ev.clientX; dx = 0; moved = false; swiping = true; });
  row.addEventListener("pointermove", (ev) => {
    if (x0 === null) return;
    dx = ev.clientX - x0;
    if (!moved && Math.abs(dx) > 8) {
      moved = true;
      // A swipe from here on (a tap stays a tap): keep the moves when the finger leaves the row.
      row.setPointerCapture(ev.pointerId);
    }
    if (moved) card.style.transform = `translateX(${dx}px)`;
  });
  const end = async () => {
    if (x0 === null) return;
    x0 = null;
    swiping = false;
    card.style.transform = "";
    const wide = row.clientWidth * 0.3;
    if (dx > wide && right) await quickChange(v, right[0]);
    else if (dx < -wide && canLeft) await quickChange(v, SWIPE_LEFT[0]);
  };
  row.addEventListener("pointerup", end);
  row.addEventListener("pointercancel", () => { x0 = null; swiping = false; card.style.transform = ""; });
  // A swipe is not a tap: do not open the vehicle.
  card.addEventListener("click", (ev) => { if (moved) ev.preventDefault(); });
}

async function quickChange(v, to) {
  const item = await fleet.change(fleet.vehicles.get(v.vehicle_id), to, REASONS[to] || `set to ${to}`, {delay: UNDO_MS});
  toast(`${v.plate} → ${WORDS[to]}`, {level: "success", ms: UNDO_MS,
    action: {label: "Undo", run: async () => {
      if (await fleet.undo(item.id)) toast(`${v.plate}: change undone`);
      else toast(`${v.plate}: already sent, change it back from the vehicle`, {level: "warning"});
    }}});
}

function boardScreen() {
  const vehicles = sortedVehicles();
  const counts = {};
  for (const v of vehicles) { const k = v.overdue ? "overdue" : v.status; counts[k] = (counts[k] || 0) + 1; }
  const chips = ["overdue", ...ORDER].filter((k) => counts[k]).map((k) =>
    el("span", {class: `chip badge ${k}`}, `${counts[k]} ${k === "overdue" ? "overdue" : WORDS[k]}`));
  view.replaceChildren(
    el("h1", {}, `Lot ${lotName()}`),
    ...conflictCards(),
    el("div", {class: "chips"}, chips),
    vehicles.length ? el("ul", {class: "board", "aria-label": "vehicles on this lot"}, vehicles.map(vehicleRow))
      : el("p", {class: "empty"}, fleet.seq === null ? "Loading the lot…" : "No vehicles at this lot."),
    el("p", {class: "help"}, "Swipe a car right for the next step (returned → cleaning → available), left to send it to maintenance."));
}

function vehicleScreen(id) {
  const raw = fleet.vehicles.get(Number(id)) || elsewhere.get(Number(id));
  if (!raw) {
    view.replaceChildren(el("p", {class: "empty"}, fleet.online ? "Looking the car up…" : "This car is not on this lot's board, and looking it up needs a connection."));
    if (fleet.online) {
      // A car from another lot (a scanned label, say): read it once from the server.
      api.call("GET", `/api/vehicles/${Number(id)}/status`).then((v) => { elsewhere.set(v.vehicle_id, v); route(); })
        .catch((e) => view.replaceChildren(el("p", {class: "error", role: "alert"}, e.message)));
    }
    return;
  }
  const v = fleet.shown(raw);
  const zone = v.time_zone || lotZone();
  const rows = [
    ["Status", badge(v)], ["Vehicle", `${v.make} ${v.model} (${v.category_code})`],
    ["Where", v.whereabouts || v.location_code || ""],
    v.customer_name && ["Customer", v.customer_name],
    v.customer_phone && ["Phone", el("a", {href: `tel:${v.customer_phone}`}, v.customer_phone)],
    v.customer_email && ["E-mail", el("a", {href: `mailto:${v.customer_email}`}, v.customer_email)],
    v.expected_available_at && [v.status === "rented" ? "Expected back" : "Free again", `${shown(v.expected_available_at, zone)}${v.overdue ? ` (${late(v.expected_available_at)})` : ""}`],
    ["Last change", `${shown(v.last_updated, zone)}${v.updated_by_name ? ` by ${v.updated_by_name}` : ""}`],
  ].filter(Boolean);
  view.replaceChildren(
    el("p", {}, el("a", {href: "#/board", class: "back"}, "← Lot")),
    el("h1", {class: "plate"}, v.plate, " ", v.pending ? el("span", {class: "pending"}, "pending") : ""),
    ...conflictCards().filter((c) => c.dataset.plate === v.plate),
    el("dl", {class: "detail"}, rows.map(([k, val]) => [el("dt", {}, k), el("dd", {}, val)])),
    fleet.user.role === "analyst" ? el("p", {class: "help"}, "Your role can look, not change statuses.")
      : el("button", {type: "button", class: "primary wide", onclick: () => statusSheet(v)}, "Change status"));
}

function statusSheet(v) {
  const allowed = (transitions && transitions[v.status]) || [];
  const reason = el("input", {id: "reason", maxlength: "200", placeholder: "why (kept in the audit log)"});
  const close = () => { sheet.hidden = true; sheet.replaceChildren(); };
  sheet.replaceChildren(el("div", {class: "panel", role: "dialog", "aria-label": `change ${v.plate}`},
    el("h2", {}, `${v.plate}: ${WORDS[v.status]} →`),
    el("label", {for: "reason"}, "Reason"), reason,
    el("div", {class: "options"}, allowed.map((to) => el("button", {type: "button", "data-status": to,
      class: `badge ${to}`, onclick: async () => {
        close();
        await fleet.change(fleet.vehicles.get(v.vehicle_id) || elsewhere.get(v.vehicle_id), to, reason.value.trim() || REASONS[to] || `set to ${to}`);
        toast(fleet.online ? `${v.plate} → ${WORDS[to]}` : `${v.plate} → ${WORDS[to]}: queued, sent when back online`, {level: "success"});
      }}, WORDS[to] || to))),
    el("button", {type: "button", class: "ghost wide", onclick: close}, "Cancel")));
  sheet.hidden = false;
}

function searchScreen() {
  const zone = lotZone();
  const start = el("input", {id: "start", type: "datetime-local", value: instantToWall(new Date().toISOString(), zone)});
  const end = el("input", {id: "end", type: "datetime-local", value: instantToWall(new Date(Date.now() + 86400e3).toISOString(), zone)});
  const out = el("div", {class: "results", "aria-live": "polite"});
  const form = el("form", {class: "search", onsubmit: async (ev) => {
    ev.preventDefault();
    if (!fleet.online) { out.replaceChildren(el("p", {class: "empty"}, "Searching needs a connection; the lot board shows what is here now.")); return; }
    out.replaceChildren(el("p", {}, "Searching…"));
    try {
      const res = await api.call("POST", "/api/availability/search", {body: {
        location_id: fleet.locationId, start: wallToInstant(start.value, zone), end: wallToInstant(end.value, zone)}});
      out.replaceChildren(el("p", {}, `${res.results.length} cars free (times in ${zone})`),
        el("ul", {class: "hits"}, res.results.map((h) => el("li", {}, el("b", {}, h.plate), ` ${h.make} ${h.model} · ${h.category_code}`))));
    } catch (e) {
      out.replaceChildren(el("p", {class: "error", role: "alert"}, e.message));
    }
  }},
    el("label", {for: "start"}, `Pick-up (${zone})`), start,
    el("label", {for: "end"}, `Return (${zone})`), end,
    el("button", {type: "submit", class: "primary"}, "Search"));
  view.replaceChildren(el("h1", {}, `Free cars at ${lotName()}`), form, out);
}

// One overdue rule (the server's): online, the list is the server's overdue check for the
// rentals due back at this lot, with level and late fee; offline, the cars on this device's
// board that are past their return, said to be so.
function overdueItem(o) {
  return el("li", {"data-plate": o.plate},
    el("div", {}, el("b", {}, o.plate), " ", o.customer_name || "", el("span", {class: "late"}, ` · ${late(o.expected)}`)),
    el("div", {class: "fee", "data-vehicle": o.vehicle_id}, o.fee || ""),
    el("div", {class: "contact"},
      o.customer_phone ? el("a", {class: "button", href: `tel:${o.customer_phone}`}, "Call") : null,
      o.customer_phone ? el("a", {class: "button", href: `sms:${o.customer_phone}`}, "Text") : null,
      o.customer_email ? el("a", {class: "button", href: `mailto:${o.customer_email}?subject=${encodeURIComponent(`Your rental ${o.plate}`)}`}, "E-mail") : null));
}

async function overdueScreen() {
  const here = () => (location.hash || "").startsWith("#/overdue");  // the user may move on
  const render = (items, note) => view.replaceChildren(el("h1", {}, `Overdue at ${lotName()}`),
    ...(note ? [el("p", {class: "note"}, note)] : []),
    items.length ? el("ul", {class: "overdue"}, items.map(overdueItem)) : el("p", {class: "empty"}, "Nothing overdue."));
  const local = sortedVehicles().filter((v) => v.overdue).map((v) => ({...v, expected: v.expected_available_at}));
  const board = "these are the cars on this lot's board past their return";
  if (!fleet.online) {
    render(local, local.length ? `Offline: ${board}; levels and fees come back with the connection.` : null);
    return;
  }
  render(local, "Checking with the server…");
  try {
    const q = fleet.locationId ? `?location_id=${fleet.locationId}` : "";
    const due = await api.call("GET", `/api/availability/overdue${q}`);
    if (here()) render(due.map((o) => ({...o, expected: o.expected_return,
      fee: `level ${o.escalation_level} · estimated late fee ${o.estimated_late_fee}`})));
  } catch (e) {
    if (here()) render(local, `The server's overdue check could not be read: ${board}.`);
  }
}

// --- scanning ---------------------------------------------------------------------------------

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = el("script", {src});
    s.onload = resolve;
    s.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(s);
  });
}

// The browser's own BarcodeDetector where it reads QR codes; jsQR (vendored from npm) elsewhere.
async function decoder() {
  if ("BarcodeDetector" in window) {
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (formats.includes("qr_code")) {
        const wanted = formats.filter((f) => ["qr_code", "code_128", "code_39", "data_matrix"].includes(f));
        const d = new window.BarcodeDetector({formats: wanted});
        return {name: "BarcodeDetector", read: async (canvas) => { const r = await d.detect(canvas); return r.length ? r[0].rawValue : null; }};
      }
    } catch (e) { /* fall back to jsQR */ }
  }
  if (!window.jsQR) await loadScript("vendor/jsQR.js");
  return {name: "jsQR", read: async (canvas, ctx) => {
    const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const hit = window.jsQR(img.data, img.width, img.height, {inversionAttempts: "dontInvert"});
    return hit ? hit.data : null;
  }};
}

// What a label says -> the vehicle: the label's URL (…/vehicle?id=N), a plate or a VIN.
function scanned(text) {
  try {
    const id = Number(new URL(text).searchParams.get("id"));
    if (id) return id;
  } catch (e) { /* not a URL: a plate or VIN barcode */ }
  const q = squeeze(text);
  const hit = [...fleet.vehicles.values()].find((v) => squeeze(v.plate) === q || (v.vin && squeeze(v.vin) === q));
  return hit ? hit.vehicle_id : null;
}

async function scanScreen() {
  const video = el("video", {class: "camera", playsinline: true, muted: true, autoplay: true});
  const note = el("p", {class: "help", role: "status"}, "Point the camera at the car's QR label or its plate or VIN barcode.");
  const typed = el("input", {id: "scan-typed", type: "search", placeholder: "or type part of the plate", autocomplete: "off"});
  const form = el("form", {onsubmit: (ev) => { ev.preventDefault(); findPlate(typed.value); }}, typed);
  view.replaceChildren(el("h1", {}, "Scan a label"), video, note, form);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}, audio: false});
  } catch (e) {
    note.textContent = "No camera here (or no permission to use it): type the plate instead.";
    return;
  }
  const stop = () => { for (const t of stream.getTracks()) t.stop(); };
  stopCamera = stop;
  video.srcObject = stream;
  const reader = await decoder();
  video.dataset.decoder = reader.name;
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  const tick = async () => {
    if (stopCamera !== stop) return;  // the user left the screen
    if (video.readyState >= 2 && video.videoWidth) {
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      ctx.drawImage(video, 0, 0);
      const text = await reader.read(canvas, ctx);
      const id = text && scanned(text);
      if (id) { stop(); stopCamera = null; location.hash = `#/vehicle/${id}`; return; }
      if (text) note.textContent = `Read "${text}": no car of this lot has it.`;
    }
    setTimeout(tick, 150);
  };
  tick();
}

function findPlate(text) {
  const q = squeeze(text);
  const hit = q && [...fleet.vehicles.values()].find((v) => squeeze(v.plate).includes(q));
  if (hit) location.hash = `#/vehicle/${hit.vehicle_id}`;
  else toast(`No car matching "${q}" on this lot`, {level: "warning"});
}
async function alertsScreen() {
  const state = el("p", {class: "push-state", "aria-live": "polite"});
  const problem = el("p", {class: "error", role: "alert"});
  const toggle = el("button", {type: "button", class: "primary wide", id: "push-toggle"});
  const kinds = el("fieldset", {class: "kinds"}, el("legend", {}, "Which alerts (on all my devices)"));
  const devices = el("ul", {class: "devices", "aria-label": "my devices with alerts"});
  view.replaceChildren(el("h1", {}, "Alerts"),
    el("section", {class: "panel-box"}, el("h2", {}, "This device"), state, toggle, problem),
    el("section", {class: "panel-box"}, kinds),
    el("section", {class: "panel-box"}, el("h2", {}, "My devices"), devices));
  if (!fleet.online) {
    state.textContent = "Alert settings need a connection; they are kept on the server.";
    toggle.hidden = true;
    return;
  }
  const mine = await push.deviceId();
  const refresh = async () => {
    const on = push.permission() === "granted" && Boolean(await push.current());
    const list = await api.call("GET", "/api/push/subscriptions");
    const here = on && list.some((d) => d.device_id === mine);
    state.textContent = push.permission() === "unsupported" ? "This browser cannot receive push alerts."
      : push.permission() === "denied" ? "Notifications are blocked for this site in the browser's settings."
      : here ? "Alerts are on: they arrive here even when the app is closed." : "Alerts are off on this device.";
    toggle.textContent = here ? "Turn alerts off on this device" : "Turn alerts on for this device";
    toggle.dataset.on = here ? "yes" : "no";
    devices.replaceChildren(...(list.length ? list.map((d) => el("li", {"data-device": d.device_id},
      el("b", {}, d.device_label || "a device"), d.device_id === mine ? " (this one)" : "",
      el("div", {class: "help"}, `since ${shown(d.created_at, lotZone())}`,
        d.last_sent_at ? ` · last alert ${shown(d.last_sent_at, lotZone())}` : " · no alert yet")))
      : [el("li", {class: "empty"}, "No device receives your alerts yet.")]));
  };
  toggle.addEventListener("click", async () => {
    problem.textContent = "";
    toggle.disabled = true;
    try {
      if (toggle.dataset.on === "yes") await push.turnOff(); else await push.turnOn();
      await refresh();
    } catch (e) {
      problem.textContent = e instanceof api.NoNetwork ? "No connection: try again when online." : e.message;
    } finally { toggle.disabled = false; }
  });
  try {
    const prefs = await api.call("GET", "/api/preferences");
    for (const [key, words] of push.KINDS) {
      const box = el("input", {type: "checkbox", id: key, checked: prefs[key], onchange: async () => {
        box.disabled = true;
        try {
          await api.call("PATCH", "/api/preferences", {body: {[key]: box.checked}});
          toast(`${words}: ${box.checked ? "on" : "off"}`, {level: "success", ms: 3000});
        } catch (e) { box.checked = !box.checked; toast(`Not saved: ${e.message}`, {level: "error"}); }
        finally { box.disabled = false; }
      }});
      kinds.append(el("label", {class: "check", for: key}, box, " ", words));
    }
    kinds.append(el("p", {class: "help"}, "Alerts come for your own lot (or the lots you chose on the dashboard)."));
    await refresh();
  } catch (e) {
    problem.textContent = e instanceof api.NoNetwork ? "No connection: try again when online." : e.message;
  }
}

// --- routing and start -----------------------------------------------------------------------

function route() {
  if (!fleet.user) return;
  const [, screen, arg] = (location.hash || "#/board").split("/");
  if (stopCamera && screen !== "scan") { stopCamera(); stopCamera = null; }
  for (const a of bar.querySelectorAll("nav a")) a.toggleAttribute("aria-current", a.dataset.screen === screen);
  if (screen === "vehicle") vehicleScreen(arg);
  else if (screen === "search") searchScreen();
  else if (screen === "overdue") overdueScreen();
  else if (screen === "alerts") alertsScreen();
  else if (screen === "scan") { if (!stopCamera) scanScreen(); }
  else boardScreen();
  showConnection();
}

async function reference() {
  // Cached on the device, so the app knows its lot and the allowed changes offline too.
  try {
    [locations, transitions] = await Promise.all([api.call("GET", "/api/locations"), api.call("GET", "/api/statuses")]);
    await store.put("reference", {locations, transitions});
  } catch (e) {
    const saved = await store.get("reference");
    if (saved) ({locations, transitions} = saved);
  }
}

async function start(me) {
  bar.hidden = false;
  await fleet.load(me);
  await reference();
  route();
  fleet.reconnect();
  // This device's alerts now go to whoever signed in (a renewed endpoint is learnt, too).
  push.claim().then((moved) => {
    if (moved && (location.hash || "").startsWith("#/alerts")) route();
  }).catch(() => null);
}

let swiping = false;
fleet.addEventListener("change", () => {
  // Live screens redraw; a form being filled in or a finger mid-swipe is left alone.
  const screen = (location.hash || "#/board").split("/")[1];
  if (fleet.user && !swiping && sheet.hidden && !["search", "scan", "alerts"].includes(screen)) route();
  else showConnection();
});
fleet.addEventListener("connection", showConnection);
fleet.addEventListener("fresh", showConnection);
// The token was revoked or ran out (a 401, or the stream's "unauthorized"): back to sign-in.
// The queue stays in IndexedDB and goes out after the next sign-in on this device.
fleet.addEventListener("signed-out", () => {
  if (!fleet.user) return;  // the stream and a request may both say so
  const waiting = fleet.queue.filter((q) => q.state === "pending" && q.user_id === fleet.user.id).length;
  fleet.closeStream();
  api.forget();
  sessionStorage.removeItem(USER);
  fleet.user = null;
  loginScreen("Your session ended: sign in again." + (waiting ? ` ${waiting} queued change${waiting > 1 ? "s are" : " is"} kept and sent after you sign in.` : ""));
});
window.addEventListener("hashchange", route);
window.addEventListener("online", () => fleet.setOnline(true));
window.addEventListener("offline", () => fleet.setOnline(false));
// A lost connection that the browser did not notice: probe now and then.
setInterval(() => { if (fleet.user && !fleet.online) fleet.reconnect(); }, 10000);
setInterval(showConnection, 15000);
document.getElementById("find").addEventListener("submit", (ev) => {
  ev.preventDefault();
  findPlate(document.getElementById("find-q").value);
});
document.getElementById("signout").addEventListener("click", async () => {
  const me = JSON.parse(sessionStorage.getItem(USER) || "null");
  sessionStorage.removeItem(USER);
  await push.release();
  try { await api.signOut(me && me.token_id); } catch (e) { api.forget(); }
  location.reload();
});

if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js", {scope: "/counter/"});
const me = api.token() && JSON.parse(sessionStorage.getItem(USER) || "null");
if (me) start(me); else loginScreen();
