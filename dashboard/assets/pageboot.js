// Loaded in the head of every dashboard page, before Bokeh has anything to show.
//
// A page's content arrives over its WebSocket after the scripts have loaded. If that never
// happens (the server restarted between the page and its socket, the session token ran out
// while a slow link fetched the scripts, the socket was refused), Bokeh leaves the page white
// and tries nothing more. So: a page with no document some seconds after it loaded reloads
// itself, a few times close together, then every half minute with a line saying so.
(() => {
  // After the load event: the socket and the document take < 2 s here, and a busy machine
  // must not be made busier by pages reloading while their documents are on the way.
  const WAIT_MS = 20000;
  const QUICK_TRIES = 3;
  const LATER_MS = 30000;
  const key = "fleet-page-reloads:" + location.pathname + location.search;

  function rendered() {
    const bk = window.Bokeh;
    return !!(bk && bk.documents && bk.documents.length);
  }

  function note(text) {
    let line = document.getElementById("fleet-boot-note");
    if (!line) {
      line = document.createElement("p");
      line.id = "fleet-boot-note";
      line.setAttribute("role", "status");
      line.style.cssText = "font: 16px system-ui, sans-serif; margin: 2em; color: #333";
      document.body.prepend(line);
    }
    line.textContent = text;
  }

  function check() {
    if (rendered()) {
      sessionStorage.removeItem(key);
      return;
    }
    const tries = Number(sessionStorage.getItem(key) || 0);
    sessionStorage.setItem(key, String(tries + 1));
    if (tries < QUICK_TRIES) {
      note("Connecting to the server…");
      location.reload();
      return;
    }
    note("This page could not reach the server; trying again every 30 seconds.");
    setTimeout(() => {
      if (!rendered()) {
        location.reload();
        return;
      }
      sessionStorage.removeItem(key);  // it came after all: keep it
      document.getElementById("fleet-boot-note")?.remove();
    }, LATER_MS);
  }

  window.addEventListener("load", () => {
    const started = Date.now();
    const timer = setInterval(() => {
      if (rendered()) {
        clearInterval(timer);
        sessionStorage.removeItem(key);
      } else if (Date.now() - started >= WAIT_MS) {
        clearInterval(timer);
        check();
      }
    }, 500);
  });
})();
