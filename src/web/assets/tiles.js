// humpback tiles: windows as a grid of spectrogram tiles, the way people scan calls. Every
// element with data-tiles is a grid: its .tile children carry data-audio, data-start,
// data-duration and, for windows of an embedding set, data-set and data-row. Each tile can
// play, find similar windows (/search) and be annotated. Keyboard on a focused tile: space
// plays it, the arrows move between tiles, the digits 1-9 apply one of the recent labels
// (kept in this browser), "a" goes to the label field. The grid's form annotates the focused
// tile or all of them.
// A tile with data-review-label is a detection or a suggestion to judge: "c" (or Confirm)
// records a positive annotation with that label over the tile's span, "r" (or Reject) a
// negative one, "s" (or Skip) leaves it; each moves on to the next tile.
// window.humpbackTiles.render(grid, windows) fills a grid from data (the map's selection),
// .playAll(grid, windows) plays windows one after another, .annotate(windows, label, kind,
// statusElement) records annotations and resolves to true when they were recorded.
(function () {
  "use strict";
  var RECENT_KEY = "humpback.recentLabels";
  var RECENT_COUNT = 9;

  function recentLabels() {
    try {
      var stored = JSON.parse(window.localStorage.getItem(RECENT_KEY) || "[]");
      return Array.isArray(stored) ? stored.filter(function (label) { return typeof label === "string"; }) : [];
    } catch (error) { return []; }
  }

  function remember(label) {
    var labels = recentLabels().filter(function (known) { return known !== label; });
    labels.unshift(label);
    try { window.localStorage.setItem(RECENT_KEY, JSON.stringify(labels.slice(0, RECENT_COUNT))); } catch (error) { /* private mode */ }
    document.querySelectorAll("[data-tiles]").forEach(showRecent);
  }

  function showRecent(grid) {
    var list = grid.parentElement && grid.parentElement.querySelector("[data-recent-labels]");
    if (!list) { return; }
    list.textContent = "";
    recentLabels().forEach(function (label, index) {
      var item = document.createElement("li");
      var key = document.createElement("kbd");
      key.textContent = String(index + 1);
      item.appendChild(key);
      item.appendChild(document.createTextNode(" " + label));
      list.appendChild(item);
    });
  }

  function windowOf(tile) {
    return {
      audio_file_id: Number(tile.dataset.audio),
      start: Number(tile.dataset.start),
      duration: Number(tile.dataset.duration),
      embedding_set_id: tile.dataset.set == null ? null : Number(tile.dataset.set),
      row_index: tile.dataset.row == null ? null : Number(tile.dataset.row)
    };
  }

  function windowUrl(w) {
    return "/api/audio/" + encodeURIComponent(w.audio_file_id) + "/window?start=" + encodeURIComponent(w.start) +
      "&duration=" + encodeURIComponent(w.duration);
  }

  function player(grid) {
    var audio = grid.parentElement.querySelector("audio.tile-player");
    if (!audio) {
      audio = document.createElement("audio");
      audio.className = "tile-player";
      audio.controls = true;
      audio.preload = "none";
      grid.parentElement.insertBefore(audio, grid);
    }
    return audio;
  }

  function play(grid, w, tile) {
    var audio = player(grid);
    grid.querySelectorAll(".tile.playing").forEach(function (other) { other.classList.remove("playing"); });
    if (tile) { tile.classList.add("playing"); }
    audio.onended = null;
    audio.src = windowUrl(w);
    var started = audio.play();
    if (started && started.catch) { started.catch(function () { /* autoplay refused: the controls remain */ }); }
    return audio;
  }

  function playAll(grid, windows) {
    var index = 0;
    function next() {
      if (index >= windows.length) { return; }
      var tile = grid.querySelectorAll(".tile")[index];
      var audio = play(grid, windows[index], tile);
      index += 1;
      audio.onended = next;
    }
    next();
  }

  function say(status, text, isError) {
    if (!status) { return; }
    status.textContent = text;
    status.classList.toggle("error-message", Boolean(isError));
  }

  function annotate(windows, label, kind, status) {
    label = String(label || "").trim();
    if (!label || windows.length === 0) { return Promise.resolve(false); }
    var ofSets = windows.filter(function (w) { return w.embedding_set_id != null && w.row_index != null; });
    var request;
    if (ofSets.length === windows.length) {
      request = { url: "/api/annotations/windows", body: {
        windows: windows.map(function (w) { return { embedding_set_id: w.embedding_set_id, row_index: w.row_index }; }),
        label: label, kind: kind } };
    } else {
      request = { url: "/api/annotations", body: { annotations: windows.map(function (w) {
        return { audio_file_id: w.audio_file_id, start_seconds: w.start, end_seconds: w.start + w.duration, label: label, kind: kind };
      }) } };
    }
    say(status, "Annotating " + windows.length + " windows as “" + label + "” (" + kind + ")…", false);
    return fetch(request.url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(request.body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (answer) {
        if (!response.ok) {
          say(status, "Not recorded: " + (answer.error || response.status), true);
          return false;
        }
        var recorded = answer.count != null ? answer.count : (answer.annotations || []).length;
        say(status, recorded + " windows annotated as “" + label + "” (" + kind + ").", false);
        remember(label);
        return true;
      });
    }).catch(function (error) {
      say(status, "Not recorded: " + (error.message || error), true);
      return false;
    });
  }

  function nextTile(grid, tile) {
    var tiles = Array.prototype.slice.call(grid.querySelectorAll(".tile"));
    var next = tiles[tiles.indexOf(tile) + 1];
    if (next) { next.focus(); }
  }

  function judge(grid, tile, verdict, status) {
    var w = windowOf(tile);
    var label = tile.dataset.reviewLabel;
    if (verdict === "skip") {
      tile.classList.add("skipped");
      nextTile(grid, tile);
      return Promise.resolve(true);
    }
    var kind = verdict === "confirm" ? "positive" : "negative";
    say(status, (verdict === "confirm" ? "Confirming" : "Rejecting") + " “" + label + "” at " + w.start.toFixed(1) + " s…", false);
    return fetch("/api/annotations", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ annotations: [{ audio_file_id: w.audio_file_id, start_seconds: w.start,
        end_seconds: w.start + w.duration, label: label, kind: kind }] })
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (answer) {
        if (!response.ok) {
          say(status, "Not recorded: " + (answer.error || response.status), true);
          return false;
        }
        tile.classList.remove("confirmed", "rejected", "skipped");
        tile.classList.add(verdict === "confirm" ? "confirmed" : "rejected");
        tile.dataset.verdict = kind;
        say(status, "Recorded a " + kind + " “" + label + "” annotation at " + w.start.toFixed(1) + " s.", false);
        nextTile(grid, tile);
        return true;
      });
    }).catch(function (error) {
      say(status, "Not recorded: " + (error.message || error), true);
      return false;
    });
  }

  function tileElement(w) {
    var tile = document.createElement("figure");
    tile.className = "tile";
    tile.tabIndex = 0;
    tile.dataset.audio = String(w.audio_file_id);
    tile.dataset.start = String(w.start);
    tile.dataset.duration = String(w.duration);
    if (w.embedding_set_id != null) { tile.dataset.set = String(w.embedding_set_id); }
    if (w.row_index != null) { tile.dataset.row = String(w.row_index); }
    var image = document.createElement("img");
    image.loading = "lazy";
    image.width = 160;
    image.height = 100;
    image.alt = "spectrogram of " + w.recording + " at " + w.start.toFixed(2) + " s";
    image.src = "/api/audio/" + encodeURIComponent(w.audio_file_id) + "/spectrogram.png?start=" + encodeURIComponent(w.start) +
      "&duration=" + encodeURIComponent(w.duration) + "&width=160&height=100";
    tile.appendChild(image);
    var caption = document.createElement("figcaption");
    var time = document.createElement("span");
    time.className = "tile-time";
    time.textContent = w.start.toFixed(1) + " s";
    caption.appendChild(time);
    if (w.caption) { caption.appendChild(document.createTextNode(" · " + w.caption)); }
    caption.appendChild(document.createElement("br"));
    var name = document.createElement("a");
    name.href = "/audio/" + encodeURIComponent(w.audio_file_id) + "?start=" + encodeURIComponent(w.start);
    name.title = w.recording;
    name.textContent = w.recording;
    caption.appendChild(name);
    tile.appendChild(caption);
    var actions = document.createElement("div");
    actions.className = "tile-actions";
    var playButton = document.createElement("button");
    playButton.type = "button";
    playButton.dataset.action = "play";
    playButton.textContent = "Play";
    actions.appendChild(playButton);
    if (w.embedding_set_id != null) {
      var similar = document.createElement("a");
      similar.href = "/search?set=" + encodeURIComponent(w.embedding_set_id) + "&row=" + encodeURIComponent(w.row_index);
      similar.textContent = "Find similar";
      similar.dataset.action = "similar";
      actions.appendChild(similar);
    }
    var annotateButton = document.createElement("button");
    annotateButton.type = "button";
    annotateButton.dataset.action = "annotate";
    annotateButton.textContent = "Annotate";
    actions.appendChild(annotateButton);
    tile.appendChild(actions);
    return tile;
  }

  function render(grid, windows) {
    grid.textContent = "";
    windows.forEach(function (w) { grid.appendChild(tileElement(w)); });
    showRecent(grid);
  }

  function form(grid) { return grid.parentElement.querySelector("form[data-tile-annotate]"); }

  function chosenKind(grid) {
    var annotateForm = form(grid);
    var kind = annotateForm && annotateForm.querySelector("[name='kind']");
    return kind ? kind.value : "positive";
  }

  function columns(grid) {
    var tiles = grid.querySelectorAll(".tile");
    if (tiles.length < 2) { return 1; }
    var top = tiles[0].offsetTop, perRow = 0;
    for (var i = 0; i < tiles.length && tiles[i].offsetTop === top; i++) { perRow++; }
    return Math.max(1, perRow);
  }

  function attach(grid) {
    if (grid.dataset.tilesReady) { return; }
    grid.dataset.tilesReady = "true";
    var status = grid.parentElement.querySelector("[data-tile-status]");
    grid.addEventListener("click", function (event) {
      var action = event.target.closest("[data-action]");
      var tile = event.target.closest(".tile");
      if (!action || !tile) { return; }
      if (action.dataset.action === "play") { play(grid, windowOf(tile), tile); }
      if (/^(confirm|reject|skip)$/.test(action.dataset.action) && tile.dataset.reviewLabel) {
        judge(grid, tile, action.dataset.action, status);
      }
      if (action.dataset.action === "annotate") {
        var annotateForm = form(grid);
        var field = annotateForm && annotateForm.querySelector("[name='label']");
        grid.querySelectorAll(".tile.chosen").forEach(function (other) { other.classList.remove("chosen"); });
        tile.classList.add("chosen");
        if (field && field.value.trim()) {
          annotate([windowOf(tile)], field.value, chosenKind(grid), status);
        } else if (field) { field.focus(); }
      }
    });
    grid.addEventListener("keydown", function (event) {
      var tile = event.target.closest(".tile");
      if (!tile || event.target !== tile || event.altKey || event.ctrlKey || event.metaKey) { return; }
      var tiles = Array.prototype.slice.call(grid.querySelectorAll(".tile"));
      var index = tiles.indexOf(tile);
      var move = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(grid), ArrowUp: -columns(grid) }[event.key];
      if (event.key === " ") {
        event.preventDefault();
        play(grid, windowOf(tile), tile);
      } else if (move) {
        event.preventDefault();
        var next = tiles[Math.max(0, Math.min(tiles.length - 1, index + move))];
        if (next) { next.focus(); }
      } else if (/^[1-9]$/.test(event.key)) {
        var label = recentLabels()[Number(event.key) - 1];
        if (label) {
          event.preventDefault();
          annotate([windowOf(tile)], label, chosenKind(grid), status).then(function (ok) {
            if (ok) { tile.classList.add("annotated"); tile.dataset.annotation = label; }
          });
        }
      } else if (tile.dataset.reviewLabel && { c: 1, r: 1, s: 1 }[event.key]) {
        event.preventDefault();
        judge(grid, tile, { c: "confirm", r: "reject", s: "skip" }[event.key], status);
      } else if (event.key === "a") {
        var annotateForm = form(grid);
        var field = annotateForm && annotateForm.querySelector("[name='label']");
        if (field) { event.preventDefault(); grid.querySelectorAll(".tile.chosen").forEach(function (t) { t.classList.remove("chosen"); }); tile.classList.add("chosen"); field.focus(); }
      }
    });
    var annotateForm = form(grid);
    if (annotateForm) {
      annotateForm.addEventListener("submit", function (event) {
        event.preventDefault();
        var label = annotateForm.querySelector("[name='label']").value;
        var chosen = grid.querySelectorAll(".tile.chosen");
        var all = event.submitter && event.submitter.dataset.scope === "all";
        var tiles = all || chosen.length === 0 ? grid.querySelectorAll(".tile") : chosen;
        var windows = Array.prototype.map.call(tiles, windowOf);
        annotate(windows, label, chosenKind(grid), status).then(function (ok) {
          if (ok) { Array.prototype.forEach.call(tiles, function (t) { t.classList.add("annotated"); t.dataset.annotation = label.trim(); }); }
        });
      });
    }
    showRecent(grid);
  }

  window.humpbackTiles = {
    render: function (grid, windows) { attach(grid); render(grid, windows); },
    playAll: function (grid, windows) { attach(grid); playAll(grid, windows); },
    annotate: annotate
  };

  function start() { document.querySelectorAll("[data-tiles]").forEach(attach); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
