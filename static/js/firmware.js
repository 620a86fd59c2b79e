/* The Firmware widget's upload: drop a file on the drop area (or pick one), see its name
 * and size, get the version and device types suggested from it, and Save with an upload
 * progress bar. Without JavaScript the same form posts as a plain multipart form.
 *
 * Listeners are delegated from the document, so a re-rendered widget needs nothing; the
 * guard keeps a second copy of this script (a re-inserted widget) from adding them twice.
 */
(function () {
  "use strict";
  if (window.FleetgateFirmware) return;
  document.documentElement.classList.add("firmware-js");

  const VERSION_IN_NAME = /(?:^|[^0-9A-Za-z])v?(\d+(?:\.\d+)+(?:[-+][0-9A-Za-z.]+)?)\.[^.]+$/;

  function formOf(element) {
    return element && element.closest ? element.closest("[data-image-upload]") : null;
  }
  function zoneOf(element) {
    return element && element.closest ? element.closest(".drop-zone") : null;
  }
  function sizeText(bytes) {
    if (bytes >= 1048576) return (bytes / 1048576).toFixed(1).replace(/\.0$/, "") + " MiB";
    if (bytes >= 1024) return (bytes / 1024).toFixed(1).replace(/\.0$/, "") + " KiB";
    return bytes + " bytes";
  }
  function extensionOf(name) {
    const dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(dot).toLowerCase() : "";
  }
  function setStatus(form, text, isError) {
    const status = form.querySelector("[data-upload-status]");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("danger", Boolean(isError));
  }

  // A chosen file: show it, suggest the version and the types that take its extension.
  function describe(form) {
    const input = form.querySelector("input[type=file]");
    const file = input && input.files[0];
    const label = form.querySelector("[data-drop-file]");
    if (label) label.textContent = file ? file.name + " · " + sizeText(file.size) : "";
    if (!file) return;
    form.removeAttribute("data-collapsed");
    const version = form.querySelector("input[name=version]");
    const match = VERSION_IN_NAME.exec(file.name);
    if (version && !version.value && match) version.value = match[1];
    const ext = extensionOf(file.name);
    const boxes = Array.from(form.querySelectorAll("input[name=device_types]"));
    if (!boxes.some((box) => box.checked)) {
      boxes.forEach((box) => {
        box.checked = (box.dataset.extensions || "").split(" ").includes(ext);
      });
    }
    const max = Number(form.dataset.maxBytes || 0);
    if (max && file.size > max) {
      setStatus(form, "This file is larger than the " + form.dataset.maxSize + " limit for images.", true);
    } else {
      setStatus(form, "");
    }
  }

  document.addEventListener("change", (event) => {
    const form = formOf(event.target);
    if (form && event.target.matches("input[type=file]")) describe(form);
  });

  // Drag and drop onto the drop area.
  ["dragenter", "dragover"].forEach((name) => {
    document.addEventListener(name, (event) => {
      const zone = zoneOf(event.target);
      if (!zone) return;
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      zone.classList.add("is-dragover");
    });
  });
  ["dragleave", "dragend"].forEach((name) => {
    document.addEventListener(name, (event) => {
      const zone = zoneOf(event.target);
      if (zone && !zone.contains(event.relatedTarget)) zone.classList.remove("is-dragover");
    });
  });
  document.addEventListener("drop", (event) => {
    const zone = zoneOf(event.target);
    if (!zone) return;
    event.preventDefault();
    zone.classList.remove("is-dragover");
    const files = event.dataTransfer ? event.dataTransfer.files : null;
    const input = document.getElementById(zone.htmlFor);
    if (!files || !files.length || !input) return;
    const chosen = new DataTransfer();
    chosen.items.add(files[0]); // one image at a time
    input.files = chosen.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });

  // Save: post with XMLHttpRequest for its upload progress, then put the answer in place.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.matches || !form.matches("[data-image-upload]")) return;
    event.preventDefault();
    upload(form);
  });

  function upload(form) {
    const input = form.querySelector("input[type=file]");
    const file = input && input.files[0];
    const max = Number(form.dataset.maxBytes || 0);
    if (file && max && file.size > max) {
      setStatus(form, "This file is larger than the " + form.dataset.maxSize + " limit for images.", true);
      return;
    }
    const bar = form.querySelector("[data-upload-bar]");
    const button = form.querySelector("[type=submit]");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("HX-Request", "true");
    const token = form.querySelector("[name=csrfmiddlewaretoken]");
    if (token) xhr.setRequestHeader("X-CSRFToken", token.value);
    if (bar) {
      bar.hidden = false;
      bar.value = 0;
    }
    if (button) button.disabled = true;
    setStatus(form, file ? "Uploading…" : "");
    xhr.upload.addEventListener("progress", (progress) => {
      if (!progress.lengthComputable || !bar) return;
      const percent = Math.round((progress.loaded / progress.total) * 100);
      bar.value = percent;
      setStatus(form, "Uploading… " + percent + " %");
    });
    xhr.upload.addEventListener("load", () => {
      if (bar) bar.value = 100;
      if (file) setStatus(form, "Checking the image…");
    });
    xhr.addEventListener("load", () => answered(form, xhr));
    xhr.addEventListener("error", () => {
      if (button) button.disabled = false;
      setStatus(form, "The portal cannot be reached. Check the connection and try again.", true);
    });
    xhr.send(new FormData(form));
  }

  function answered(form, xhr) {
    const widget = form.closest("#firmware-widget");
    const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
    const fresh = page.getElementById("firmware-widget");
    if (!widget || !fresh) {
      const button = form.querySelector("[type=submit]");
      if (button) button.disabled = false;
      const reason = xhr.status === 403 ? "Your role groups do not allow this." : "Something went wrong (" + xhr.status + "). Try again.";
      setStatus(form, reason, true);
      return;
    }
    const count = fresh.querySelector("[hx-swap-oob]#widget-firmware-count");
    const current = document.getElementById("widget-firmware-count");
    if (count) {
      if (current) current.textContent = count.textContent;
      count.remove(); // it belongs in the card header, as htmx's out-of-band swap does
    }
    widget.replaceWith(fresh);
    if (window.htmx) window.htmx.process(fresh);
    const invalid = fresh.querySelector(".has-errors input, .has-errors textarea");
    if (invalid) invalid.focus();
  }

  window.FleetgateFirmware = { describe };
})();
