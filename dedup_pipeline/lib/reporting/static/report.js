// Renders one table page of the report from window.REPORT_TABLE (set by data/<page>.js):
// filters, pagination and thumbnails. Every value goes into the page as text (textContent,
// attributes set one by one), never as HTML: file names, labels and splits are untrusted.
(function () {
  "use strict";
  var table = window.REPORT_TABLE;
  var state = { page: 0, filters: {} };
  var body = document.body;
  var wanted = new URLSearchParams(window.location.hash.slice(1));

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
  filters();
  render();
})();
