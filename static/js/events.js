/* The Events widget: the live events-per-second chart and the live rows of its table.
 *
 * live.js re-dispatches every WebSocket message as a "fleetgate:live" event on the
 * document. An "events" message tells how many events one bridge batch wrote ("count"),
 * the server time it was sent ("at", ms) and up to 25 of them ("sample"). At 5,000
 * events/s that is ~50 messages a second, so a message only adds to a counter and
 * queues its rows; the chart and the table are redrawn at most four times a second.
 * Nothing ever pauses, whatever the rate.
 *
 * The chart is seeded from the server (data-rate-url on #events-widget) when the widget
 * appears and after a reconnect ("liveResync" on <body>), so it shows the last two
 * minutes at once and recovers the seconds a broken socket missed.
 */
(function () {
  "use strict";

  const REDRAW_MS = 250;
  const PENDING_CAP = 200; // sample rows waiting for a redraw: never more than a page
  const LABEL_MS = 1000; // how often the chart's aria-label is rewritten
  const PLOT = { left: 44, right: 632, top: 10, bottom: 138 }; // viewBox units, see the template
  const HEIGHT = 164;
  const numbers = new Intl.NumberFormat();

  const counts = new Map(); // server second (epoch s) -> events received in it
  let seconds = 120;
  let clockOffset = 0; // server ms minus this browser's ms, from the seed and the messages
  let pending = []; // sample rows not yet in the table, oldest first
  let redrawQueued = false;
  let lastDraw = 0;
  let lastLabel = 0;
  let seeding = null; // AbortController of the seed request under way
  let widget = null; // the #events-widget element the state belongs to
  let chartWidth = 0; // the width the chart's labels were laid out for
  const resizes = "ResizeObserver" in window ? new ResizeObserver(() => queueRedraw()) : null;
  let config = { gateways: {}, colours: {}, seconds: 120 };

  const serverNow = () => Date.now() + clockOffset;
  const byId = (id) => document.getElementById(id);

  // --- The counts ---------------------------------------------------------------------

  document.addEventListener("fleetgate:live", (event) => {
    const message = event.detail;
    if (!message || message.kind !== "events") return;
    const at = Number(message.at);
    if (Number.isFinite(at) && at > serverNow()) clockOffset = at - Date.now();
    const second = Math.floor((Number.isFinite(at) ? at : serverNow()) / 1000);
    const count = Math.max(0, Number(message.count) || 0);
    counts.set(second, (counts.get(second) || 0) + count);
    if (Array.isArray(message.sample) && message.sample.length) {
      for (const item of message.sample) pending.push(item);
      if (pending.length > PENDING_CAP) pending = pending.slice(-PENDING_CAP);
    }
    queueRedraw();
  });

  function seed() {
    if (!widget || !widget.dataset.rateUrl) return;
    if (seeding) seeding.abort();
    const controller = new AbortController();
    seeding = controller;
    const sent = Date.now();
    fetch(widget.dataset.rateUrl, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      signal: controller.signal,
    })
      .then((response) => {
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      })
      .then((data) => {
        // The server's clock decides which second an event belongs to.
        clockOffset = data.now - (sent + Date.now()) / 2;
        seconds = data.seconds || seconds;
        const first = Math.floor(data.start / 1000);
        // The snapshot replaces what the messages counted for its seconds; later
        // seconds keep their live counts.
        data.counts.forEach((count, index) => counts.set(first + index, count));
        queueRedraw();
      })
      .catch((error) => {
        if (error.name !== "AbortError" && window.Fleetgate && window.Fleetgate.toast) {
          window.Fleetgate.toast("The events chart could not load its history.", "error");
        }
      })
      .finally(() => {
        if (seeding === controller) seeding = null;
      });
  }

  // --- Redrawing, at most every REDRAW_MS ---------------------------------------------

  function queueRedraw() {
    if (redrawQueued) return;
    redrawQueued = true;
    const wait = Math.max(0, REDRAW_MS - (performance.now() - lastDraw));
    setTimeout(() => requestAnimationFrame(redraw), wait);
  }

  function redraw() {
    redrawQueued = false;
    lastDraw = performance.now();
    const svg = byId("events-chart-svg");
    if (svg) {
      drawChart(svg);
    } else {
      counts.clear(); // no chart on the page (yet): its seed will bring the history
    }
    flushRows();
  }

  function niceCeiling(value) {
    if (value <= 5) return 5;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function bar(x, width, height) {
    const top = PLOT.bottom - height;
    return "M" + x.toFixed(1) + " " + PLOT.bottom + "V" + top.toFixed(1) + "h" + width.toFixed(1) + "V" + PLOT.bottom + "z";
  }

  /** One viewBox unit per pixel, so a narrow card shrinks the plot, not the text. */
  function layout(svg) {
    const width = Math.round(svg.getBoundingClientRect().width);
    if (!width || width === chartWidth) return;
    chartWidth = width;
    PLOT.right = Math.max(width - 8, PLOT.left + 120);
    svg.setAttribute("viewBox", "0 0 " + (PLOT.right + 8) + " " + HEIGHT);
    svg.querySelectorAll("[data-right]").forEach((line) => line.setAttribute("x2", PLOT.right));
    const step = (PLOT.right - PLOT.left) / seconds;
    const crowded = PLOT.right - PLOT.left < 300; // then only every other label
    svg.querySelectorAll("[data-ago]").forEach((label) => {
      const ago = Number(label.dataset.ago);
      label.setAttribute("x", (PLOT.left + (seconds - ago) * step).toFixed(1));
      label.style.display = crowded && (ago === 90 || ago === 30) ? "none" : "";
    });
  }

  function drawChart(svg) {
    layout(svg);
    const current = Math.floor(serverNow() / 1000);
    const first = current - seconds + 1;
    for (const second of counts.keys()) if (second < first) counts.delete(second);
    const values = [];
    let peak = 0;
    let total = 0;
    for (let i = 0; i < seconds; i += 1) {
      const value = counts.get(first + i) || 0;
      values.push(value);
      peak = Math.max(peak, value);
      total += value;
    }
    const now = values[seconds - 2] || 0; // the last complete second
    const ceiling = niceCeiling(peak);
    const step = (PLOT.right - PLOT.left) / seconds;
    const width = Math.max(step - 1, 1);
    const height = (value) => ((PLOT.bottom - PLOT.top) * value) / ceiling;
    let complete = "";
    for (let i = 0; i < seconds - 1; i += 1) {
      if (values[i]) complete += bar(PLOT.left + i * step, width, Math.max(height(values[i]), 1));
    }
    const last = values[seconds - 1];
    setAttr(byId("events-chart-bars"), "d", complete);
    setAttr(byId("events-chart-current"), "d", last ? bar(PLOT.left + (seconds - 1) * step, width, Math.max(height(last), 1)) : "");
    setText(byId("events-chart-ymax"), numbers.format(ceiling) + "/s");
    setText(byId("events-chart-ymid"), numbers.format(ceiling / 2));
    setText(byId("events-rate-now"), numbers.format(now));
    setText(byId("events-rate-peak"), numbers.format(peak));
    setText(byId("widget-events-count"), numbers.format(now) + "/s");
    setAttr(byId("widget-events-count"), "title", "Events per second now, all gateways");
    if (performance.now() - lastLabel >= LABEL_MS) {
      lastLabel = performance.now();
      const average = Math.round(total / seconds);
      svg.setAttribute(
        "aria-label",
        "Events per second over the last 2 minutes: now " + numbers.format(now) +
          ", peak " + numbers.format(peak) + ", average " + numbers.format(average) + ".",
      );
    }
  }

  function setAttr(element, name, value) {
    if (element && element.getAttribute(name) !== value) element.setAttribute(name, value);
  }

  function setText(element, value) {
    if (element && element.textContent !== value) element.textContent = value;
  }

  // --- The live rows ------------------------------------------------------------------

  function cell(className, ...children) {
    const td = document.createElement("td");
    td.className = className;
    td.append(...children);
    return td;
  }

  function muted(text) {
    const span = document.createElement("span");
    span.className = "muted small";
    span.textContent = text;
    return span;
  }

  /** One sample as a table row. Every value goes in as text, never as markup. */
  function sampleRow(item) {
    const tr = document.createElement("tr");
    tr.className = "is-live";
    const time = window.Fleetgate.time.element(new Date(Number(item.ts)));
    const kind = String(item.kind || "");
    const badge = document.createElement("span");
    const colour = Object.hasOwn(config.colours, kind) ? config.colours[kind] : "grey";
    badge.className = "badge badge-" + colour;
    badge.textContent = kind;
    const serial = String(item.serial || "");
    let device;
    if (Number.isSafeInteger(item.device) && item.device > 0 && widget && widget.dataset.deviceUrl) {
      device = document.createElement("a");
      device.href = widget.dataset.deviceUrl.replace(/0\/$/, item.device + "/");
      device.textContent = serial;
    } else {
      device = document.createDocumentFragment();
      device.append(serial + " ", muted("(unknown)"));
    }
    const uid = String(item.gateway || "");
    const gateway = Object.hasOwn(config.gateways, uid) ? config.gateways[uid] : uid || "—";
    tr.append(
      cell("col-time", time),
      cell("col-kind", badge),
      cell("col-serial", device),
      cell("col-gateway", gateway),
      cell("col-message", String(item.message || "")),
    );
    return tr;
  }

  function flushRows() {
    const results = byId("events-results");
    const tbody = byId("events-rows");
    if (!pending.length || !results || !tbody || results.dataset.live !== "true") {
      pending = []; // samples belong to the newest unfiltered page only
      return;
    }
    const limit = Number(results.dataset.liveRows) || 50;
    const items = pending.slice(-limit);
    pending = [];
    const fragment = document.createDocumentFragment();
    for (let i = items.length - 1; i >= 0; i -= 1) {
      const tr = sampleRow(items[i]);
      if (items.length <= 5) tr.classList.add("is-updated"); // a flash only when it can be seen
      fragment.append(tr);
    }
    tbody.querySelectorAll(".empty-row").forEach((tr) => tr.remove());
    tbody.prepend(fragment);
    let pushedOut = false;
    while (tbody.rows.length > limit) {
      if (tbody.lastElementChild.dataset.eventId) pushedOut = true;
      tbody.lastElementChild.remove();
    }
    if (pushedOut) repointOlder(results, tbody);
  }

  /** "Older" continues below the oldest server row still shown (samples carry no id). */
  function repointOlder(results, tbody) {
    const link = byId("events-older");
    if (!link) return;
    const kept = tbody.querySelectorAll("tr[data-event-id]");
    let before = "";
    if (kept.length) before = kept[kept.length - 1].dataset.eventId;
    else if (results.dataset.newestId) before = String(Number(results.dataset.newestId) + 1);
    if (!before) return;
    const url = new URL(link.getAttribute("href"), window.location.href);
    url.searchParams.set("before", before);
    const target = url.pathname + url.search;
    link.hidden = false;
    if (link.getAttribute("href") === target) return;
    link.setAttribute("href", target);
    link.setAttribute("hx-get", target);
    if (window.htmx) window.htmx.process(link);
  }

  // --- The widget's life: appears, filters, reconnects ---------------------------------

  function readConfig() {
    const script = byId("events-config");
    if (!script) return;
    try {
      config = Object.assign({ gateways: {}, colours: {} }, JSON.parse(script.textContent));
      seconds = config.seconds || seconds;
    } catch (error) {
      // keep the previous configuration
    }
  }

  function adopt() {
    const found = byId("events-widget");
    if (found && found !== widget) {
      widget = found;
      chartWidth = 0;
      readConfig();
      const svg = byId("events-chart-svg");
      if (resizes && svg) {
        resizes.disconnect();
        resizes.observe(svg);
      }
      seed();
    } else if (!found) {
      widget = null;
    }
    queueRedraw();
  }

  document.addEventListener("htmx:afterSettle", adopt);
  document.body.addEventListener("liveResync", seed); // the table reloads itself (hx-trigger)
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) queueRedraw();
  });
  // The chart moves on each second even when no event arrives.
  setInterval(() => {
    if (widget) queueRedraw();
  }, 1000);

  // Empty filters mean "any": leave them out, so pushed URLs stay readable.
  document.addEventListener("htmx:configRequest", (event) => {
    const form = event.detail.elt;
    if (event.detail.verb !== "get" || !form || form.id !== "events-filter") return;
    const data = event.detail.formData;
    Array.from(new Set(data.keys())).forEach((key) => {
      if (data.getAll(key).every((value) => value === "")) data.delete(key);
    });
  });

  // Filter chips: clear the field in the form and let the form fetch the results.
  document.addEventListener("click", (event) => {
    const chip = event.target.closest("[data-events-clear]");
    const form = byId("events-filter");
    if (!chip || !form) return;
    event.preventDefault();
    const field = chip.dataset.eventsClear;
    if (field === "*") {
      form.querySelectorAll("input[type=search], select").forEach((element) => {
        element.value = "";
      });
    } else if (form.elements[field]) {
      form.elements[field].value = "";
    }
    form.requestSubmit();
  });

  adopt(); // the standalone page has the widget from the start
})();
