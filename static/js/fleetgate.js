/* Fleetgate's small front-end helpers: action menus, dialogs, row selection, messages.
 * Every listener is delegated from the document, so content that htmx swaps in later
 * works without re-initialisation. No build step; plain ES2020.
 */
(function () {
  "use strict";

  // --- Status messages: one polite live region, created early so it is announced.
  let region = null;
  function toast(message, kind) {
    if (!region) return;
    const item = document.createElement("div");
    item.className = "toast" + (kind ? " toast-" + kind : "");
    item.textContent = message;
    region.append(item);
    setTimeout(() => item.remove(), kind === "error" ? 9000 : 5000);
  }
  document.addEventListener("DOMContentLoaded", () => {
    region = document.createElement("div");
    region.className = "toasts";
    region.id = "toasts";
    region.setAttribute("role", "status");
    region.setAttribute("aria-live", "polite");
    document.body.append(region);
  });

  // --- Refused actions (portal/_action.html) stay focusable and say why when used.
  document.addEventListener(
    "click",
    (event) => {
      const refused = event.target.closest('[aria-disabled="true"][data-refusal]');
      if (!refused) return;
      event.preventDefault();
      event.stopPropagation();
      toast(refused.dataset.refusal, "error");
    },
    true,
  );

  // --- The header's menu on a phone: the Menu button shows and hides the links.
  document.addEventListener("click", (event) => {
    const toggle = event.target.closest("#topbar-toggle");
    if (!toggle) return;
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    document.getElementById("topbar-menu").classList.toggle("is-open", open);
  });
  document.addEventListener("keydown", (event) => {
    const toggle = document.getElementById("topbar-toggle");
    if (event.key !== "Escape" || !toggle || toggle.getAttribute("aria-expanded") !== "true") return;
    if (!document.getElementById("topbar-menu").contains(document.activeElement)) return;
    toggle.setAttribute("aria-expanded", "false");
    document.getElementById("topbar-menu").classList.remove("is-open");
    toggle.focus();
  });

  // --- Action menus: native popovers (light dismiss and Escape for free), placed
  // under their button, with arrow-key movement between items.
  function invokerOf(menu) {
    return document.querySelector('[popovertarget="' + menu.id + '"]');
  }
  function menuItems(menu) {
    return Array.from(menu.querySelectorAll('[role="menuitem"]')).filter((el) => !el.disabled);
  }
  function place(menu) {
    const invoker = invokerOf(menu);
    if (!invoker) return;
    const box = invoker.getBoundingClientRect();
    const width = document.documentElement.clientWidth;
    const height = document.documentElement.clientHeight;
    menu.style.right = Math.max(8, width - box.right) + "px";
    menu.style.left = "auto";
    const own = menu.getBoundingClientRect();
    const below = box.bottom + 4;
    const top = below + own.height > height - 8 && box.top - own.height - 4 > 8 ? box.top - own.height - 4 : below;
    menu.style.top = top + "px";
  }
  document.addEventListener(
    "toggle",
    (event) => {
      const menu = event.target;
      if (!(menu instanceof HTMLElement) || !menu.matches(".menu[popover]")) return;
      const invoker = invokerOf(menu);
      const open = event.newState === "open";
      if (invoker) invoker.setAttribute("aria-expanded", String(open));
      if (open) {
        place(menu);
        const first = menuItems(menu)[0];
        if (first) first.focus();
      }
    },
    true, // toggle does not bubble
  );
  document.addEventListener(
    "beforetoggle",
    (event) => {
      const menu = event.target;
      if (menu instanceof HTMLElement && menu.matches(".menu[popover]") && event.newState === "open") {
        const invoker = invokerOf(menu);
        if (invoker) {
          const box = invoker.getBoundingClientRect();
          menu.style.top = box.bottom + 4 + "px"; // first guess, refined once it has a size
          menu.style.right = Math.max(8, document.documentElement.clientWidth - box.right) + "px";
          menu.style.left = "auto";
        }
      }
    },
    true,
  );
  window.addEventListener("resize", () => {
    document.querySelectorAll(".menu:popover-open").forEach((menu) => menu.hidePopover());
  });
  document.addEventListener("keydown", (event) => {
    const menu = event.target.closest && event.target.closest(".menu[popover]");
    if (!menu) return;
    const items = menuItems(menu);
    const index = items.indexOf(document.activeElement);
    let next = null;
    if (event.key === "ArrowDown") next = items[(index + 1) % items.length];
    else if (event.key === "ArrowUp") next = items[(index - 1 + items.length) % items.length];
    else if (event.key === "Home") next = items[0];
    else if (event.key === "End") next = items[items.length - 1];
    else if (event.key === "Tab") {
      menu.hidePopover();
      return;
    } else return;
    event.preventDefault();
    if (next) next.focus();
  });

  // --- Dialogs: a fragment swapped into #modal-root opens as a modal dialog.
  let returnFocusId = null;
  function openerOf(elt) {
    const menu = elt.closest(".menu[popover]");
    return menu ? invokerOf(menu) : elt;
  }
  document.addEventListener("htmx:beforeRequest", (event) => {
    const target = event.detail.target;
    if (target && target.id === "modal-root") {
      const opener = openerOf(event.detail.elt);
      returnFocusId = opener && opener.id ? opener.id : null;
    }
  });
  function focusFirstField(container) {
    const field =
      container.querySelector('[aria-invalid="true"]') ||
      container.querySelector(".has-errors input, .has-errors select, .has-errors textarea") ||
      container.querySelector(".dialog-form input:not([type=hidden]), .dialog-form select, .dialog-form textarea") ||
      container.querySelector('.dialog-form [type="submit"]');
    if (field) field.focus();
  }
  document.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail.target;
    if (target && target.id === "modal-root") {
      document.querySelectorAll(".menu:popover-open").forEach((menu) => menu.hidePopover());
      const dialog = target.querySelector("dialog");
      if (dialog && !dialog.open) {
        dialog.showModal();
        focusFirstField(dialog);
      }
    }
  });
  document.addEventListener("htmx:afterSettle", () => {
    // A form re-rendered with field errors replaced the focused button: refocus.
    const dialog = document.querySelector("#modal-root dialog[open]");
    if (dialog && !dialog.contains(document.activeElement)) focusFirstField(dialog);
  });
  document.addEventListener("click", (event) => {
    const closer = event.target.closest("[data-dialog-close]");
    if (closer) {
      const dialog = closer.closest("dialog");
      if (dialog) dialog.close();
    }
  });
  document.addEventListener(
    "close",
    (event) => {
      const dialog = event.target;
      if (!(dialog instanceof HTMLDialogElement) || !dialog.closest("#modal-root")) return;
      setTimeout(() => dialog.remove(), 0); // after htmx has finished with its form
      const opener = returnFocusId && document.getElementById(returnFocusId);
      if (opener) opener.focus();
    },
    true, // close does not bubble
  );
  document.addEventListener("groupsChanged", (event) => {
    document.querySelectorAll("#modal-root dialog[open]").forEach((dialog) => dialog.close());
    const detail = event.detail || {};
    if (detail.message) toast(detail.message, "success");
  });
  // An error page's own sentence (templates/error.html) says best what happened.
  function errorSentence(xhr) {
    try {
      const page = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
      const sentence = page.querySelector("[data-error-sentence]");
      return sentence ? sentence.textContent.trim() : "";
    } catch (error) {
      return "";
    }
  }
  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    const status = xhr ? xhr.status : 0;
    const messages = {
      403: "Your role groups do not allow this.",
      404: "Not found: it may have been deleted meanwhile.",
    };
    const said = xhr ? errorSentence(xhr) : "";
    toast(said || messages[status] || "Something went wrong (" + status + "). Try again.", "error");
  });
  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-history-back]")) window.history.back();
  });
  document.addEventListener("htmx:sendError", () => {
    toast("The portal cannot be reached. Check the connection and try again.", "error");
  });

  // --- Row selection in the Devices widget.
  function updateSelection(results) {
    if (!results) return;
    const boxes = Array.from(results.querySelectorAll(".device-check"));
    const checked = boxes.filter((box) => box.checked);
    const all = results.querySelector("[data-select-all]");
    if (all) {
      all.checked = boxes.length > 0 && checked.length === boxes.length;
      all.indeterminate = checked.length > 0 && checked.length < boxes.length;
    }
    boxes.forEach((box) => box.closest("tr").classList.toggle("is-selected", box.checked));
    const label = results.querySelector("[data-selection-count]");
    if (label) label.textContent = checked.length + " selected";
    results.querySelectorAll("[data-needs-selection]").forEach((button) => {
      button.disabled = checked.length === 0;
    });
  }
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (input.matches("[data-select-all]")) {
      const results = input.closest(".devices-results");
      results.querySelectorAll(".device-check").forEach((box) => {
        box.checked = input.checked;
      });
      updateSelection(results);
    } else if (input.matches(".device-check")) {
      updateSelection(input.closest(".devices-results"));
    } else if (input.matches("[data-autosubmit]") && input.form) {
      input.form.requestSubmit();
    }
  });

  // Empty filters mean "any": leave them out, so pushed URLs stay readable.
  document.addEventListener("htmx:configRequest", (event) => {
    const form = event.detail.elt;
    if (event.detail.verb !== "get" || !form || form.id !== "devices-filter") return;
    const data = event.detail.formData;
    Array.from(new Set(data.keys())).forEach((key) => {
      if (data.getAll(key).every((value) => value === "")) data.delete(key);
    });
  });

  // --- Filter chips and links from other widgets into the Devices widget.
  document.addEventListener("click", (event) => {
    const chip = event.target.closest("[data-clear-filter]");
    const form = document.getElementById("devices-filter");
    if (chip && form) {
      event.preventDefault();
      const field = chip.dataset.clearFilter;
      if (field === "*") {
        form.querySelectorAll("input[type=search], select").forEach((el) => {
          el.value = "";
        });
      } else if (form.elements[field]) {
        form.elements[field].value = "";
      }
      form.requestSubmit();
      return;
    }
    const link = event.target.closest("[data-devices-link]");
    const widget = document.getElementById("devices-widget");
    if (link && widget && event.button === 0 && !(event.ctrlKey || event.metaKey || event.shiftKey)) {
      event.preventDefault();
      const menu = link.closest(".menu:popover-open");
      if (menu) menu.hidePopover();
      const collapsed = widget.closest(".widget.is-collapsed");
      if (collapsed) collapsed.querySelector("[data-widget-toggle]").click();
      htmx.ajax("GET", link.href, { target: "#devices-widget", swap: "outerHTML" }).then(() => {
        const card = document.getElementById("widget-devices") || document.getElementById("devices-widget");
        if (card) card.scrollIntoView({ block: "start", behavior: "smooth" });
        const search = document.getElementById("devices-q");
        if (search) search.focus({ preventScroll: true });
      });
    }
  });

  window.Fleetgate = Object.assign(window.Fleetgate || {}, { toast });
})();

