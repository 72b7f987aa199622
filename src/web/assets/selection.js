// humpback clustering form: as the form changes, asks the server what it would select (the
// same parser that queues, so metadata filters count) and says how many embedding sets and
// windows that is, or what must be fixed first.
(function () {
  "use strict";
  var form = document.getElementById("clustering-form");
  var summary = document.getElementById("selection-summary");
  if (!form || !summary || !window.fetch || !window.FormData) { return; }

  function plural(count, word) { return count + " " + word + (count === 1 ? "" : "s"); }

  var latest = 0;
  function check() {
    var asked = ++latest;
    fetch("/clustering/check", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams(new FormData(form)).toString()
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (result) {
        if (result === null || asked !== latest) { return; }
        summary.classList.toggle("field-error", Boolean(result.error));
        summary.textContent = result.error
          ? "Not ready to queue: " + result.error
          : "This choice covers " + plural(result.embedding_sets, "set") + ", " + plural(result.windows, "window") + ".";
      })
      .catch(function () { /* the form still works without the summary */ });
  }

  var timer = null;
  function soon() {
    if (timer !== null) { window.clearTimeout(timer); }
    timer = window.setTimeout(check, 250);
  }
  form.addEventListener("change", soon);
  form.addEventListener("input", soon);
  check();
})();
