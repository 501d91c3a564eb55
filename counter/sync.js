// The lot's vehicles kept current: a snapshot in IndexedDB with the event sequence it is
// consistent with, catch-up with ?since=SEQ, then the live SSE stream filtered to the lot;
// and the queue of status changes made offline, replayed in order exactly once.
import * as api from "./api.js";
import * as store from "./store.js";

// Wait this long after a swipe before sending, so the undo toast can take it back.
export const UNDO_MS = 5000;
// A stream silent this much longer than two heartbeats is dead (35 s at the default 15 s).
const SILENCE_SLACK_MS = 5000;
// A dropped stream that EventSource has not reopened in this long: the server is unreachable.
const RETRY_GRACE_MS = 5000;

export class Fleet extends EventTarget {
  constructor() {
    super();
    this.vehicles = new Map();  // vehicle id -> the server's VehicleStatus
    this.seq = null;
    this.asOf = null;  // when the server last confirmed this data (ISO)
    this.locationId = null;
    this.online = navigator.onLine;
    this.queue = [];
    this.source = null;
    this.replaying = false;
    this.user = null;
  }

  emit(what) { this.dispatchEvent(new Event(what)); }

  async load(user) {
    this.user = user;
    this.locationId = user.home_location_id;
    const saved = await store.get(`snapshot:${this.locationId ?? "all"}`);
    if (saved) {
      this.vehicles = new Map(saved.vehicles.map((v) => [v.vehicle_id, v]));
      this.seq = saved.seq;
      this.asOf = saved.as_of;
    }
    this.queue = await store.queued();
    this.emit("change");
  }

  async persist() {
    await store.put(`snapshot:${this.locationId ?? "all"}`, {
      seq: this.seq, as_of: this.asOf, vehicles: [...this.vehicles.values()],
    });
  }

  setOnline(online) {
    if (this.online === online) return;
    this.online = online;
    this.emit("connection");
    if (online) this.reconnect();
    else this.closeStream();
  }

  // Fetch what changed since our sequence (or everything), then follow the stream.
  async refresh() {
    const q = new URLSearchParams();
    if (this.locationId) q.set("location_id", String(this.locationId));
    if (this.seq !== null) q.set("since", String(this.seq));
    let snap;
    try {
      snap = await api.call("GET", `/api/availability/realtime?${q}`);
    } catch (e) {
      if (e instanceof api.ApiError && e.status === 422 && this.seq !== null) {
        this.seq = null;  // our sequence is from another database: start over
        return this.refresh();
      }
      throw e;
    }
    if (snap.full) this.vehicles = new Map();
    for (const v of snap.vehicles) {
      if (this.locationId && v.location_id !== this.locationId) this.vehicles.delete(v.vehicle_id);
      else this.vehicles.set(v.vehicle_id, v);
    }
    this.seq = snap.seq;
    this.asOf = snap.as_of;
    await this.persist();
    this.setOnline(true);
    this.emit("change");
  }

  async reconnect() {
    try {
      await this.replay();
      await this.refresh();
      this.follow();
    } catch (e) {
      if (e instanceof api.NoNetwork) this.setOnline(false);
      else if (e instanceof api.ApiError && e.status === 401) this.emit("signed-out");
      else console.error(e);
    }
  }

  follow() {
    this.closeStream();
    if (!this.online || this.seq === null) return;
    const source = new EventSource(api.eventsUrl(this.seq, this.locationId));
    this.watch(source);
    let pending = null;
    const later = () => {
      // Events only say that something changed: one catch-up read shows it all.
      clearTimeout(pending);
      pending = setTimeout(() => this.refresh().catch(() => this.setOnline(false)), 150);
    };
    source.onmessage = later;
    source.addEventListener("batch", later);
    source.addEventListener("heartbeat", () => {
      this.asOf = new Date().toISOString();
      this.emit("fresh");
    });
    source.addEventListener("reload", () => { this.seq = null; later(); });
    // The token was revoked, ran out, or its user was deactivated: the server says so and
    // ends the stream. Back to sign-in (the queue stays on the device for the next one).
    source.addEventListener("unauthorized", () => {
      this.closeStream();
      this.emit("signed-out");
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CONNECTING && !this.droppedAt) this.droppedAt = Date.now();
      if (source.readyState === EventSource.CLOSED) {
        // EventSource hides the status that closed it: a refused token and a dead server
        // look alike. Ask once which it was.
        this.source = null;
        api.call("GET", "/api/auth/me").then(
          () => this.setOnline(false),
          (e) => {
            if (e instanceof api.ApiError && e.status === 401) this.emit("signed-out");
            else this.setOnline(false);
          },
        );
      }
    };
    this.source = source;
  }

