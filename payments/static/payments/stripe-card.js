// Card collection with Stripe Elements (gateways whose card_collection is ELEMENTS): the "Add a new card"
// fields are Stripe's Payment Element in Stripe's iframe, so the card number never reaches our server.
// Cards only: allowedPaymentMethodTypes (paymentMethodTypes is refused by Stripe.js since endive), the
// same list the server gives its SetupIntents (allowed_payment_method_types). On submit with "new"
// chosen, the card is confirmed on a SetupIntent first; the form then goes on with only its id.
// If the bank's check takes the browser away, setup_intent.succeeded still saves the card (webhook).
(function () {
  "use strict";
  var CARD_ONLY = ["card"];
  var mounted = null;

  function csrfToken() {
    var headers = document.body.getAttribute("hx-headers");
    try { return JSON.parse(headers)["X-CSRFToken"]; } catch (e) { return ""; }
  }

  function mount() {
    var el = document.getElementById("stripe-card-element");
    if (!el || el.dataset.mounted || typeof window.Stripe !== "function") return;
    var stripe = window.Stripe(el.dataset.publishableKey);
    var options = { mode: "setup", allowedPaymentMethodTypes: CARD_ONLY };
    if (el.dataset.currency) options.currency = el.dataset.currency;
    var elements = stripe.elements(options);
    var payment = elements.create("payment");
    payment.mount(el);
    el.dataset.mounted = "1";
    mounted = { stripe: stripe, elements: elements, el: el };
  }

  function showError(text) {
    var old = mounted.el.parentNode.querySelector(".stripe-card__error");
    if (old) old.remove();
    var msg = document.createElement("p");
    msg.className = "field__error stripe-card__error";
    msg.setAttribute("role", "alert");
    msg.textContent = text;
    mounted.el.insertAdjacentElement("afterend", msg);
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
    mounted.elements.submit()
      .then(function (checked) {
        if (checked.error) throw new Error(checked.error.message);
        return fetch(mounted.el.dataset.setupUrl, { method: "POST", headers: { "X-CSRFToken": csrfToken() } });
      })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data.client_secret) throw new Error(data.error || "setup failed");
        return mounted.stripe.confirmSetup({
          elements: mounted.elements,
          clientSecret: data.client_secret,
          redirect: "if_required",
          confirmParams: {
            return_url: window.location.href,
            payment_method_data: { billing_details: { name: nameInput ? nameInput.value : "" } }
          }
        });
      })
      .then(function (result) {
        if (result.error) throw new Error(result.error.message);
        hidden.value = result.setupIntent.id;
        form.requestSubmit();
      })
      .catch(function (err) { showError(err.message); });
  }, true);
})();
