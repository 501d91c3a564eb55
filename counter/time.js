// Times as people at the lot read them: in the lot's IANA zone, whatever the device says.

const parts = (date, zone) => Object.fromEntries(
  new Intl.DateTimeFormat("en-GB", {timeZone: zone, hourCycle: "h23", year: "numeric",
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"})
    .formatToParts(date).filter((p) => p.type !== "literal").map((p) => [p.type, Number(p.value)]));

// Milliseconds the zone is ahead of UTC at this instant.
function offset(date, zone) {
  const p = parts(date, zone);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - date.getTime() + date.getMilliseconds();
}

// "2026-12-02T09:30" read in `zone` -> the instant, as ISO 8601 with Z.
export function wallToInstant(wall, zone) {
  const [d, t] = wall.split("T");
  const [y, m, day] = d.split("-").map(Number);
  const [hh, mm] = (t || "00:00").split(":").map(Number);
  const guess = Date.UTC(y, m - 1, day, hh, mm);
  let at = guess - offset(new Date(guess), zone);
  at = guess - offset(new Date(at), zone);  // again, in case the guess crossed a DST change
  return new Date(at).toISOString();
}

// The instant as a datetime-local value in `zone`.
export function instantToWall(iso, zone) {
  const p = parts(new Date(iso), zone);
  const two = (n) => String(n).padStart(2, "0");
  return `${p.year}-${two(p.month)}-${two(p.day)}T${two(p.hour)}:${two(p.minute)}`;
}

export function shown(iso, zone, withDay = true) {
  if (!iso) return "";
  const opts = {timeZone: zone || "UTC", hour: "2-digit", minute: "2-digit", hourCycle: "h23"};
  if (withDay) Object.assign(opts, {weekday: "short", day: "2-digit", month: "short"});
  return new Intl.DateTimeFormat("en-GB", opts).format(new Date(iso));
}

export function hhmm(iso) {
  if (!iso) return "--:--";
  return new Date(iso).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

export function late(iso) {
  const min = Math.floor((Date.now() - new Date(iso).getTime()) / 60000);
  if (min <= 0) return "";
  const h = Math.floor(min / 60);
  return h ? `${h} h ${min % 60} min late` : `${min} min late`;
}
