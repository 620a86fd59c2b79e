/* The device page follows its device live: live.js patches the state badge at once;
 * this asks the page to re-render the rest (actions allowed in the new state, the
 * timeline) a moment later, once per burst of changes.
 */
(function () {
  "use strict";

  let timer = null;
  document.addEventListener("fleetgate:live", (event) => {
    const message = event.detail || {};
    const page = document.getElementById("device-page");
    if (message.kind !== "devices" || !page || !window.htmx) return;
    const id = Number(page.dataset.deviceId);
    if (!(message.rows || []).some((row) => row.id === id)) return;
    clearTimeout(timer);
    timer = setTimeout(() => window.htmx.trigger(document.body, "deviceChanged"), 300);
  });
})();