  // EventSource retries a dead server by itself and says nothing while it does, and a link
  // that dies without a word (a tunnel, a sleeping router) looks open. So: every frame counts
  // as a sign of life; silence for two heartbeat intervals, or a reconnect that has not
  // succeeded within RETRY_GRACE_MS, means offline. Back online once a catch-up read works.
  watch(source) {
    this.heardAt = Date.now();
    this.droppedAt = null;
    this.heartbeatMs = this.heartbeatMs || 15000;
    const heard = () => { this.heardAt = Date.now(); this.droppedAt = null; };
    source.addEventListener("open", heard);
    source.addEventListener("message", heard);
    for (const kind of ["batch", "heartbeat", "reload"]) source.addEventListener(kind, heard);
    source.addEventListener("hello", (e) => {
      heard();
      const beat = Number((JSON.parse(e.data) || {}).heartbeat);
      if (beat > 0) this.heartbeatMs = beat * 1000;
    });
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => {
      if (this.source !== source) return;
      const now = Date.now();
      const silent = now - this.heardAt > 2 * this.heartbeatMs + SILENCE_SLACK_MS;
      const retrying = this.droppedAt && now - this.droppedAt > RETRY_GRACE_MS;
      if (silent || retrying) {
        this.closeStream();
        this.setOnline(false);
      }
    }, 1000);
  }

  closeStream() {
    clearInterval(this.watchdog);
    if (this.source) this.source.close();
    this.source = null;
  }

  // --- status changes ------------------------------------------------------------------

  // What a vehicle shows: the server's state, or the newest change still queued for it.
  shown(v) {
    const mine = this.queue.filter((q) => q.vehicle_id === v.vehicle_id && q.state !== "conflict");
    return mine.length ? {...v, status: mine[mine.length - 1].to_status, pending: true} : v;
  }

  async change(v, to, reason, {delay = 0} = {}) {
    const before = this.queue.filter((q) => q.vehicle_id === v.vehicle_id && q.state === "pending");
    const item = await store.enqueue({
      id: crypto.randomUUID(),  // the Idempotency-Key: a replay is applied once
      vehicle_id: v.vehicle_id,
      plate: v.plate,
      from_status: before.length ? before[before.length - 1].to_status : v.status,
      to_status: to,
      // A change queued behind another for the same car expects the version that one makes.
      expected_version: v.version + before.length,
      reason,
      user_id: this.user.id,
      made_at: new Date().toISOString(),
      send_after: Date.now() + delay,
      state: "pending",
    });
    this.queue.push(item);
    this.emit("change");
    if (delay) setTimeout(() => this.replay(), delay + 50);
    else await this.replay();
    return item;
  }

  async undo(id) {
    const item = this.queue.find((q) => q.id === id);
    if (!item || item.state !== "pending" || item.sent) return false;
    await store.drop(id);
    this.queue = this.queue.filter((q) => q.id !== id);
    this.emit("change");
    return true;
  }

  // Send queued changes, oldest first; stop at the first without network.
  async replay() {
    if (this.replaying || !api.token()) return;
    this.replaying = true;
    try {
      const versions = new Map();  // vehicle id -> version the last applied change made
      for (const item of [...this.queue]) {
        if (item.state !== "pending" || item.user_id !== this.user.id) continue;
        if (item.send_after > Date.now()) break;  // keep the order: later ones wait too
        const expected = versions.get(item.vehicle_id) ?? item.expected_version;
        item.sent = true;
        await store.save(item);
        try {
          const out = await api.call("PUT", `/api/vehicles/${item.vehicle_id}/status`, {
            headers: {"Idempotency-Key": item.id, "If-Match": `"${expected}"`},
            body: {status: item.to_status, reason: item.reason,
                   metadata: {source: "counter", queued_at: item.made_at}},
          });
          versions.set(item.vehicle_id, out.status.version);
          this.vehicles.set(item.vehicle_id, out.status);
          await store.drop(item.id);
          this.queue = this.queue.filter((q) => q.id !== item.id);
        } catch (e) {
          if (e instanceof api.NoNetwork) { this.setOnline(false); break; }
          if (e instanceof api.ApiError && e.status === 401) { this.emit("signed-out"); break; }
          if (e instanceof api.ApiError && (e.status === 409 || e.status === 422)) {
            // Lost to a newer change, or no longer allowed: the user chooses, never us.
            item.state = "conflict";
            item.problem = e.problem;
            const current = e.problem.current;
            item.current = current && typeof current === "object" ? current : null;
            if (item.current) this.vehicles.set(item.vehicle_id, item.current);
            await store.save(item);
            versions.delete(item.vehicle_id);
            // Later changes to the same car were built on this one: they wait for the choice.
            for (const other of this.queue) {
              if (other !== item && other.vehicle_id === item.vehicle_id && other.state === "pending") {
                other.state = "conflict";
                other.problem = {detail: "an earlier change to this car is waiting for your choice"};
                await store.save(other);
              }
            }
            continue;
          }
          throw e;
        }
      }
      await this.persist();
    } finally {
      this.replaying = false;
      this.emit("change");
    }
  }

  // The user's answer to a conflict: keep what the server has, or apply theirs on top.
  async resolve(id, keepMine) {
    const item = this.queue.find((q) => q.id === id);
    if (!item) return;
    if (!keepMine) {
      await store.drop(id);
      this.queue = this.queue.filter((q) => q.id !== id);
      this.emit("change");
      return;
    }
    const now = this.vehicles.get(item.vehicle_id);
    Object.assign(item, {
      id: crypto.randomUUID(), state: "pending", sent: false, problem: null, current: null,
      expected_version: now ? now.version : item.expected_version, send_after: 0,
      from_status: now ? now.status : item.from_status,
    });
    await store.drop(id);
    await store.save(item);
    this.emit("change");
    await this.replay();
  }
}
