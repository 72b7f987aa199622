// humpback clustering form: says how many embedding sets and windows the current choice covers
// (the ticked sets, else the folder, else the model version), before any metadata filter.
(function () {
  "use strict";
  var form = document.getElementById("clustering-form");
  var summary = document.getElementById("selection-summary");
  if (!form || !summary) { return; }

  function plural(count, word) { return count + " " + word + (count === 1 ? "" : "s"); }

  function describe() {
    var boxes = Array.prototype.slice.call(form.querySelectorAll('input[name="embedding_set_id"]'));
    var ticked = boxes.filter(function (box) { return box.checked; });
    var folder = form.elements.folder ? form.elements.folder.value : "";
    var version = form.elements.model_version ? form.elements.model_version.value : "";
    var chosen, how;
    if (ticked.length > 0) {
      chosen = ticked; how = "the ticked sets";
    } else if (folder !== "") {
      chosen = boxes.filter(function (box) { return box.getAttribute("data-folder") === folder; });
      how = "folder " + folder;
    } else if (version !== "") {
      chosen = boxes.filter(function (box) { return box.getAttribute("data-model-version") === version; });
      how = "model version " + version;
    } else {
      summary.textContent = "Nothing chosen yet.";
      return;
    }
    var windows = chosen.reduce(function (sum, box) { return sum + Number(box.getAttribute("data-windows") || 0); }, 0);
    var versions = {};
    chosen.forEach(function (box) { versions[box.getAttribute("data-model-version")] = true; });
    var text = "Selected (" + how + "): " + plural(chosen.length, "set") + ", " + plural(windows, "window");
    var filtered = form.elements.folder_prefix.value !== "" || form.elements.metadata_path.value !== "";
    if (filtered) { text += ", before the filters"; }
    if (Object.keys(versions).length > 1) { text += ". These sets come from different model versions and cannot be clustered together"; }
    summary.textContent = text + ".";
  }

  form.addEventListener("change", describe);
  form.addEventListener("input", describe);
  describe();
})();
