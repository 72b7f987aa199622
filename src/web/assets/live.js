// humpback live updates: keeps job status and progress on the page current.
// Elements with data-job-id hold children with data-field="status", "progress",
// "progress-text" and "eta". Listens to /api/events/stream (server-sent events); if that is
// not available, polls /api/processing-jobs/{id} for the jobs still in flight.
// Clustering jobs work the same way with data-clustering-job-id (progress is a fraction, with
// the stage as text; polling /api/clustering-jobs/{id}).
// The page says which log position it shows (data-events-after); the stream starts right
// after it, so a job that changes between rendering and connecting is still followed.
(function () {
  "use strict";
  var FINISHED = { complete: true, failed: true, canceled: true };
  var POLL_MILLISECONDS = 3000;
  var samples = {}; // job id -> [{time, done}] for the rate of progress

  function jobElements(id) {
    return document.querySelectorAll('[data-job-id="' + id + '"]');
  }

  function formatSeconds(seconds) {
    if (!isFinite(seconds) || seconds < 0) { return ""; }
    if (seconds < 60) { return Math.round(seconds) + " s"; }
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) { return minutes + " min"; }
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function estimate(id, done, total) {
    var now = Date.now() / 1000;
    var list = samples[id] || (samples[id] = []);
    if (list.length === 0 || list[list.length - 1].done !== done) { list.push({ time: now, done: done }); }
    if (list.length > 20) { list.shift(); }
    if (list.length < 2 || done >= total) { return ""; }
    var first = list[0], last = list[list.length - 1];
    var rate = (last.done - first.done) / (last.time - first.time);
    if (!(rate > 0)) { return ""; }
    return "about " + formatSeconds((total - done) / rate) + " left";
  }

  function setText(root, field, text) {
    root.querySelectorAll('[data-field="' + field + '"]').forEach(function (element) {
      element.textContent = text;
    });
  }

  // Parts of a page marked data-refresh-when-finished="URL" (a job's facts and events) are
  // fetched again from URL and swapped in (by id) once the job finishes, without a reload.
  var refreshing = false;
  function refreshFinishedParts() {
    var first = document.querySelector("[data-refresh-when-finished][id]");
    if (refreshing || !first || !window.fetch || !window.DOMParser) { return; }
    refreshing = true;
    fetch(first.getAttribute("data-refresh-when-finished"), { headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-refresh-when-finished][id]").forEach(function (part) {
          var replacement = fresh.getElementById(part.id);
          if (replacement) { part.replaceWith(document.importNode(replacement, true)); }
        });
      })
      .catch(function () { /* the live values stay */ })
      .then(function () { refreshing = false; });
  }

  function update(id, change) {
    jobElements(id).forEach(function (root) {
      var before = root.getAttribute("data-status");
      if (change.status && FINISHED[change.status] && !FINISHED[before] && root.closest("[data-refresh-when-finished]")) {
        window.setTimeout(refreshFinishedParts, 0);
      }
      if (change.status) {
        root.setAttribute("data-status", change.status);
        root.querySelectorAll('[data-field="status"]').forEach(function (badge) {
          badge.textContent = change.status;
          badge.className = "badge " + ({ complete: "ok" }[change.status] || change.status);
        });
        if (FINISHED[change.status]) { setText(root, "eta", ""); }
        root.querySelectorAll("[data-shown-when]").forEach(function (element) {
          element.hidden = element.getAttribute("data-shown-when").split(" ").indexOf(change.status) < 0;
        });
      }
      if (typeof change.done === "number" && typeof change.total === "number" && change.total > 0) {
        root.querySelectorAll('progress[data-field="progress"]').forEach(function (bar) {
          bar.hidden = false;
          bar.max = change.total;
          bar.value = change.done;
        });
        setText(root, "progress-text", change.done + "/" + change.total + " windows");
        if (!FINISHED[change.status || root.getAttribute("data-status")]) {
          setText(root, "eta", estimate(id, change.done, change.total));
        }
      }
    });
  }

  // Event types whose job status follows directly from the event.
  var STATUS_OF_EVENT = {
    ProcessingJobQueued: "queued",
    ProcessingJobClaimed: "running",
    ProcessingJobCompleted: "complete",
    ProcessingJobFailed: "failed",
    ProcessingJobCanceled: "canceled",
    ProcessingJobRetried: "queued",
    ProcessingJobAbandoned: "queued"
  };

  function onEvent(event) {
    var ids = (event.aggregates || [])
      .filter(function (aggregate) { return aggregate.indexOf("processing_job:") === 0; })
      .map(function (aggregate) { return aggregate.slice("processing_job:".length); });
    ids.forEach(function (id) {
      if (jobElements(id).length === 0) { return; }
      var data = event.data || {};
      var change = { status: STATUS_OF_EVENT[event.type] };
      if (typeof data.windows_done === "number") {
        change.done = data.windows_done;
        change.total = data.windows_total;
        change.status = change.status || "running";
      }
      update(id, change);
    });
  }

  function clusteringElements(id) {
    return document.querySelectorAll('[data-clustering-job-id="' + id + '"]');
  }

  var CLUSTERING_STATUS_OF_EVENT = {
    ClusteringJobQueued: "queued",
    ClusteringJobClaimed: "running",
    ClusteringJobProgressed: "running",
    ClusteringJobCompleted: "complete",
    ClusteringJobFailed: "failed",
    ClusteringJobCanceled: "canceled",
    ClusteringJobRetried: "queued",
    ClusteringJobAbandoned: "queued"
  };

  // Loads the page again, without the one-time notice ("job queued") it was opened with.
  function reloadWithoutNotice() {
    var url = new URL(window.location.href);
    url.searchParams.delete("notice");
    url.searchParams.delete("notice_kind");
    window.location.replace(url.toString());
  }

  function updateClustering(id, change) {
    clusteringElements(id).forEach(function (root) {
      if (change.status) {
        var before = root.getAttribute("data-status");
        root.setAttribute("data-status", change.status);
        root.querySelectorAll('[data-field="status"]').forEach(function (badge) {
          badge.textContent = change.status;
          badge.className = "badge " + ({ complete: "ok" }[change.status] || change.status);
        });
        // A job page shows results (or the error and a retry button) only once finished:
        // load them when the job finishes.
        if (FINISHED[change.status] && !FINISHED[before] && root.hasAttribute("data-reload-when-finished")) {
          reloadWithoutNotice();
        }
      }
      var fraction = change.status === "complete" ? 1 : change.fraction;
      if (typeof fraction === "number") {
        root.querySelectorAll('progress[data-field="progress"]').forEach(function (bar) {
          bar.hidden = false;
          bar.max = 1;
          bar.value = fraction;
        });
      }
      var running = (change.status || root.getAttribute("data-status")) === "running";
      setText(root, "progress-text", running && change.stage ? change.stage + " " + Math.round((fraction || 0) * 100) + "%" : "");
    });
  }

  function onClusteringEvent(event) {
    (event.aggregates || [])
      .filter(function (aggregate) { return aggregate.indexOf("clustering_job:") === 0; })
      .map(function (aggregate) { return aggregate.slice("clustering_job:".length); })
      .forEach(function (id) {
        if (clusteringElements(id).length === 0) { return; }
        var data = event.data || {};
        updateClustering(id, {
          status: CLUSTERING_STATUS_OF_EVENT[event.type],
          stage: data.stage,
          fraction: typeof data.fraction === "number" ? data.fraction : undefined
        });
      });
  }

  function pollClustering() {
    var ids = {};
    document.querySelectorAll("[data-clustering-job-id]").forEach(function (element) {
      if (!FINISHED[element.getAttribute("data-status")]) { ids[element.getAttribute("data-clustering-job-id")] = true; }
    });
    Object.keys(ids).forEach(function (id) {
      fetch("/api/clustering-jobs/" + encodeURIComponent(id), { headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (job) {
          if (job) { updateClustering(id, { status: job.status, stage: job.stage, fraction: job.progress }); }
        })
        .catch(function () { /* try again on the next tick */ });
    });
  }

  function pollOnce() {
    pollClustering();
    var ids = {};
    document.querySelectorAll("[data-job-id]").forEach(function (element) {
      if (!FINISHED[element.getAttribute("data-status")]) { ids[element.getAttribute("data-job-id")] = true; }
    });
    Object.keys(ids).forEach(function (id) {
      fetch("/api/processing-jobs/" + encodeURIComponent(id), { headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (job) {
          if (job) { update(id, { status: job.status, done: job.windows_done, total: job.windows_total }); }
        })
        .catch(function () { /* try again on the next tick */ });
    });
  }

  var polling = null;
  function startPolling() {
    if (polling === null) { polling = window.setInterval(pollOnce, POLL_MILLISECONDS); }
  }

  // True while some job on the page is still queued or running.
  function somethingInFlight() {
    var found = false;
    document.querySelectorAll("[data-job-id], [data-clustering-job-id]").forEach(function (element) {
      if (!FINISHED[element.getAttribute("data-status")]) { found = true; }
    });
    return found;
  }

  // A browser allows only a few connections per server, so a page holds its stream only while
  // it has a job in flight and is visible; it resumes after the last event it saw.
  var source = null;
  var lastSeq = null;

  function disconnect() {
    if (source !== null) { source.close(); source = null; }
    document.documentElement.removeAttribute("data-live");
  }

  function connect() {
    if (source !== null || document.hidden || !somethingInFlight()) { return; }
    if (!window.EventSource) { startPolling(); return; }
    source = new EventSource("/api/events/stream" + (lastSeq === null ? "" : "?after=" + lastSeq));
    source.onopen = function () { document.documentElement.setAttribute("data-live", "connected"); };
    source.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (ignored) { return; /* not an event */ }
      if (typeof event.seq === "number") { lastSeq = event.seq; }
      onEvent(event);
      onClusteringEvent(event);
      if (!somethingInFlight()) { disconnect(); }
    };
    source.onerror = function () {
      // The browser reconnects by itself (with Last-Event-ID) unless the stream is closed.
      if (source !== null && source.readyState === EventSource.CLOSED) { source = null; startPolling(); }
    };
  }

  function start() {
    document.querySelectorAll("[data-events-after]").forEach(function (element) {
      var seq = Number(element.getAttribute("data-events-after"));
      if (isFinite(seq) && (lastSeq === null || seq < lastSeq)) { lastSeq = seq; }
    });
    connect();
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) { disconnect(); } else { connect(); }
    });
    window.addEventListener("pagehide", disconnect);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
