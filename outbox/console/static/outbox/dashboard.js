// The dashboard refreshes itself: every N seconds it fetches its own page and swaps in the
// new #dashboard-live. No library, no CDN. The switch's choice sticks in localStorage, and
// `?refresh=0` in the address turns it off on the server side (no data-refresh at all).
(function () {
  "use strict";
  var live = document.getElementById("dashboard-live");
  var toggle = document.getElementById("dashboard-refresh");
  if (!live || !toggle) { return; }
  var seconds = parseInt(live.getAttribute("data-refresh") || "0", 10);
  var KEY = "outbox.dashboard.refresh";
  if (!(seconds > 0)) { toggle.checked = false; toggle.disabled = true; return; }
  var stored = null;
  try { stored = window.localStorage.getItem(KEY); } catch (e) { /* private mode */ }
  toggle.checked = stored !== "off";
  var timer = null;

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("dashboard-live");
        if (!fresh) { return; }
        // What the reader opened (the table under the chart) stays open.
        var opened = Array.prototype.map.call(live.querySelectorAll("details"), function (d) { return d.open; });
        live.innerHTML = fresh.innerHTML;
        Array.prototype.forEach.call(live.querySelectorAll("details"), function (d, i) { d.open = !!opened[i]; });
        live.removeAttribute("data-stale");
      })
      .catch(function () {
        // Logged out, or the server is down: say the numbers are old, keep trying.
        live.setAttribute("data-stale", "1");
      });
  }

  function schedule() {
    if (timer !== null) { window.clearInterval(timer); timer = null; }
    if (toggle.checked) { timer = window.setInterval(refresh, seconds * 1000); }
  }

  toggle.addEventListener("change", function () {
    try { window.localStorage.setItem(KEY, toggle.checked ? "on" : "off"); } catch (e) { /* ignore */ }
    schedule();
  });
  schedule();
})();
