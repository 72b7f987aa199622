// humpback map workbench: the 2-D layout of a clustering job on a <canvas>, as a place to work.
// Data: GET data-points-url (columns x, y, label, set, row, audio, start, duration; recordings
// {id: {name, folder}}; metadata {field: {recording: value}}; annotations [label|null] when the
// library has annotations). Zoom with the wheel or the buttons, pan by dragging in "Pan" mode,
// select with "Box" or "Lasso" (Shift adds to the selection), colour by cluster, annotation label,
// recording, folder or any metadata field, with a legend (click an entry to select it). The
// selection panel lists how many windows from which recordings, shows their spectrogram tiles
// (tiles.js: play, find similar, annotate), plays them one after another, annotates them in one
// action and exports them as CSV or a Raven selection table.
// Hover shows the recording, start time and cluster; a click (without dragging) plays that window.
// When drawn, the canvas gets data-drawn="true", data-point-count and, for tests, the pixel
// position of a point (data-first-point-x/y, CSS pixels from the canvas corner).
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
    "#31a354", "#756bb1", "#636363", "#fd8d3c"];
  var NONE = "#b0b0b0";
  var MARGIN = 14;
  var HOVER_PIXELS = 8;
  var LEGEND_ENTRIES = 20;
  var SELECTION_TILES = 48;

  function clusterName(label) { return label < 0 ? "noise" : "cluster " + label; }

  function formatTime(seconds) {
    var whole = Math.floor(seconds);
    var h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = seconds - h * 3600 - m * 60;
    var sText = (s < 10 ? "0" : "") + s.toFixed(1);
    return h > 0 ? h + ":" + (m < 10 ? "0" : "") + m + ":" + sText : m + ":" + sText;
  }

  function start() {
    var container = document.querySelector("[data-points-url]");
    if (!container) { return; }
    var canvas = container.querySelector("canvas");
    var tooltip = container.querySelector(".scatter-tooltip");
    var note = container.querySelector("#scatter-note");
    var audio = container.querySelector("audio");
    var legend = container.querySelector("#map-legend");
    var colourSelect = container.querySelector("#map-colour");
    var panel = document.querySelector("#selection-panel");
    var context = canvas.getContext("2d");
    var data = null, count = 0;
    var bounds = null;
    var view = { scale: 1, dx: 0, dy: 0 };
    var mode = "pan";
    var selected = null; // Uint8Array
    var colourIndex = null, categories = [], colourOf = [];
    var screenX = null, screenY = null;
    var drag = null;

    fetch(container.getAttribute("data-points-url"), { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("points could not be loaded (" + response.status + ")"); }
        return response.json();
      })
      .then(function (loaded) { setUp(loaded); })
      .catch(function (error) { note.textContent = String(error.message || error); });

    function recordingName(i) {
      var id = data.audio[i];
      var recording = id == null ? null : data.recordings[id];
      return recording ? recording.name : "unknown recording";
    }

    function categoryOf(kind, i) {
      if (kind === "cluster") { return clusterName(data.label[i]); }
      if (kind === "annotation") { var a = data.annotations && data.annotations[i]; return a == null ? null : a; }
      var id = data.audio[i];
      if (id == null) { return null; }
      if (kind === "recording") { return data.recordings[id] ? data.recordings[id].name : null; }
      if (kind === "folder") { return data.recordings[id] ? (data.recordings[id].folder || "(no folder)") : null; }
      if (kind.indexOf("metadata:") === 0) {
        var values = data.metadata[kind.slice(9)] || {};
        return values[id] == null ? null : values[id];
      }
      return null;
    }

    function setUp(loaded) {
      data = loaded;
      count = (data.x || []).length;
      canvas.setAttribute("data-point-count", String(count));
      selected = new Uint8Array(count);
      var options = [["cluster", "Cluster"]];
      if (data.annotations) { options.push(["annotation", "Annotation label"]); }
      options.push(["recording", "Recording"], ["folder", "Folder"]);
      Object.keys(data.metadata || {}).forEach(function (field) { options.push(["metadata:" + field, "Metadata: " + field]); });
      var labelList = document.querySelector("#selection-labels");
      if (labelList) {
        (data.known_labels || []).forEach(function (label) {
          var option = document.createElement("option");
          option.value = label;
          labelList.appendChild(option);
        });
      }
      colourSelect.innerHTML = "";
      options.forEach(function (option) {
        var element = document.createElement("option");
        element.value = option[0];
        element.textContent = option[1];
        colourSelect.appendChild(element);
      });
      if (count === 0) {
        note.textContent = "This job has no 2-D layout to draw (it was run without plot_2d).";
        canvas.setAttribute("data-drawn", "true");
        return;
      }
      var minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
      for (var i = 0; i < count; i++) {
        minX = Math.min(minX, data.x[i]); maxX = Math.max(maxX, data.x[i]);
        minY = Math.min(minY, data.y[i]); maxY = Math.max(maxY, data.y[i]);
      }
      bounds = { minX: minX, minY: minY, spanX: maxX - minX || 1, spanY: maxY - minY || 1 };
      var text = "Showing " + data.shown + " of " + data.total + " windows";
      if (data.shown < data.total) {
        text += " (evenly thinned to " + data.max_points + " for drawing; every window is in the exports)";
      }
      note.textContent = text + ".";
      recolour();
    }

    function recolour() {
      var kind = colourSelect.value || "cluster";
      var counts = {};
      var values = new Array(count);
      for (var i = 0; i < count; i++) {
        var category = categoryOf(kind, i);
        values[i] = category;
        if (category != null) { counts[category] = (counts[category] || 0) + 1; }
      }
      categories = Object.keys(counts).sort(function (a, b) {
        if (kind === "cluster") {
          var la = a === "noise" ? -1 : Number(a.slice(8)), lb = b === "noise" ? -1 : Number(b.slice(8));
          return la - lb;
        }
        return counts[b] - counts[a] || (a < b ? -1 : 1);
      });
      var position = {};
      categories.forEach(function (category, index) { position[category] = index; });
      colourOf = categories.map(function (category, index) {
        if (category === "noise") { return NONE; }
        var paletteIndex = kind === "cluster" ? Number(category.slice(8)) : index;
        return index < PALETTE.length || kind === "cluster" ? PALETTE[paletteIndex % PALETTE.length] : NONE;
      });
      colourIndex = new Int32Array(count);
      for (var j = 0; j < count; j++) { colourIndex[j] = values[j] == null ? -1 : position[values[j]]; }
      drawLegend(kind, counts);
      draw();
    }

    function drawLegend(kind, counts) {
      legend.innerHTML = "";
      categories.slice(0, LEGEND_ENTRIES).forEach(function (category, index) {
        var item = document.createElement("li");
        var button = document.createElement("button");
        button.type = "button";
        button.title = "Select these windows";
        var swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = colourOf[index];
        button.appendChild(swatch);
        button.appendChild(document.createTextNode(category + " (" + counts[category] + ")"));
        button.addEventListener("click", function (event) {
          if (!event.shiftKey) { selected.fill(0); }
          for (var i = 0; i < count; i++) { if (colourIndex[i] === index) { selected[i] = 1; } }
          draw(); showSelection();
        });
        item.appendChild(button);
        legend.appendChild(item);
      });
      var unlisted = categories.length - LEGEND_ENTRIES;
      if (unlisted > 0) {
        var more = document.createElement("li");
        more.className = "muted";
        more.textContent = unlisted + " more values, drawn grey";
        legend.appendChild(more);
      }
      var missing = 0;
      for (var i = 0; i < count; i++) { if (colourIndex && colourIndex[i] === -1) { missing++; } }
      if (kind !== "cluster" && count > 0) {
        var none = document.createElement("li");
        none.innerHTML = "";
        var swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = NONE;
        none.appendChild(swatch);
        none.appendChild(document.createTextNode((kind === "annotation" ? "not annotated" : "no value") + " (" + missing + ")"));
        legend.appendChild(none);
      }
    }

    function toScreen(i) {
      var width = canvas.width, height = canvas.height;
      var baseX = MARGIN + (data.x[i] - bounds.minX) / bounds.spanX * (width - 2 * MARGIN);
      var baseY = height - MARGIN - (data.y[i] - bounds.minY) / bounds.spanY * (height - 2 * MARGIN);
      return [baseX * view.scale + view.dx, baseY * view.scale + view.dy];
    }

    function draw() {
      if (!data || count === 0) { return; }
      var width = canvas.width, height = canvas.height;
      context.fillStyle = "#ffffff";
      context.fillRect(0, 0, width, height);
      screenX = new Float32Array(count);
      screenY = new Float32Array(count);
      for (var i = 0; i < count; i++) {
        var p = toScreen(i);
        screenX[i] = p[0]; screenY[i] = p[1];
      }
      var size = Math.max(1.5, Math.min(9, (count > 20000 ? 2 : count > 5000 ? 3 : count > 1000 ? 5 : 7) * Math.sqrt(view.scale)));
      var half = size / 2;
      // Points without a category first, then each category, so that coloured points sit on top.
      for (var pass = -1; pass < categories.length; pass++) {
        context.fillStyle = pass === -1 ? NONE : colourOf[pass];
        for (var k = 0; k < count; k++) {
          if (colourIndex[k] !== pass) { continue; }
          var x = screenX[k], y = screenY[k];
          if (x < -size || y < -size || x > width + size || y > height + size) { continue; }
          context.fillRect(x - half, y - half, size, size);
        }
      }
      var anySelected = false;
      context.strokeStyle = "#111";
      context.lineWidth = 1.5;
      for (var s = 0; s < count; s++) {
        if (!selected[s]) { continue; }
        anySelected = true;
        context.strokeRect(screenX[s] - half - 1.5, screenY[s] - half - 1.5, size + 3, size + 3);
      }
      canvas.setAttribute("data-selected", anySelected ? "true" : "false");
      var cssScale = canvas.getBoundingClientRect().width / width || 1;
      var shown = count - 1;
      canvas.setAttribute("data-first-point-x", String(Math.round(screenX[shown] * cssScale)));
      canvas.setAttribute("data-first-point-y", String(Math.round(screenY[shown] * cssScale)));
      canvas.setAttribute("data-drawn", "true");
    }

    function canvasPoint(event) {
      var box = canvas.getBoundingClientRect();
      var scale = canvas.width / box.width;
      return [(event.clientX - box.left) * scale, (event.clientY - box.top) * scale];
    }

    function nearest(event) {
      if (!screenX) { return -1; }
      var p = canvasPoint(event);
      var scale = canvas.width / canvas.getBoundingClientRect().width;
      var best = -1, bestDistance = HOVER_PIXELS * scale;
      for (var i = count - 1; i >= 0; i--) {
        var distance = Math.hypot(screenX[i] - p[0], screenY[i] - p[1]);
        if (distance < bestDistance) { best = i; bestDistance = distance; }
      }
      return best;
    }

    function playPoint(i) {
      if (i < 0 || data.audio[i] == null) { return; }
      audio.src = "/api/audio/" + encodeURIComponent(data.audio[i]) + "/window?start=" +
        encodeURIComponent(data.start[i]) + "&duration=" + encodeURIComponent(data.duration[i]);
      var playing = audio.play();
      if (playing && playing.catch) { playing.catch(function () { /* autoplay refused: controls remain */ }); }
    }

    function zoomAt(factor, cx, cy) {
      var scale = Math.max(0.5, Math.min(200, view.scale * factor));
      factor = scale / view.scale;
      view.dx = cx - (cx - view.dx) * factor;
      view.dy = cy - (cy - view.dy) * factor;
      view.scale = scale;
      draw();
    }

    function insidePolygon(x, y, polygon) {
      var inside = false;
      for (var i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
        var xi = polygon[i][0], yi = polygon[i][1], xj = polygon[j][0], yj = polygon[j][1];
        if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) { inside = !inside; }
      }
      return inside;
    }

    function finishSelection(additive) {
      if (!additive) { selected.fill(0); }
      var path = drag.path;
      if (mode === "box") {
        var a = path[0], b = path[path.length - 1];
        var x0 = Math.min(a[0], b[0]), x1 = Math.max(a[0], b[0]), y0 = Math.min(a[1], b[1]), y1 = Math.max(a[1], b[1]);
        for (var i = 0; i < count; i++) {
          if (screenX[i] >= x0 && screenX[i] <= x1 && screenY[i] >= y0 && screenY[i] <= y1) { selected[i] = 1; }
        }
      } else if (path.length > 2) {
        for (var k = 0; k < count; k++) { if (insidePolygon(screenX[k], screenY[k], path)) { selected[k] = 1; } }
      }
      draw();
      showSelection();
    }

    function drawDragShape() {
      draw();
      var path = drag.path;
      context.save();
      context.strokeStyle = "#0b5c8a";
      context.fillStyle = "rgba(11, 92, 138, 0.08)";
      context.lineWidth = 1.5;
      context.setLineDash([5, 4]);
      context.beginPath();
      if (mode === "box") {
        var a = path[0], b = path[path.length - 1];
        context.rect(a[0], a[1], b[0] - a[0], b[1] - a[1]);
      } else {
        path.forEach(function (p, index) { if (index === 0) { context.moveTo(p[0], p[1]); } else { context.lineTo(p[0], p[1]); } });
        context.closePath();
      }
      context.fill();
      context.stroke();
      context.restore();
    }

    canvas.addEventListener("mousedown", function (event) {
      if (!data || count === 0 || event.button !== 0) { return; }
      var p = canvasPoint(event);
      drag = { start: p, last: p, path: [p], moved: false, shift: event.shiftKey };
      event.preventDefault();
    });
    window.addEventListener("mousemove", function (event) {
      if (!drag) { return; }
      var p = canvasPoint(event);
      if (Math.hypot(p[0] - drag.start[0], p[1] - drag.start[1]) > 4) { drag.moved = true; }
      if (!drag.moved) { return; }
      if (mode === "pan") {
        view.dx += p[0] - drag.last[0];
        view.dy += p[1] - drag.last[1];
        drag.last = p;
        draw();
      } else {
        drag.path.push(p);
        drawDragShape();
      }
    });
    window.addEventListener("mouseup", function (event) {
      if (!drag) { return; }
      var finished = drag;
      if (finished.moved && mode !== "pan") { finishSelection(finished.shift || event.shiftKey); }
      if (!finished.moved) { playPoint(nearest(event)); }
      drag = null;
      if (finished.moved && mode !== "pan") { draw(); }
    });

    canvas.addEventListener("mousemove", function (event) {
      if (drag && drag.moved) { tooltip.hidden = true; return; }
      var i = nearest(event);
      if (i < 0) { tooltip.hidden = true; canvas.style.cursor = ""; return; }
      tooltip.textContent = recordingName(i) + " · " + data.start[i].toFixed(2) + " s · " + clusterName(data.label[i]) +
        (data.annotations && data.annotations[i] != null ? " · " + data.annotations[i] : "");
      var box = canvas.getBoundingClientRect();
      tooltip.style.left = (event.clientX - box.left + 12) + "px";
      tooltip.style.top = (event.clientY - box.top + 12) + "px";
      tooltip.hidden = false;
      canvas.style.cursor = data.audio[i] == null ? "" : "pointer";
    });
    canvas.addEventListener("mouseleave", function () { tooltip.hidden = true; });
    canvas.addEventListener("wheel", function (event) {
      if (!data || count === 0) { return; }
      event.preventDefault();
      var p = canvasPoint(event);
      zoomAt(event.deltaY < 0 ? 1.25 : 0.8, p[0], p[1]);
    }, { passive: false });

    container.querySelectorAll("input[name='map-mode']").forEach(function (input) {
      input.addEventListener("change", function () {
        mode = input.value;
        canvas.setAttribute("data-mode", mode);
      });
    });
    colourSelect.addEventListener("change", recolour);
    container.querySelector("#map-zoom-in").addEventListener("click", function () { zoomAt(1.5, canvas.width / 2, canvas.height / 2); });
    container.querySelector("#map-zoom-out").addEventListener("click", function () { zoomAt(1 / 1.5, canvas.width / 2, canvas.height / 2); });
    container.querySelector("#map-reset").addEventListener("click", function () { view = { scale: 1, dx: 0, dy: 0 }; draw(); });

    // ---- the selection panel ----
    function selectedIndices() {
      var indices = [];
      for (var i = 0; i < count; i++) { if (selected[i]) { indices.push(i); } }
      return indices;
    }

    function windowsOf(indices) {
      return indices.filter(function (i) { return data.audio[i] != null; }).map(function (i) {
        var id = data.audio[i];
        return {
          audio_file_id: id, recording: recordingName(i), folder: (data.recordings[id] || {}).folder || "",
          start: data.start[i], duration: data.duration[i], embedding_set_id: data.set[i], row_index: data.row[i],
          caption: clusterName(data.label[i])
        };
      });
    }

    function showSelection() {
      if (!panel) { return; }
      var indices = selectedIndices();
      panel.hidden = indices.length === 0;
      if (indices.length === 0) { return; }
      var perRecording = {};
      indices.forEach(function (i) { var name = recordingName(i); perRecording[name] = (perRecording[name] || 0) + 1; });
      var names = Object.keys(perRecording).sort(function (a, b) { return perRecording[b] - perRecording[a]; });
      panel.querySelector("[data-field='selection-count']").textContent = String(indices.length);
      panel.querySelector("[data-field='selection-recordings']").textContent = String(names.length);
      var list = panel.querySelector("[data-field='selection-recording-list']");
      list.textContent = names.slice(0, 8).map(function (name) { return name + " (" + perRecording[name] + ")"; }).join(", ") +
        (names.length > 8 ? ", and " + (names.length - 8) + " more" : "");
      var windows = windowsOf(indices);
      panel.windows = windows;
      var grid = panel.querySelector("[data-tiles]");
      if (window.humpbackTiles) { window.humpbackTiles.render(grid, windows.slice(0, SELECTION_TILES)); }
      panel.querySelector("[data-field='selection-tiles-note']").textContent = windows.length > SELECTION_TILES
        ? "The first " + SELECTION_TILES + " of " + windows.length + " windows; annotating and exporting take all of them."
        : "";
    }

    function download(name, text, type) {
      var link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([text], { type: type }));
      link.download = name;
      document.body.appendChild(link);
      link.click();
      link.remove();
    }

    if (panel) {
      panel.querySelector("#selection-clear").addEventListener("click", function () {
        selected.fill(0); draw(); showSelection();
      });
      panel.querySelector("#selection-play").addEventListener("click", function () {
        if (window.humpbackTiles) { window.humpbackTiles.playAll(panel.querySelector("[data-tiles]"), panel.windows || []); }
      });
      panel.querySelector("#selection-csv").addEventListener("click", function () {
        var lines = ["audio_file_id,recording,folder,embedding_set_id,row_index,start_seconds,end_seconds,cluster"];
        (panel.windows || []).forEach(function (w) {
          var quote = function (text) { return '"' + String(text).replace(/"/g, '""') + '"'; };
          lines.push([w.audio_file_id, quote(w.recording), quote(w.folder), w.embedding_set_id, w.row_index,
            w.start.toFixed(3), (w.start + w.duration).toFixed(3), quote(w.caption)].join(","));
        });
        download("selection.csv", lines.join("\n") + "\n", "text/csv");
      });
      panel.querySelector("#selection-raven").addEventListener("click", function () {
        var clean = function (text) { return String(text).replace(/[\t\r\n]/g, " "); };
        var lines = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tBegin File\tFile Offset (s)\tBegin Path\tCluster"];
        (panel.windows || []).forEach(function (w, index) {
          lines.push([index + 1, "Spectrogram 1", 1, w.start.toFixed(3), (w.start + w.duration).toFixed(3), 0, "",
            clean(w.recording), w.start.toFixed(3), clean(w.folder ? w.folder + "/" + w.recording : w.recording),
            clean(w.caption)].join("\t"));
        });
        download("selection.selections.txt", lines.join("\r\n") + "\r\n", "text/tab-separated-values");
      });
      panel.querySelector("#selection-annotate").addEventListener("submit", function (event) {
        event.preventDefault();
        var form = event.target;
        var label = form.querySelector("[name='label']").value.trim();
        var kind = form.querySelector("[name='kind']").value;
        if (!label || !window.humpbackTiles) { return; }
        window.humpbackTiles.annotate(panel.windows || [], label, kind, panel.querySelector("[data-field='selection-status']"))
          .then(function (ok) {
            if (!ok || !data.annotations) { return; }
            if (kind === "positive") { selectedIndices().forEach(function (i) { data.annotations[i] = label; }); }
            if (colourSelect.value === "annotation") { recolour(); }
          });
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
