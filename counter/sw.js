// The counter app's service worker: keeps the app shell so the app opens with no network.
// Data never passes through here: /api/ requests go straight to the network, and the app
// keeps its own snapshot and queue in IndexedDB. The server writes a digest of the app's
// files into VERSION (api/routes/counter.py), so any changed file installs a fresh cache.
const VERSION = "counter-dev";
const SHELL = ["./", "index.html", "app.css", "app.js", "api.js", "push.js", "store.js", "sync.js",
  "time.js", "manifest.webmanifest", "icon.svg", "icon-192.png", "icon-512.png"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== VERSION) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (!url.pathname.startsWith("/counter/")) return;  // the API and the dashboard: network only
  event.respondWith((async () => {
    const cache = await caches.open(VERSION);
    const key = event.request.mode === "navigate" ? "index.html" : event.request;
    const hit = await cache.match(key, {ignoreSearch: true});
    // Cached first (a tablet on a weak network opens at once), refreshed behind the scenes.
    const fresh = fetch(event.request).then((r) => {
      if (r.ok && event.request.mode !== "navigate") cache.put(event.request, r.clone());
      return r;
    });
    if (hit) { event.waitUntil(fresh.catch(() => null)); return hit; }
    return fresh;
  })());
});

// Web Push: alerts the server sent (pipeline/notify.py push_payload) shown as notifications,
// also when no tab is open. The same tag replaces the earlier alert for that rental or car.
self.addEventListener("push", (event) => {
  let m;
  try { m = event.data ? event.data.json() : {}; } catch (e) { m = {body: event.data.text()}; }
  const urgent = (m.level || 0) >= 3 || m.severity === "critical";
  event.waitUntil(self.registration.showNotification(m.title || "Fleet alert", {
    body: m.body || "", tag: m.tag || undefined, renotify: Boolean(m.tag), requireInteraction: urgent,
    icon: "icon-192.png", badge: "icon-192.png", data: {url: m.url || "/counter/", kind: m.kind},
  }));
});

// A tap opens the car in the app: an open counter tab is reused, else a new one opens.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL((event.notification.data && event.notification.data.url) || "/counter/", location.origin);
  if (url.origin !== location.origin || !url.pathname.startsWith("/counter/")) return;
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({type: "window", includeUncontrolled: true});
    const tab = open.find((c) => new URL(c.url).pathname.startsWith("/counter/"));
    if (!tab) return self.clients.openWindow(url.href);
    await tab.focus();
    return tab.navigate ? tab.navigate(url.href).catch(() => null) : null;
  })());
});
