// ferry's web UI: refreshes the page's content in place every few seconds
// (no reload), and asks before a form marked data-confirm is sent.
"use strict";
(function () {
  const live = document.getElementById("live");
  const state = document.getElementById("live-state");
  if (!live) return;
  const period = parseInt(live.dataset.refresh || "3000", 10);
  let busy = false;

  function editing() {
    const a = document.activeElement;
    return a && live.contains(a) && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT");
  }

  async function refresh() {
    if (busy || live.dataset.static || document.visibilityState !== "visible" || editing()) return;
    busy = true;
    try {
      const r = await fetch(location.href, { headers: { "X-Ferry-Live": "1" }, credentials: "same-origin", cache: "no-store" });
      if (r.ok) {
        const html = await r.text();
        if (html !== live.innerHTML) live.innerHTML = html;
        state.textContent = "live · " + new Date().toLocaleTimeString();
        state.className = "";
      } else if (r.status === 401) {
        state.textContent = "signed out: reload to sign in";
        state.className = "stale";
      } else {
        state.textContent = "not refreshed (" + r.status + ")";
        state.className = "stale";
      }
    } catch (e) {
      state.textContent = "ferry unreachable; retrying";
      state.className = "stale";
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, period);

  document.addEventListener("submit", function (ev) {
    const f = ev.target;
    if (f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) ev.preventDefault();
  });
})();
