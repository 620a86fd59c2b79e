/* The dashboard's one WebSocket: live row updates for every widget.
 *
 * Messages are JSON objects with a "kind". Devices and gateways rows are patched here,
 * in place, by id; every message is also re-dispatched on the document as a
 * "fleetgate:live" CustomEvent so other widgets (events chart) can listen without a
 * second socket. The server coalesces: one message may carry many rows.
 *
 * After a reconnect (server restart, network blip) the widgets may have missed
 * updates, so a "liveResync" event on <body> makes each widget reload its snapshot
 * (their hx-trigger lists "liveResync from:body").
 */
(function () {
  "use strict";

  const root = document.querySelector("[data-live-url]");
  if (!root || !("WebSocket" in window)) return;

  // Looked up each time: a page that re-renders itself (the device page) brings a new one.
  const indicatorElement = () => document.getElementById("live-indicator");
  let currentStatus = "connecting";
  const LABELS = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    offline: "Offline",
  };
  const MIN_DELAY_MS = 500;
  const MAX_DELAY_MS = 10000;

  let socket = null;
  let attempts = 0;
  let everConnected = false;
  let retryTimer = null;

  function setStatus(status) {
    currentStatus = status;
    const indicator = indicatorElement();
    if (!indicator) return;
    indicator.dataset.state = status;
    const label = indicator.querySelector(".live-label");
    if (label) label.textContent = LABELS[status];
    indicator.title = status === "live" ? "Live updates connected" : LABELS[status];
  }

  function badge(colour, text) {
    const span = document.createElement("span");
    span.className = "badge badge-" + colour;
    span.textContent = text;
    return span;
  }

  function flash(row) {
    row.classList.remove("is-updated");
    void row.offsetWidth; // restart the animation when the same row changes again
    row.classList.add("is-updated");
  }

  /** A bulk operation's bar and legend: done, failed, cancelled and waiting. */
  function setCounts(li, message) {
    const waiting = Math.max(0, message.total - message.done - message.failed - message.cancelled);
    const parts = { done: message.done, failed: message.failed, cancelled: message.cancelled, waiting: waiting };
    const bar = li.querySelector(".bulk-bar");
    if (bar) bar.setAttribute("viewBox", "0 0 " + Math.max(1, message.total) + " 1");
    let x = 0;
    for (const key of ["done", "failed", "cancelled", "waiting"]) {
      const rect = li.querySelector('.bulk-seg[data-part="' + key + '"]');
      if (rect) {
        rect.setAttribute("x", String(x));
        rect.setAttribute("width", String(parts[key]));
      }
      x += parts[key];
      const count = li.querySelector(".bulk-" + key);
      if (count) count.textContent = parts[key].toLocaleString("en-US");
      const item = li.querySelector(".legend-" + key);
      if (item && (key === "cancelled" || key === "waiting")) item.hidden = parts[key] === 0;
    }
    li.classList.toggle("has-failures", message.failed > 0);
    li.dataset.running = String(message.running);
    li.dataset.finished = String(message.done + message.failed + message.cancelled);
  }

  const handlers = {
    operation(message) {
      latestProgress.set(message.id, message);
      const li = document.getElementById("bulk-" + message.id);
      if (li) setCounts(li, message);
      if (li && !message.running && window.htmx) window.htmx.trigger(document.body, "operationsChanged");
    },
    refresh(message) {
      if (!window.htmx) return;
      window.htmx.trigger(document.body, "liveRefresh", { widgets: message.widgets || [] });
      // One event per widget ("liveRefresh-devices"): hx-trigger needs no evaluated filter.
      for (const widget of message.widgets || []) window.htmx.trigger(document.body, "liveRefresh-" + widget);
    },
    devices(message) {
      for (const row of message.rows || []) {
        recentRows.set(row.id, { row: row, at: message.at || Date.now() });
        patchDevice(row);
      }
    },
    gateways(message) {
      for (const row of message.rows || []) {
        const tr = document.getElementById("gateway-" + row.id);
        if (!tr) continue;
        const status = tr.querySelector(".gateway-status");
        if (status && status.dataset.online !== String(row.online)) {
          status.dataset.online = String(row.online);
          status.replaceChildren(badge(row.online ? "green" : "grey", row.online ? "Online" : "Offline"));
          flash(tr);
        }
        const seen = tr.querySelector(".gateway-last-seen");
        if (seen && row.last_seen) seen.replaceChildren(window.Fleetgate.time.element(row.last_seen));
      }
    },
  };

  // Rows pushed lately, to patch again into a re-render that was read before they
  // arrived (a widget reloading while results stream in would show stale states).
  const recentRows = new Map();
  const RECENT_MS = 60000;
  // The same for bulk operations; their counters only grow, so the larger one is newer.
  const latestProgress = new Map();

  function patchDevice(row) {
    const tr = document.getElementById("device-" + row.id);
    if (!tr) return;
    const cell = tr.querySelector(".device-state");
    if (!cell || cell.dataset.state === row.state) return;
    cell.dataset.state = row.state;
    cell.replaceChildren(badge(row.colour, row.label));
    flash(tr);
  }

  document.addEventListener("htmx:afterSettle", () => {
    const indicator = indicatorElement();
    if (indicator && indicator.dataset.state !== currentStatus) setStatus(currentStatus);
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    const root = event.target.closest ? event.target.closest("[data-rendered-at]") : null;
    const rendered = Number((root || event.target.querySelector?.("[data-rendered-at]") || {}).dataset?.renderedAt || 0);
    if (!rendered) return;
    const now = Date.now();
    for (const [id, entry] of recentRows) {
      if (now - entry.at > RECENT_MS) recentRows.delete(id);
      else if (entry.at > rendered) patchDevice(entry.row);
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    for (const [id, message] of latestProgress) {
      const li = document.getElementById("bulk-" + id);
      if (!li) continue;
      const shown = Number(li.dataset.finished || 0);
      if (message.done + message.failed + message.cancelled > shown) setCounts(li, message);
      if (!message.running) latestProgress.delete(id);
    }
  });

  function onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      return; // not ours; the server only sends JSON
    }
    const handler = handlers[message.kind];
    if (handler) handler(message);
    document.dispatchEvent(new CustomEvent("fleetgate:live", { detail: message }));
  }

  function url() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + root.dataset.liveUrl;
  }

  function connect() {
    retryTimer = null;
    setStatus(everConnected ? "reconnecting" : "connecting");
    socket = new WebSocket(url());
    socket.addEventListener("open", () => {
      attempts = 0;
      setStatus("live");
      if (everConnected && window.htmx) window.htmx.trigger(document.body, "liveResync");
      everConnected = true;
    });
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (event) => {
      socket = null;
      // 4401/4403: logged out or no longer a member; retrying cannot help.
      if (event.code === 4401 || event.code === 4403) {
        setStatus("offline");
        return;
      }
      schedule();
    });
  }

  function schedule() {
    if (retryTimer) return;
    setStatus(everConnected ? "reconnecting" : "connecting");
    const delay = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** attempts);
    attempts += 1;
    retryTimer = setTimeout(connect, delay / 2 + Math.random() * (delay / 2));
  }

  // Waking from sleep or regaining the network: try now rather than at the next backoff.
  window.addEventListener("online", () => {
    if (!socket && retryTimer) {
      clearTimeout(retryTimer);
      attempts = 0;
      connect();
    }
  });
  window.addEventListener("pagehide", () => {
    if (socket) socket.close(1000);
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && !socket) {
      clearTimeout(retryTimer);
      connect(); // back from the page cache: snapshot and socket are both stale
    }
  });

  window.Fleetgate = Object.assign(window.Fleetgate || {}, {
    live: { status: () => currentStatus },
  });
  connect();
})();
