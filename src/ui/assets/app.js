// The dashboard's one script (issue 13), served from the binary at /ui/app.js. It only
// refreshes the overview's figures every 5 seconds without reloading the page; the page
// works without it. A failed refresh keeps the last figures and says so; when the session
// has ended (the answer is the login page, or 401), the page reloads, to its login.
(function () {
  "use strict";
  var main = document.getElementById("overview");
  var when = document.getElementById("refreshed");
  if (!main) { return; }
  function refresh() {
    fetch("/ui/overview", { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); throw new Error("logged out"); }
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
