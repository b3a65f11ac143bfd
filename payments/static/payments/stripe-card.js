// Stripe mode only: the "Add a new card" fields are Stripe Elements in Stripe's iframe, so the card
// number never reaches our server. On submit with "new" chosen, the card is confirmed on a
// SetupIntent first; the form then goes on with only the SetupIntent id.
(function () {
  "use strict";
  var mounted = null;

  function csrfToken() {
    var headers = document.body.getAttribute("hx-headers");
    try { return JSON.parse(headers)["X-CSRFToken"]; } catch (e) { return ""; }
  }

  function mount() {
    var el = document.getElementById("stripe-card-element");
    if (!el || el.dataset.mounted || typeof window.Stripe !== "function") return;
    var stripe = window.Stripe(el.dataset.publishableKey);
    var card = stripe.elements().create("card", { hidePostalCode: true });
    card.mount(el);
    el.dataset.mounted = "1";
    mounted = { stripe: stripe, card: card, el: el };
  }

  document.addEventListener("DOMContentLoaded", mount);
  document.addEventListener("htmx:afterSettle", mount);

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var choice = form.querySelector("input[name=method]:checked");
    var hidden = form.querySelector("input[name=setup_intent]");
    if (!mounted || !choice || choice.value !== "new" || !hidden || hidden.value) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    var nameInput = form.querySelector("input[name=holder_name]");
    fetch(mounted.el.dataset.setupUrl, { method: "POST", headers: { "X-CSRFToken": csrfToken() } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data.client_secret) throw new Error(data.error || "setup failed");
        return mounted.stripe.confirmCardSetup(data.client_secret, {
          payment_method: { card: mounted.card, billing_details: { name: nameInput ? nameInput.value : "" } }
        });
      })
      .then(function (result) {
        if (result.error) throw new Error(result.error.message);
        hidden.value = result.setupIntent.id;
        form.requestSubmit();
      })
      .catch(function (err) {
        var msg = document.createElement("p");
        msg.className = "field-error";
        msg.setAttribute("role", "alert");
        msg.textContent = err.message;
        mounted.el.insertAdjacentElement("afterend", msg);
      });
  }, true);
})();
