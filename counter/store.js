// What the app keeps on the device (IndexedDB): the last snapshot of the lot with the event
// sequence it is consistent with, and the queue of status changes not yet applied. Both
// survive closing the tab and restarting the device.
const DB_NAME = "fleet-counter";
const VERSION = 1;
let opened = null;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function db() {
  if (!opened) {
    const req = indexedDB.open(DB_NAME, VERSION);
    req.onupgradeneeded = () => {
      const d = req.result;
      d.createObjectStore("kv");
      // Queue items are replayed in the order they were made: `n` counts up.
      d.createObjectStore("queue", {keyPath: "id"}).createIndex("n", "n");
    };
    opened = request(req);
  }
  return opened;
}

async function tx(store, mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(store, mode);
    let result;
    Promise.resolve(fn(t.objectStore(store))).then((r) => { result = r; });
    t.oncomplete = () => resolve(result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error);
  });
}

export async function get(key) {
  return tx("kv", "readonly", (s) => request(s.get(key)));
}

export async function put(key, value) {
  return tx("kv", "readwrite", (s) => { s.put(value, key); });
}

export async function queued() {
  const items = await tx("queue", "readonly", (s) => request(s.index("n").getAll()));
  return items || [];
}

export async function enqueue(item) {
  return tx("queue", "readwrite", async (s) => {
    const all = await request(s.index("n").getAll());
    item.n = all.length ? all[all.length - 1].n + 1 : 1;
    s.put(item);
    return item;
  });
}

export async function save(item) {
  return tx("queue", "readwrite", (s) => { s.put(item); });
}

export async function drop(id) {
  return tx("queue", "readwrite", (s) => { s.delete(id); });
}
