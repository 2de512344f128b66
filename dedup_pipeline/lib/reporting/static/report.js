// Renders one table page of the report from window.REPORT_TABLE (set by data/<page>.js):
// filters, pagination, thumbnails and a person's marks on pairs. The marks the store keeps come
// from window.REPORT_MARKS (data/stored-marks.js) and show pressed; the marks made here are kept in
// the browser's storage under this report's own key, for every page of the report, and download
// as the CSV `dedup-pipeline run --overrides` reads (a stored mark taken back downloads as clear).
// Every value goes into the page as text (textContent, attributes set one by one), never as
// HTML: file names, labels and splits are untrusted.
(function () {
  "use strict";
  var table = window.REPORT_TABLE;
  var state = { page: 0, filters: {} };
  var body = document.body;
  var wanted = new URLSearchParams(window.location.hash.slice(1));
  var MARKS_KEY = window.REPORT_MARKS.key;
  var VERDICTS = ["duplicate", "not duplicate"];
  var CLEAR = "clear";
  var stored = {};
  window.REPORT_MARKS.stored.forEach(function (mark) { stored[keyOf([mark[0], mark[1]])] = mark[2]; });
  var marks = loadMarks();

  function keyOf(paths) {
    return JSON.stringify(paths.map(String).sort());
  }

  // The verdict a pair has now: the mark made here (clear: none), else the stored one.
  function verdictOf(key) {
    var made = Object.prototype.hasOwnProperty.call(marks, key) ? marks[key] : stored[key];
    return made === CLEAR ? undefined : made;
  }

  // Pressing ``verdict`` on a pair: a second press takes the verdict back (clear, if the store
  // holds it); a mark equal to the stored one is no change to download.
  function press(key, verdict) {
    var wanted = verdictOf(key) === verdict ? undefined : verdict;
    if (wanted === stored[key]) delete marks[key];
    else marks[key] = wanted === undefined ? CLEAR : wanted;
    saveMarks();
  }

  // Marks made here, by pair: the key is the JSON of the two paths sorted, the value the verdict.
  // Without storage (some browsers refuse it to files) they last as long as the page.
  function loadMarks() {
    try {
      return JSON.parse(window.localStorage.getItem(MARKS_KEY) || "{}");
    } catch (error) {
      return {};
    }
  }

  function saveMarks() {
    try {
      window.localStorage.setItem(MARKS_KEY, JSON.stringify(marks));
    } catch (error) {
      // kept in the page only
    }
    showMarks();
  }

  function pairKey(row) {
    var paths = table.pair.map(function (key) { return row[column(key)]; });
    if (paths.some(function (path) { return path === null || path === undefined; })) return null;
    return keyOf(paths);
  }

  function csvField(value) {
    return '"' + String(value === null || value === undefined ? "" : value).replace(/"/g, '""') + '"';
  }

  function marksCsv() {
    var lines = ["path_a,path_b,verdict"];
    Object.keys(marks).sort().forEach(function (key) {
      var paths = JSON.parse(key);
      lines.push([paths[0], paths[1], marks[key]].map(csvField).join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }

  function showMarks() {
    var count = Object.keys(marks).length;
    var shown = document.getElementById("marks-count");
    if (shown) shown.textContent = count ? count + (count === 1 ? " mark" : " marks") + " to download" : "no marks yet";
    body.dataset.marks = count;
  }

  function download() {
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([marksCsv()], { type: "text/csv" }));
    link.download = "marks.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { URL.revokeObjectURL(link.href); }, 60000);
  }

  function markCell(row) {
    var td = document.createElement("td");
    var key = pairKey(row);
    if (key === null) return td;
    VERDICTS.forEach(function (verdict) {
      var button = text("button", verdict, "mark");
      button.dataset.verdict = verdict;
      button.setAttribute("aria-pressed", String(verdictOf(key) === verdict));
      button.addEventListener("click", function () {
        press(key, verdict);
        td.querySelectorAll("button").forEach(function (other) {
          other.setAttribute("aria-pressed", String(verdictOf(key) === other.dataset.verdict));
        });
      });
      td.appendChild(button);
    });
    return td;
  }

  function text(tag, value, className) {
    var element = document.createElement(tag);
    element.textContent = value === null || value === undefined ? "" : String(value);
    if (className) element.className = className;
    return element;
  }

  function column(key) {
    return table.columns.findIndex(function (c) { return c.key === key; });
  }

  function filterValue(row, filter) {
    return filter.keys.map(function (key) { return row[column(key)]; }).join(" / ");
  }

  function matching() {
    return table.rows.filter(function (row) {
      return table.filters.every(function (filter) {
        var chosen = state.filters[filter.name];
        if (!chosen) return true;
        var value = filterValue(row, filter);
        return filter.contains ? String(value).indexOf(chosen) !== -1 : value === chosen;
      });
    });
  }

  function thumbnail(imageId, path) {
    if (imageId === null || imageId === undefined) return text("span", "(not in the dataset)", "missing");
    var image = document.createElement("img");
    image.className = "thumb";
    image.loading = "lazy";
    image.alt = path || "";
    image.title = path || "";
    image.addEventListener("load", countThumbnails);
    image.addEventListener("error", countThumbnails);
    image.src = "thumbs/" + encodeURIComponent(String(imageId)) + ".png";
    return image;
  }

  function countThumbnails() {
    var images = Array.prototype.slice.call(document.querySelectorAll("img.thumb"));
    var done = images.filter(function (image) { return image.complete; });
    body.dataset.thumbnailsShown = images.length;
    body.dataset.thumbnailsLoaded = done.filter(function (image) { return image.naturalWidth > 0; }).length;
    body.dataset.thumbnailsBroken = done.filter(function (image) { return image.naturalWidth === 0; }).length;
  }

  function cell(row, spec) {
    var td = document.createElement("td");
    var value = row[column(spec.key)];
    if (spec.kind === "image") {
      var figure = document.createElement("figure");
      figure.appendChild(thumbnail(row[column(spec.image)], value));
      figure.appendChild(text("figcaption", value));
      td.appendChild(figure);
    } else if (spec.kind === "number" && typeof value === "number") {
      td.appendChild(text("span", Number.isInteger(value) ? value : value.toFixed(3)));
      td.className = "number";
    } else if (spec.kind === "flag") {
      td.appendChild(text("span", value ? spec.label : ""));
    } else {
      td.appendChild(text("span", value));
    }
    return td;
  }

  function render() {
    var rows = matching();
    var pages = Math.max(1, Math.ceil(rows.length / table.pageSize));
    state.page = Math.min(state.page, pages - 1);
    var shown = rows.slice(state.page * table.pageSize, (state.page + 1) * table.pageSize);
    var tbody = document.getElementById("rows");
    tbody.replaceChildren();
    shown.forEach(function (row) {
      var tr = document.createElement("tr");
      table.columns.filter(function (c) { return !c.hidden; }).forEach(function (spec) { tr.appendChild(cell(row, spec)); });
      if (table.pair) tr.appendChild(markCell(row));
      tbody.appendChild(tr);
    });
    document.getElementById("count").textContent =
      rows.length + " of " + table.rows.length + " " + table.noun + (rows.length === table.rows.length ? "" : " (filtered)");
    document.getElementById("page").textContent = "page " + (state.page + 1) + " of " + pages;
    document.getElementById("previous").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    body.dataset.rowsTotal = table.rows.length;
    body.dataset.rowsMatching = rows.length;
    body.dataset.rowsShown = shown.length;
    countThumbnails();
  }

  function filters() {
    var box = document.getElementById("filters");
    table.filters.forEach(function (filter) {
      var label = text("label", filter.label + " ");
      var input;
      if (filter.contains) {
        input = document.createElement("input");
        input.type = "search";
      } else {
        input = document.createElement("select");
        input.appendChild(text("option", "(all)"));
        input.lastChild.value = "";
        var values = Array.from(new Set(table.rows.map(function (row) { return filterValue(row, filter); }))).sort();
        values.forEach(function (value) {
          var option = text("option", value);
          option.value = value;
          input.appendChild(option);
        });
      }
      input.name = filter.name;
      input.value = wanted.get(filter.name) || "";
      state.filters[filter.name] = input.value;
      input.addEventListener("input", function () {
        state.filters[filter.name] = input.value;
        state.page = 0;
        render();
      });
      label.appendChild(input);
      box.appendChild(label);
    });
  }

  document.getElementById("previous").addEventListener("click", function () { state.page -= 1; render(); });
  document.getElementById("next").addEventListener("click", function () { state.page += 1; render(); });
  if (table.pair) {
    document.getElementById("download-marks").addEventListener("click", download);
    document.getElementById("forget-marks").addEventListener("click", function () {
      var count = Object.keys(marks).length;
      if (!count || !window.confirm("Forget the " + count + " marks made in this browser and not applied yet?")) return;
      marks = {};
      saveMarks();
      render();
    });
  }
  // another page of the report changed the marks
  window.addEventListener("storage", function (event) {
    if (event.key !== MARKS_KEY) return;
    marks = loadMarks();
    showMarks();
    render();
  });
  filters();
  render();
  showMarks();
})();
