"use strict";
// ws-analyzer report tables: click a header to sort, type in the box above a table to filter.
// Self-contained (nothing fetched); allowed by the page's Content-Security-Policy by its hash.
// It reads cell text only through textContent and never writes HTML.
(function () {
  function cellKey(row, col, numeric) {
    var cell = row.cells[col];
    var text = cell ? cell.textContent : "";
    if (numeric) {
      var v = parseFloat(text);
      return isNaN(v) ? -Infinity : v;
    }
    return text;
  }

  function sortTable(table, col, descending) {
    var body = table.tBodies[0];
    var header = table.tHead.rows[0].cells[col];
    var numeric = header.classList.contains("num");
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) { return [cellKey(row, col, numeric), i, row]; });
    keyed.sort(function (a, b) {
      var d = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
      if (descending) { d = -d; }
      return d || a[1] - b[1];
    });
    keyed.forEach(function (k) { body.appendChild(k[2]); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  function filterTable(table, text) {
    var needle = text.trim().toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var hit = !needle || row.textContent.toLowerCase().indexOf(needle) >= 0;
      row.hidden = !hit;
      if (hit) { shown += 1; }
    });
    var count = document.getElementById(table.id + "-count");
    if (count) {
      count.textContent = needle ? shown + " of " + table.tBodies[0].rows.length + " rows match" : "";
    }
    return shown;
  }

  function setUp(table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by " + th.textContent;
      function sortHere() {
        sortTable(table, col, th.getAttribute("aria-sort") === "ascending");
      }
      th.addEventListener("click", sortHere);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortHere(); }
      });
    });
    var box = document.getElementById(table.id + "-filter");
    if (box) {
      box.hidden = false;
      box.addEventListener("input", function () { filterTable(table, box.value); });
    }
  }

  window.wsReport = { sortTable: sortTable, filterTable: filterTable };
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.data"), setUp);
  });
})();
