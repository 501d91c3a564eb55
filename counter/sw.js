// The counter app's service worker: keeps the app shell so the app opens with no network.
// Data never passes through here: /api/ requests go straight to the network, and the app
// keeps its own snapshot and queue in IndexedDB. Bump VERSION when a shell file changes.
const VERSION = "counter-v1";
const SHELL = ["./", "index.html", "app.css", "app.js", "api.js", "store.js", "sync.js",
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
