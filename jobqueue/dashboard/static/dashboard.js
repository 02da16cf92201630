// jobqueue dashboard: confirmations of actions and live updates (server-sent events).
// Loaded from the app's own static files: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  // An action form asks first; confirmed, it tells the server so (without this script the
  // server answers with a confirmation page instead).
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) {
      ev.preventDefault();
      return;
    }
    var confirmed = form.querySelector("input[name='confirmed']");
    if (confirmed) confirmed.value = "1";
  });

  function each(attr, fn) {
    var found = document.querySelectorAll("[" + attr + "]");
    for (var i = 0; i < found.length; i++) fn(found[i], found[i].getAttribute(attr));
  }

  function start() {
    var url = document.body.getAttribute("data-events");
    if (!url || !window.EventSource) return;
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      document.body.setAttribute("data-live", "on");
    });
    source.addEventListener("error", function () {
      document.body.setAttribute("data-live", "off");
    });
    // counts: {queue: {counts: {state: n}, paused: bool}}
    source.addEventListener("counts", function (e) {
      var data = JSON.parse(e.data);
      each("data-count", function (el, key) {
        var parts = key.split("|");
        var q = data[parts[0]];
        if (!q || q.counts[parts[1]] === undefined) return;
        el.textContent = String(q.counts[parts[1]]);
      });
      each("data-paused", function (el, name) {
        if (data[name]) el.hidden = !data[name].paused;
      });
      document.body.setAttribute("data-counts-at", String(Date.now()));
    });
    // job: {q, id, ev, st}: a job shown on the page changed state
    source.addEventListener("job", function (e) {
      var d = JSON.parse(e.data);
      each("data-job-state", function (el, key) {
        if (key !== d.q + "|" + d.id) return;
        el.textContent = d.st;
        el.className = "state state-" + d.st;
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
