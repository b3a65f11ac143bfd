/* Billing portal behaviour: navigation collapse, menus, busy buttons and the side pane.
 *
 * Everything here is an enhancement: every link and form works without it.
 * Loaded with `defer` after htmx, from our own origin (the CSP allows no inline script).
 */
(function () {
  "use strict";

  var NAV_KEY = "portal.navCollapsed";
  var FOCUSABLE =
    'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), ' +
    'textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

  // ------------------------------------------------------------------ left navigation
  function setNavCollapsed(collapsed) {
    document.body.classList.toggle("nav-collapsed", collapsed);
    var toggle = document.getElementById("nav-toggle");
    if (toggle) toggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
  }

  function initNav() {
    var toggle = document.getElementById("nav-toggle");
    if (!toggle) return;
    try {
      setNavCollapsed(window.localStorage.getItem(NAV_KEY) === "1");
    } catch (e) {
      /* storage may be blocked; the nav simply starts expanded */
    }
    toggle.addEventListener("click", function () {
      var collapsed = !document.body.classList.contains("nav-collapsed");
      setNavCollapsed(collapsed);
      try {
        window.localStorage.setItem(NAV_KEY, collapsed ? "1" : "0");
      } catch (e) {
        /* ignore */
      }
    });
  }

  // ------------------------------------------------------------------ menus (<details class="menu">)
  function closeMenus(except) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (menu !== except) menu.removeAttribute("open");
    });
  }

  // A table row's "…" menu opens under its button, over the table: placed with position: fixed (CSSOM, which
  // the CSP allows), so a table can scroll sideways without clipping its menus. It closes when the page
  // scrolls or resizes, as the admin center's row menus do; it opens upwards when there is no room below.
  function placeRowMenu(menu) {
    var list = menu.querySelector(".menu__list");
    var summary = menu.querySelector("summary");
    if (!list || !summary) return;
    var box = summary.getBoundingClientRect();
    list.classList.add("is-placed");
    list.style.left = "auto";
    list.style.right = Math.max(8, document.documentElement.clientWidth - box.right) + "px";
    var below = window.innerHeight - box.bottom;
    if (below < list.offsetHeight + 12 && box.top > list.offsetHeight + 12) {
      list.style.top = Math.round(box.top - list.offsetHeight - 4) + "px";
    } else {
      list.style.top = Math.round(box.bottom + 4) + "px";
    }
  }

  function initMenus() {
    document.addEventListener(
      "toggle",
      function (event) {
        var menu = event.target;
        if (menu.matches && menu.matches("details.row-menu") && menu.open) placeRowMenu(menu);
      },
      true
    );
    var closeRowMenus = function () {
      document.querySelectorAll("details.row-menu[open]").forEach(function (menu) {
        menu.removeAttribute("open");
      });
    };
    window.addEventListener("resize", closeRowMenus);
    document.addEventListener(
      "scroll",
      function (event) {
        // Scrolling inside the open menu itself is not leaving it.
        if (event.target.closest && event.target.closest(".row-menu")) return;
        closeRowMenus();
      },
      true
    );
    document.addEventListener("click", function (event) {
      var inside = event.target.closest && event.target.closest("details.menu");
      closeMenus(inside);
    });
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape") return;
      var open = document.querySelector("details.menu[open]");
      if (open) {
        open.removeAttribute("open");
        var summary = open.querySelector("summary");
        if (summary) summary.focus();
      }
    });
  }

  // ------------------------------------------------------------------ busy buttons on plain forms
  // htmx forms get hx-disabled-elt; a normal POST form gets the same spinner and cannot be sent twice.
  function initForms() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!(form instanceof HTMLFormElement) || form.hasAttribute("hx-post") || form.hasAttribute("hx-get")) {
        return;
      }
      if (form.dataset.submitting === "1") {
        event.preventDefault();
        return;
      }
      if ((form.getAttribute("method") || "get").toLowerCase() !== "post") return;
      form.dataset.submitting = "1";
      var button = event.submitter || form.querySelector('button[type="submit"], button:not([type])');
      if (button) {
        button.classList.add("is-busy");
        // Disable after the submit has captured the button's name/value.
        window.setTimeout(function () {
          button.disabled = true;
        }, 0);
      }
    });
    // A page restored from the back/forward cache must not keep a disabled button.
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) return;
      document.querySelectorAll("form[data-submitting]").forEach(function (form) {
        delete form.dataset.submitting;
        form.querySelectorAll(".is-busy").forEach(function (b) {
          b.classList.remove("is-busy");
          b.disabled = false;
        });
      });
    });
  }

  // ------------------------------------------------------------------ message bars
  function initMessageBars() {
    document.addEventListener("click", function (event) {
      var dismiss = event.target.closest && event.target.closest("[data-dismiss-msgbar]");
      if (!dismiss) return;
      var bar = dismiss.closest(".msgbar");
      if (bar) bar.remove();
    });
  }

  // ------------------------------------------------------------------ side pane
  // A pane is fetched with hx-get="<pane url>" hx-target="#side-pane" (the url also works as a full page).
  // After the swap the host opens, focus moves to the pane; Escape, Cancel, the close button or the backdrop
  // close it and focus goes back to the element that opened it. A response header
  // `HX-Trigger: closePane` closes it from the server (e.g. after a successful payment).
  var paneOpener = null;

  function paneHost() {
    return document.getElementById("side-pane-host");
  }

  function paneIsOpen() {
    var host = paneHost();
    return host && !host.hidden;
  }

  function openPane() {
    var host = paneHost();
    if (!host) return;
    host.classList.remove("is-closing");
    host.classList.add("is-entering");
    window.setTimeout(function () {
      host.classList.remove("is-entering");
    }, 350);
    host.hidden = false;
    document.documentElement.classList.add("pane-open");
    var main = document.getElementById("shell");
    if (main) main.setAttribute("inert", "");
    var pane = host.querySelector(".pane");
    if (!pane) return;
    var target = pane.querySelector("[autofocus]") || pane.querySelector(".pane__body " + FOCUSABLE) ||
      pane.querySelector(FOCUSABLE);
    (target || pane).focus();
  }

  function closePane() {
    var host = paneHost();
    if (!host || host.hidden) return;
    var finish = function () {
      host.hidden = true;
      host.classList.remove("is-closing");
      var slot = document.getElementById("side-pane");
      if (slot) slot.innerHTML = "";
      document.documentElement.classList.remove("pane-open");
      var main = document.getElementById("shell");
      if (main) main.removeAttribute("inert");
      if (paneOpener && document.contains(paneOpener)) paneOpener.focus();
      paneOpener = null;
    };
    var reduce = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    if (reduce) {
      finish();
      return;
    }
    host.classList.add("is-closing");
    window.setTimeout(finish, 150);
  }

  function trapFocus(event) {
    if (event.key !== "Tab" || !paneIsOpen()) return;
    var pane = paneHost().querySelector(".pane");
    if (!pane) return;
    var items = Array.prototype.filter.call(pane.querySelectorAll(FOCUSABLE), function (el) {
      return el.offsetParent !== null;
    });
    if (!items.length) return;
    var first = items[0];
    var last = items[items.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  }

  function initPane() {
    document.body.addEventListener("htmx:beforeRequest", function (event) {
      var target = event.detail && event.detail.target;
      if (target && target.id === "side-pane" && !paneIsOpen()) {
        paneOpener = event.detail.elt || document.activeElement;
      }
    });
    document.body.addEventListener("htmx:afterSwap", function (event) {
      var target = event.detail && event.detail.target;
      if (!target || target.id !== "side-pane") return;
      if (target.querySelector(".pane")) {
        if (!paneIsOpen()) openPane();
        else {
          // A re-render inside an open pane (e.g. a form with errors): focus the first invalid field.
          var invalid = target.querySelector('[aria-invalid="true"]');
          if (invalid) invalid.focus();
        }
      } else {
        closePane();
      }
    });
    document.addEventListener("click", function (event) {
      var closer = event.target.closest && event.target.closest("[data-pane-close]");
      if (!closer || !paneIsOpen()) return;
      event.preventDefault();
      closePane();
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && paneIsOpen() && !document.querySelector("details.menu[open]")) {
        event.preventDefault();
        closePane();
      }
      trapFocus(event);
    });
    document.body.addEventListener("closePane", closePane);
  }

  // ------------------------------------------------------------------ boot
  function boot() {
    document.documentElement.classList.remove("no-js");
    initNav();
    initMenus();
    initForms();
    initMessageBars();
    initPane();
    window.portal = { openPane: openPane, closePane: closePane };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
