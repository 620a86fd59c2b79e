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

  const indicator = document.getElementById("live-indicator");
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

  function formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    const pad = (n) => String(n).padStart(2, "0");
    return (
      date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      " " + pad(date.getHours()) + ":" + pad(date.getMinutes())
    );
  }

  function setCounts(li, message) {
    const finished = message.done + message.failed + message.cancelled;
    const bar = li.querySelector(".bulk-bar");
    if (bar) {
      bar.max = message.total;
      bar.value = finished;
      bar.textContent = Math.floor((finished * 100) / Math.max(1, message.total)) + "%";
    }
    const done = li.querySelector(".bulk-done");
    if (done) done.textContent = message.done.toLocaleString("en-US");
    const failed = li.querySelector(".bulk-failed");
    if (failed) {
      failed.textContent = message.failed.toLocaleString("en-US");
      failed.classList.toggle("text-danger", message.failed > 0);
    }
    li.dataset.running = String(message.running);
    const retry = li.querySelector(".bulk-retry");
    if (retry) retry.hidden = message.running || message.failed === 0;
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
        if (seen && row.last_seen) {
          const time = document.createElement("time");
          time.dateTime = row.last_seen;
          time.textContent = formatTime(row.last_seen);
          seen.replaceChildren(time);
        }
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
      const bar = li.querySelector(".bulk-bar");
      const shown = bar ? Number(bar.value) : 0;
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
    live: { status: () => (indicator ? indicator.dataset.state : null) },
  });
  connect();
})();
