// The console's only script: select-all, confirmations, copy buttons, drag and drop onto the file input,
// uploads with a progress bar per file, live status until every extension is final, and
// live jobs and webhooks pages (paused while the tab is hidden).
// No framework, nothing fetched from elsewhere.
(function () {
  "use strict";
  var base = document.querySelector("link[rel=stylesheet]").getAttribute("href")
    .replace(/\/static\/console\.css$/, "");

  document.querySelectorAll("[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll("#selection input[name=fileId]").forEach(function (c) {
        c.checked = box.checked;
      });
    });
  });
  document.querySelectorAll("button[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (e) {
      if (!window.confirm(button.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
  // The transformation URL builder: the URL the SDKs' build_url makes (?tr=w-…,h-…,c-…,f-…,
  // q-…, in that order), shown and previewed as it is typed.
  document.querySelectorAll("form[data-url-builder]").forEach(function (builder) {
    var out = builder.querySelector("[data-url-out]");
    var preview = document.querySelector("[data-url-preview]");
    var update = function () {
      var parts = [];
      ["w", "h", "c", "f", "q"].forEach(function (k) {
        var v = builder.elements[k].value.trim();
        if (v) { parts.push(k + "-" + v); }
      });
      var url = builder.getAttribute("data-src") + (parts.length ? "?tr=" + parts.join(",") : "");
      if (out.value !== url) {
        out.value = url;
        if (preview) { preview.src = url; }
      }
    };
    builder.addEventListener("input", update);
    builder.addEventListener("change", update);
  });
  // Copy buttons: the named input's value (or element's text) to the clipboard.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      var text = "value" in source ? source.value : source.textContent;
      var done = function () { button.textContent = "Copied"; };
      var fallback = function () {
        if (source.select) { source.select(); }
        document.execCommand("copy");
        done();
      };
      if (navigator.clipboard) { navigator.clipboard.writeText(text).then(done, fallback); }
      else { fallback(); }
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

  // Live status: every [data-status-for] that still says "pending" is asked again each second.
  var pending = [];
  var polling = false;
  function watch(el) {
    if (el.textContent.indexOf("pending") === -1) { return; }
    pending.push(el);
    if (!polling) { polling = true; window.setTimeout(poll, 1000); }
  }
  function poll() {
    pending = pending.filter(function (el) { return el.textContent.indexOf("pending") !== -1; });
    if (!pending.length) { polling = false; return; }
    if (document.hidden) { window.setTimeout(poll, 1000); return; }  // paused while hidden
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
  document.querySelectorAll("[data-status-for]").forEach(watch);

  // Live pages (jobs, webhooks): each [data-live] region is read again every 3 s while the
  // tab is visible and replaced in place (no reload); paused while the tab is hidden, read
  // at once when it shows again.
  var regions = document.querySelectorAll("[data-live]");
  function refresh() {
    if (document.hidden || !regions.length) { return; }
    fetch(window.location.href, {credentials: "same-origin", headers: {"X-Console-Live": "1"}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        regions.forEach(function (region) {
          var next = fresh.querySelector("[data-live='" + region.getAttribute("data-live") + "']");
          if (next && next.innerHTML !== region.innerHTML) { region.innerHTML = next.innerHTML; }
        });
      });
  }
  if (regions.length) {
    window.setInterval(refresh, 3000);
    document.addEventListener("visibilitychange", refresh);
  }

  // Uploads: one request per file, each with its own progress bar; results link to the file.
  var form = document.getElementById("upload-form");
  if (form) {
    form.addEventListener("submit", function (e) {
      var input = form.querySelector("input[type=file]");
      if (!input.files.length || !window.FormData) { return; }
      e.preventDefault();
      var list = document.querySelector("ul.results");
      if (!list) {
        var h = document.createElement("h2"); h.textContent = "Uploaded";
        list = document.createElement("ul"); list.className = "results";
        form.after(h); h.after(list);
      }
      Array.prototype.forEach.call(input.files, function (file) {
        var item = document.createElement("li");
        var label = document.createElement("span"); label.textContent = file.name + " ";
        var bar = document.createElement("progress"); bar.max = 100; bar.value = 0;
        bar.setAttribute("aria-label", "Uploading " + file.name);
        item.append(label, bar); list.append(item);
        var data = new FormData(form);
        data.delete("files"); data.append("files", file, file.name);
        var xhr = new XMLHttpRequest();
        xhr.open("POST", form.action);
        xhr.setRequestHeader("X-Console-Upload", "1");
        xhr.upload.onprogress = function (ev) {
          if (ev.lengthComputable) { bar.value = Math.round(100 * ev.loaded / ev.total); }
        };
        xhr.onload = function () {
          bar.value = 100;
          var r = null;
          try { r = JSON.parse(xhr.responseText)[0]; } catch (err) { r = null; }
          label.textContent = "";
          if (xhr.status === 200 && r && r.fileId) {
            var a = document.createElement("a");
            a.href = base + "/files/" + encodeURIComponent(r.fileId); a.textContent = r.name;
            var st = document.createElement("span"); st.className = "status";
            st.setAttribute("data-status-for", r.fileId);
            st.textContent = Object.keys(r.extensionStatus).map(function (k) {
              return k + ": " + r.extensionStatus[k]; }).join(" ");
            label.append(a, " ", st);
            watch(st);
          } else {
            var err = document.createElement("span"); err.className = "error";
            err.textContent = file.name + ": " + ((r && r.error) || ("HTTP " + xhr.status));
            label.append(err);
          }
        };
        xhr.onerror = function () { label.textContent = file.name + ": the upload failed"; };
        xhr.send(data);
      });
    });
  }
}());
