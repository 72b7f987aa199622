// humpback upload progress: a form with data-upload-progress is sent in the background so the
// page can show how much has gone and how long is left; the server's answer page then replaces
// this one. Without JavaScript the form posts normally.
(function () {
  "use strict";

  function megabytes(bytes) {
    return (bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0) + " MB";
  }

  function formatSeconds(seconds) {
    if (!isFinite(seconds) || seconds < 0) { return ""; }
    if (seconds < 60) { return Math.round(seconds) + " s"; }
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) { return minutes + " min"; }
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function attach(form) {
    var bar = form.querySelector("[data-upload-bar]");
    var text = form.querySelector("[data-upload-text]");
    var button = form.querySelector('button[type="submit"]');
    form.addEventListener("submit", function (submitEvent) {
      if (!window.XMLHttpRequest || !window.FormData) { return; }
      submitEvent.preventDefault();
      var request = new XMLHttpRequest();
      var started = Date.now();
      request.open("POST", form.action);
      request.upload.onprogress = function (progress) {
        if (!progress.lengthComputable) { return; }
        bar.hidden = false;
        bar.max = progress.total;
        bar.value = progress.loaded;
        var elapsed = (Date.now() - started) / 1000;
        var rate = progress.loaded / Math.max(elapsed, 0.001);
        var left = rate > 0 ? formatSeconds((progress.total - progress.loaded) / rate) : "";
        text.textContent = megabytes(progress.loaded) + " of " + megabytes(progress.total) + " sent" +
          (left && progress.loaded < progress.total ? ", about " + left + " left" : "") +
          (progress.loaded >= progress.total ? "; checking and registering the files…" : "");
      };
      request.onload = function () {
        document.open();
        document.write(request.responseText);
        document.close();
      };
      request.onerror = function () {
        text.textContent = "The upload failed (the connection was lost). Please try again.";
        if (button) { button.disabled = false; }
      };
      if (button) { button.disabled = true; }
      text.textContent = "Starting the upload…";
      request.send(new FormData(form));
    });
  }

  function start() {
    document.querySelectorAll("form[data-upload-progress]").forEach(attach);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
