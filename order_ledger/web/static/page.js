// Order Ledger page: progressive enhancement only (every page works without it).
// - the "Confirm shipment" / "Cancel order" buttons of a row open its forms;
// - Manage Orders follows the live stream (/live, Server-Sent Events) and swaps in
//   the table when the ledger records new events, without a reload.
"use strict";
(function () {
  function toggles(root) {
    root.querySelectorAll("button.toggle").forEach(function (b) {
      if (b.dataset.bound) return;
      b.dataset.bound = "1";
      b.addEventListener("click", function () {
        var row = document.getElementById(b.getAttribute("aria-controls"));
        if (!row) return;
        var open = b.getAttribute("aria-expanded") === "true";
        var tr = b.closest("tr");
        tr.querySelectorAll("button.toggle").forEach(function (o) {
          o.setAttribute("aria-expanded", "false");
        });
        if (open) {
          row.classList.add("collapsed");
          return;
        }
        row.classList.remove("collapsed");
        b.setAttribute("aria-expanded", "true");
        var target = document.getElementById(b.dataset.target);
        row.querySelectorAll(".forms > div").forEach(function (d) {
          d.hidden = d !== target;
        });
        var first = target && target.querySelector("input:not([type=hidden]), select");
        if (first) first.focus();
      });
    });
  }

  function busy() {
    // never replace the table under someone filling in a form
    var open = document.querySelector(".actions-row:not(.collapsed)");
    var el = document.activeElement;
    return !!open || (el && el.closest && el.closest("#orders form"));
  }

  function live() {
    var holder = document.getElementById("orders");
    if (!document.body.dataset.live || !holder || !window.EventSource) return;
    var status = document.getElementById("live-status");
    var head = parseInt(holder.dataset.head || "0", 10);
    var pending = false;
    var timer = null;
    function refresh() {
      timer = null;
      if (busy()) { pending = true; return; }
      pending = false;
      var url = "/orders/fragment" + window.location.search;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (text === null) return;
          var box = document.createElement("div");
          box.innerHTML = text;
          var fresh = box.querySelector("#orders");
          if (!fresh) return;
          var now = parseInt(fresh.dataset.head || "0", 10);
          holder.innerHTML = fresh.innerHTML;
          holder.dataset.head = String(now);
          toggles(holder);
          if (status) status.textContent = "Updated: the ledger is at event " + now + ".";
        });
    }
    var es = new EventSource("/live?after=" + head);
    es.addEventListener("ledger", function (e) {
      var at = parseInt(e.data, 10);
      if (at <= parseInt(holder.dataset.head || "0", 10)) return;
      if (!timer) timer = setTimeout(refresh, 150);
    });
    document.addEventListener("focusout", function () {
      if (pending && !timer) timer = setTimeout(refresh, 500);
    });
  }

  function ready() {
    toggles(document);
    document.querySelectorAll(".actions-row.collapsed .forms > div").forEach(function (d) {
      d.hidden = true;
    });
    live();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
