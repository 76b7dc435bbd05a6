// The dashboard's one script (issue 13), served from the binary at /ui/app.js. It only
// refreshes the overview's figures every 5 seconds without reloading the page; the page
// works without it. A failed refresh keeps the last figures and says so.
(function () {
  "use strict";
  var main = document.getElementById("overview");
  var when = document.getElementById("refreshed");
  if (!main) { return; }
  function refresh() {
    fetch("/ui/overview", { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        main.innerHTML = html;
        if (when) { when.textContent = "updated " + new Date().toLocaleTimeString(); }
      })
      .catch(function (e) {
        if (when) { when.textContent = "not updated (" + e.message + "); retrying"; }
      });
  }
  setInterval(refresh, 5000);
})();
