// The console's only script: select-all, confirmations, drag and drop onto the file input,
// and live status until every extension is final. No framework, nothing fetched elsewhere.
(function () {
  "use strict";
  document.querySelectorAll("[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll("#selection input[name=fileId]").forEach(function (c) {
        c.checked = box.checked;
      });
    });
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
  document.querySelectorAll("[data-drop]").forEach(function (zone) {
    var input = zone.querySelector("input[type=file]");
    zone.addEventListener("dragover", function (e) { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
    zone.addEventListener("drop", function (e) {
      e.preventDefault(); zone.classList.remove("over"); input.files = e.dataTransfer.files;
    });
  });
  var pending = Array.prototype.filter.call(document.querySelectorAll("[data-status-for]"),
    function (el) { return el.textContent.indexOf("pending") !== -1; });
  var base = document.querySelector("link[rel=stylesheet]").getAttribute("href").replace(/\/static\/console\.css$/, "");
  function poll() {
    pending = pending.filter(function (el) { return el.textContent.indexOf("pending") !== -1; });
    if (!pending.length) { return; }
    pending.forEach(function (el) {
      fetch(base + "/status/" + encodeURIComponent(el.getAttribute("data-status-for")),
            {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (!s) { return; }
          el.textContent = Object.keys(s).map(function (k) { return k + ": " + s[k]; }).join(" ");
        });
    });
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 1000);
}());
