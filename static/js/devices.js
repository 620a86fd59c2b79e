/* The Devices widget's rows stay in view after an action.
 *
 * With a filter on ("discovered", say), provisioning a selection moves its devices out
 * of the filter, and the widget's refresh would drop the very rows the user is
 * watching. So the ids of devices acted on (a POST carrying "device" ids, or a device's
 * own edit/delete URL) are remembered, and the widget's own refreshes send them in
 * X-Keep-Devices: the server renders those that stopped matching dimmed, with "no
 * longer matches the filter". Changing the filter, sort or page forgets them, and so
 * does a reload (the set lives in this page only).
 */
(function () {
  "use strict";

  const KEEP_HEADER = "X-Keep-Devices";
  const MAX_KEPT = 200;
  const DEVICE_URL = /\/devices\/(\d+)\/(?:edit|delete)\/$/;
  const kept = new Set();

  function remember(id) {
    const n = Number(id);
    if (!Number.isSafeInteger(n) || n <= 0) return;
    kept.delete(n); // newest last, so the cap drops the oldest
    kept.add(n);
    while (kept.size > MAX_KEPT) kept.delete(kept.values().next().value);
  }

  document.addEventListener("htmx:configRequest", (event) => {
    const detail = event.detail;
    const elt = detail.elt;
    if (detail.verb === "post") {
      const data = detail.formData;
      if (data) data.getAll("device").forEach(remember);
      const own = DEVICE_URL.exec(new URL(detail.path, window.location.href).pathname);
      if (own) remember(own[1]);
      return;
    }
    if (detail.verb !== "get" || !elt || !elt.closest) return;
    if (elt.id === "devices-results") {
      // The widget refreshing itself (after an action, a reconnect, a live refresh).
      if (kept.size) detail.headers[KEEP_HEADER] = Array.from(kept).join(",");
    } else if (elt.closest("#devices-widget")) {
      kept.clear(); // the user chose another filter, sort or page
    }
  });

  window.Fleetgate = Object.assign(window.Fleetgate || {}, {
    devices: { kept: () => Array.from(kept) },
  });
})();
