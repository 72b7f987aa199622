// humpback scatter plot: draws the 2-D layout of a clustering job on a <canvas>.
// Reads points from the URL in data-points-url (JSON: {total, shown, points: [{x, y, label,
// audio_file_id, start, duration}], recordings: {audio_file_id: name}}). Colour is the cluster, noise (label -1) grey.
// Hover shows the recording, start time and cluster; click plays that window.
// When drawn, the canvas gets data-drawn="true", data-point-count and, for tests, the pixel
// position of its first point (data-first-point-x/y, in CSS pixels from the canvas corner).
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d"];
  var NOISE = "#b0b0b0";
  var MARGIN = 12;
  var HOVER_PIXELS = 8;

  function colour(label) { return label < 0 ? NOISE : PALETTE[label % PALETTE.length]; }

  function clusterName(label) { return label < 0 ? "noise" : "cluster " + label; }

  function start() {
    var container = document.querySelector("[data-points-url]");
    if (!container) { return; }
    var canvas = container.querySelector("canvas");
    var tooltip = container.querySelector(".scatter-tooltip");
    var note = container.querySelector("#scatter-note");
    var audio = container.querySelector("audio");
    var context = canvas.getContext("2d");
    var placed = []; // {px, py, point} in canvas pixels

    fetch(container.getAttribute("data-points-url"), { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("points could not be loaded (" + response.status + ")"); }
        return response.json();
      })
      .then(function (data) { draw(data); })
      .catch(function (error) { note.textContent = String(error.message || error); });

    var names = {};

    function draw(data) {
      var points = data.points || [];
      names = data.recordings || {};
      if (points.length === 0) {
        note.textContent = "This job has no 2-D layout to draw (it was run without plot_2d).";
        canvas.setAttribute("data-drawn", "true");
        canvas.setAttribute("data-point-count", "0");
        return;
      }
      var minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
      points.forEach(function (p) {
        minX = Math.min(minX, p.x); maxX = Math.max(maxX, p.x);
        minY = Math.min(minY, p.y); maxY = Math.max(maxY, p.y);
      });
      var spanX = maxX - minX || 1, spanY = maxY - minY || 1;
      var width = canvas.width, height = canvas.height;
      context.clearRect(0, 0, width, height);
      context.fillStyle = "#ffffff";
      context.fillRect(0, 0, width, height);
      var radius = points.length > 5000 ? 1.5 : 3;
      // Noise first, so clusters are drawn on top of it.
      var order = points.slice().sort(function (a, b) { return (a.label < 0 ? 0 : 1) - (b.label < 0 ? 0 : 1); });
      placed = order.map(function (p) {
        var px = MARGIN + (p.x - minX) / spanX * (width - 2 * MARGIN);
        var py = height - MARGIN - (p.y - minY) / spanY * (height - 2 * MARGIN);
        context.fillStyle = colour(p.label);
        context.beginPath();
        context.arc(px, py, radius, 0, 2 * Math.PI);
        context.fill();
        return { px: px, py: py, point: p };
      });
      var text = "Showing " + data.shown + " of " + data.total + " windows";
      if (data.shown < data.total) { text += " (evenly thinned for drawing; every window is in the CSV export)"; }
      note.textContent = text + ".";
      var first = placed[placed.length - 1];
      var scale = canvas.getBoundingClientRect().width / width || 1;
      canvas.setAttribute("data-first-point-x", String(Math.round(first.px * scale)));
      canvas.setAttribute("data-first-point-y", String(Math.round(first.py * scale)));
      canvas.setAttribute("data-point-count", String(points.length));
      canvas.setAttribute("data-drawn", "true");
    }

    function nearest(event) {
      var box = canvas.getBoundingClientRect();
      var scale = canvas.width / box.width;
      var x = (event.clientX - box.left) * scale, y = (event.clientY - box.top) * scale;
      var best = null, bestDistance = HOVER_PIXELS * scale;
      // Last drawn is on top, so search from the end.
      for (var i = placed.length - 1; i >= 0; i--) {
        var distance = Math.hypot(placed[i].px - x, placed[i].py - y);
        if (distance < bestDistance) { best = placed[i]; bestDistance = distance; }
      }
      return best;
    }

    canvas.addEventListener("mousemove", function (event) {
      var found = nearest(event);
      if (!found) { tooltip.hidden = true; canvas.style.cursor = ""; return; }
      var p = found.point;
      tooltip.textContent = (names[p.audio_file_id] || "unknown recording") + " · " + p.start.toFixed(2) + " s · " + clusterName(p.label);
      var box = canvas.getBoundingClientRect();
      tooltip.style.left = (event.clientX - box.left + 12) + "px";
      tooltip.style.top = (event.clientY - box.top + 12) + "px";
      tooltip.hidden = false;
      canvas.style.cursor = p.audio_file_id == null ? "" : "pointer";
    });
    canvas.addEventListener("mouseleave", function () { tooltip.hidden = true; });
    canvas.addEventListener("click", function (event) {
      var found = nearest(event);
      if (!found || found.point.audio_file_id == null) { return; }
      var p = found.point;
      audio.src = "/api/audio/" + encodeURIComponent(p.audio_file_id) + "/window?start=" +
        encodeURIComponent(p.start) + "&duration=" + encodeURIComponent(p.duration);
      var playing = audio.play();
      if (playing && playing.catch) { playing.catch(function () { /* autoplay refused: controls remain */ }); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
