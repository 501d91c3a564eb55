// Web Push on this device: the browser's subscription, registered with the server for the
// signed-in user. The device keeps its own id (IndexedDB), so turning alerts on again
// replaces its subscription instead of adding one, and a shared tablet moves to whoever
// signs in next. What is pushed is chosen per user (the preferences), not per device.
import * as api from "./api.js";
import * as store from "./store.js";

const DEVICE = "push.device";

export const KINDS = [
  ["push_overdue", "Overdue rentals from level 2 (2 h late)"],
  ["push_conflicts", "New conflicts on a car at my lot"],
  ["push_rollbacks", "Status changes rolled back"],
];

export class PushProblem extends Error {}

export function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

export function permission() {
  return supported() ? Notification.permission : "unsupported";
}

export async function deviceId() {
  let id = await store.get(DEVICE);
  if (!id) {
    id = crypto.randomUUID();
    await store.put(DEVICE, id);
  }
  return id;
}

function label() {
  const ua = navigator.userAgent;
  const kind = /iPad/.test(ua) ? "iPad" : /iPhone/.test(ua) ? "iPhone"
    : /Android/.test(ua) ? (/Mobile/.test(ua) ? "Android phone" : "Android tablet")
    : "browser";
  return `${kind}, ${screen.width}×${screen.height}`;
}

function keyBytes(b64url) {
  const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((b64url.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function sameKey(buffer, bytes) {
  const a = new Uint8Array(buffer);
  return a.length === bytes.length && a.every((x, i) => x === bytes[i]);
}

async function registration() {
  return navigator.serviceWorker.ready;
}

export async function current() {
  if (!supported()) return null;
  return (await registration()).pushManager.getSubscription();
}

async function register(subscription) {
  const body = {...subscription.toJSON(), device_label: label()};
  return api.call("PUT", `/api/push/subscriptions/${await deviceId()}`, {body});
}

export async function turnOn() {
  if (!supported()) {
    throw new PushProblem("This browser cannot receive push alerts. On iPhone and iPad, add the"
      + " app to the home screen (Share → Add to Home Screen) and open it from there.");
  }
  const answer = await Notification.requestPermission();
  if (answer !== "granted") {
    throw new PushProblem(answer === "denied"
      ? "Notifications are blocked for this site: allow them in the browser's site settings, then try again."
      : "Notifications were not allowed: tap the button again and choose Allow.");
  }
  const key = keyBytes((await api.call("GET", "/api/push/key")).application_server_key);
  const reg = await registration();
  let sub = await reg.pushManager.getSubscription();
  // A subscription made for another server key cannot carry our messages: renew it.
  if (sub && sub.options.applicationServerKey && !sameKey(sub.options.applicationServerKey, key)) {
    await sub.unsubscribe();
    sub = null;
  }
  try {
    sub = sub || await reg.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: key});
  } catch (e) {
    throw new PushProblem(`The browser's push service did not give a subscription (${e.message}).`
      + " Check the connection and try again.");
  }
  return register(sub);
}

export async function turnOff() {
  const sub = await current();
  try {
    await api.call("DELETE", `/api/push/subscriptions/${await deviceId()}`);
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  if (sub) await sub.unsubscribe();
}

// At sign-in: if this device has alerts on, they now go to the user signed in here (and the
// server learns an endpoint the browser renewed meanwhile).
export async function claim() {
  if (permission() !== "granted") return null;
  const sub = await current();
  return sub ? register(sub) : null;
}

// At sign-out: the user's alerts stop coming to this device; the next user's claim() picks
// the subscription up again.
export async function release() {
  try {
    await api.call("DELETE", `/api/push/subscriptions/${await deviceId()}`);
  } catch (e) { /* none registered, or offline: the server removes it when it is gone */ }
}
