/* Relative times: <time datetime="…" data-relative> reads "12 s ago", the exact time
 * (in the browser's time zone) on hover, and stays fresh: every element is redrawn
 * every 10 s and whenever htmx swaps content in. The server renders the same words
 * first (portal/templatetags/fleetgate.py), so a page without scripts still reads well.
 */
(function () {
  "use strict";

  const MINUTE = 60;
  const HOUR = 60 * MINUTE;
  const DAY = 24 * HOUR;

  /** "just now", "12 s ago", "5 min ago", "3 h ago", "2 days ago", or the date. */
  function relative(date, now) {
    const seconds = Math.round(((now || Date.now()) - date.getTime()) / 1000);
    const future = seconds < 0;
    const s = Math.abs(seconds);
    let words;
    if (s < 5) return "just now";
    if (s < MINUTE) words = s + " s";
    else if (s < HOUR) words = Math.floor(s / MINUTE) + " min";
    else if (s < DAY) words = Math.floor(s / HOUR) + " h";
    else if (s < 30 * DAY) {
      const days = Math.floor(s / DAY);
      words = days + (days === 1 ? " day" : " days");
    } else return date.toISOString().slice(0, 10);
    return future ? "in " + words : words + " ago";
  }

  function exact(date) {
    return date.toLocaleString(undefined, {
      year: "numeric",
      month: "short",
      day: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      timeZoneName: "short",
    });
  }

  function refresh(root) {
    const now = Date.now();
    (root || document).querySelectorAll("time[data-relative]").forEach((element) => {
      const date = new Date(element.dateTime);
      if (Number.isNaN(date.getTime())) return;
      const text = relative(date, now);
      if (element.textContent !== text) element.textContent = text;
      if (!element.dataset.exact) {
        element.dataset.exact = "1";
        element.title = exact(date);
      }
    });
  }

  /** A new <time> element for a moment, as the server would render it. */
  function element(value) {
    const date = value instanceof Date ? value : new Date(value);
    const time = document.createElement("time");
    if (Number.isNaN(date.getTime())) return time;
    time.dateTime = date.toISOString();
    time.dataset.relative = "";
    time.dataset.exact = "1";
    time.title = exact(date);
    time.textContent = relative(date);
    return time;
  }

  document.addEventListener("DOMContentLoaded", () => refresh());
  document.addEventListener("htmx:afterSettle", (event) => refresh(event.target));
  setInterval(() => {
    if (!document.hidden) refresh();
  }, 10000);

  window.Fleetgate = Object.assign(window.Fleetgate || {}, {
    time: { relative: relative, element: element, refresh: refresh },
  });
})();
