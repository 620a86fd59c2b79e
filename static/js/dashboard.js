/* The dashboard's layout: collapse and rearrange widget cards, remembered per user.
 * Every change POSTs {"order": [...], "collapsed": [...]} to #dashboard's data-layout-url.
 * Moving is by buttons (keyboard and screen readers alike), never by dragging alone.
 */
(function () {
  "use strict";

  const dashboard = document.getElementById("dashboard");
  if (!dashboard) return;

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }

  function cards() {
    return Array.from(dashboard.children).filter((el) => el.matches(".widget"));
  }

  function say(message, kind) {
    if (window.Fleetgate) window.Fleetgate.toast(message, kind);
  }

  function save() {
    const layout = {
      order: cards().map((card) => card.dataset.widget),
      collapsed: cards()
        .filter((card) => card.classList.contains("is-collapsed"))
        .map((card) => card.dataset.widget),
    };
    return fetch(dashboard.dataset.layoutUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(layout),
    })
      .then((response) => {
        if (!response.ok) throw new Error(String(response.status));
        dashboard.dispatchEvent(new CustomEvent("layoutSaved", { detail: layout }));
      })
      .catch(() => say("The dashboard layout could not be saved.", "error"));
  }

  // The server's rule (portal.widgets.arrange), again after a move: a half-width card
  // with no half-width neighbour to share its row takes the whole row.
  function pack() {
    const all = cards();
    for (let i = 0; i < all.length; i += 1) {
      const half = all[i].dataset.size === "half";
      const partner = half && i + 1 < all.length && all[i + 1].dataset.size === "half";
      all[i].classList.toggle("is-stretched", half && !partner);
      if (partner) {
        all[i + 1].classList.remove("is-stretched");
        i += 1;
      }
    }
  }

  function setCollapsed(card, collapsed) {
    const body = card.querySelector(".card-body");
    const toggle = card.querySelector("[data-widget-toggle]");
    card.classList.toggle("is-collapsed", collapsed);
    body.hidden = collapsed;
    toggle.setAttribute("aria-expanded", String(!collapsed));
    // A card that started collapsed loads its body the first time it opens.
    if (!collapsed && window.htmx) window.htmx.trigger(body, "widget-expand");
  }

  dashboard.addEventListener("click", (event) => {
    const toggle = event.target.closest("[data-widget-toggle]");
    if (toggle) {
      const card = toggle.closest(".widget");
      setCollapsed(card, !card.classList.contains("is-collapsed"));
      save();
      return;
    }
    const move = event.target.closest("[data-widget-move]");
    if (move) {
      const card = move.closest(".widget");
      const earlier = Number(move.dataset.widgetMove) < 0;
      const neighbour = earlier ? card.previousElementSibling : card.nextElementSibling;
      if (!neighbour || !neighbour.matches(".widget")) return;
      dashboard.insertBefore(earlier ? card : neighbour, earlier ? neighbour : card);
      pack();
      move.focus(); // moving the card took the focus with it
      const title = card.querySelector(".card-title");
      const position = cards().indexOf(card) + 1;
      say((title ? title.firstChild.textContent.trim() : "Widget") + " moved to position " + position + ".");
      save();
    }
  });
})();