/* Behaviour that used to sit in templates as inline handlers or evaluated htmx filters:
 * the Content-Security-Policy allows neither (no inline script, no eval).
 */
(function () {
  "use strict";

  // <select data-autosubmit>: choosing submits its form (organization switch, gateway).
  document.addEventListener("change", (event) => {
    const field = event.target;
    if (field.matches && field.matches("[data-autosubmit]") && field.form) field.form.submit();
  });

  // Filter forms (hx-trigger "submit, filterChange, searchInput delay:300ms" and
  // data-search-field="q"): typing in the search field is "searchInput", changing any
  // other field is "filterChange".
  document.addEventListener("input", (event) => {
    const form = event.target.form;
    if (form && window.htmx && form.dataset.searchField === event.target.name) {
      window.htmx.trigger(form, "searchInput");
    }
  });
  document.addEventListener("change", (event) => {
    const form = event.target.form;
    const search = form && form.dataset.searchField;
    if (search && window.htmx && search !== event.target.name) window.htmx.trigger(form, "filterChange");
  });

  // Copy buttons: <button data-copy="ID"> copies the text of element #ID.
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("[data-copy]");
    const source = button && document.getElementById(button.dataset.copy);
    if (!source) return;
    const label = button.textContent;
    const copied = () => {
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 2000);
    };
    const selectIt = () => {
      // Plain http (no Clipboard API): select the text, try the old copy command.
      const range = document.createRange();
      range.selectNodeContents(source);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      if (document.execCommand && document.execCommand("copy")) copied();
      else button.textContent = "Selected: press Ctrl+C";
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(source.textContent).then(copied, selectIt);
    } else {
      selectIt();
    }
  });
})();
