"""The Stripe adapter: the only module that imports the Stripe SDK.

PaymentIntents (off_session for jobs, next_action for the customer in the pane), SetupIntents with
Stripe Elements to add cards (no card number touches our server), an idempotency key on every
create, and every SDK error turned into a ChargeResult here, at this one seam.

Our PaymentMethod.gateway_token for Stripe is "cus_…/pm_…" (customer and payment method), or a
bare "pm_…" for a method not attached to a customer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe
from django.conf import settings
from django.utils.translation import gettext as _

from .base import CardResult, ChargeOutcome, ChargeResult, classify_decline

logger = logging.getLogger(__name__)

stripe.enable_telemetry = False


class WebhookInvalid(Exception):
    """The payload's signature or timestamp did not verify."""


def _client() -> stripe.StripeClient:
    kwargs: dict[str, Any] = {"max_network_retries": 0}
    if settings.STRIPE_API_BASE:
        kwargs["base_addresses"] = {"api": settings.STRIPE_API_BASE}
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, **kwargs)


def _split_token(token: str) -> tuple[str, str]:
    customer, _sep, method = token.rpartition("/")
    return customer, method


def _absolute(url: str) -> str:
    if not url or url.startswith(("http://", "https://")):
        return url
    return settings.SITE_URL.rstrip("/") + url


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):  # StripeObject is a dict too
        return obj.get(key, default)
    return getattr(obj, key, default)


def intent_result(intent: Any) -> ChargeResult:
    """Map a PaymentIntent (SDK object or webhook dict) to our outcome."""
    status = _get(intent, "status")
    reference = _get(intent, "id", "")
    common = {
        "reference": reference,
        "amount_minor": _get(intent, "amount"),
        "currency": str(_get(intent, "currency", "")).upper(),
    }
    if status == "succeeded":
        return ChargeResult(outcome=ChargeOutcome.SUCCEEDED, **common)
    if status in ("requires_action", "requires_confirmation"):
        next_action = _get(intent, "next_action") or {}
        redirect = _get(next_action, "redirect_to_url") or {}
        return ChargeResult(
            outcome=ChargeOutcome.REQUIRES_ACTION, action_url=_get(redirect, "url", "") or "", **common
        )
    if status == "canceled":
        return ChargeResult(outcome=ChargeOutcome.CANCELED, **common)
    if status == "requires_payment_method":
        error = _get(intent, "last_payment_error") or {}
        code = _get(error, "decline_code") or _get(error, "code") or "generic_decline"
        if code == "payment_intent_authentication_failure":
            code = "authentication_failed"
        return ChargeResult(
            outcome=ChargeOutcome.DECLINED,
            decline_code=code,
            decline_category=classify_decline(code),
            message=_get(error, "message", "") or "",
            **common,
        )
    # processing, requires_capture (we never use manual capture) or anything new: find out later.
    return ChargeResult(outcome=ChargeOutcome.UNKNOWN, message=f"payment intent is {status}", **common)


def _error_result(exc: stripe.StripeError) -> ChargeResult:
    if isinstance(exc, stripe.CardError):
        error = exc.error
        code = (error and (error.decline_code or error.code)) or exc.code or "card_declined"
        intent = error.payment_intent if error else None
        return ChargeResult(
            outcome=ChargeOutcome.DECLINED,
            reference=_get(intent, "id", "") or "",
            decline_code=code,
            decline_category=classify_decline(code),
            message=exc.user_message or str(exc),
        )
    # Connection failures, time-outs, rate limits, 5xx, even a rejected request: nothing here proves
    # that no money moved, so the attempt is reconciled by looking it up, never charged again.
    return ChargeResult.unknown(f"{type(exc).__name__}: {exc}")


class StripeGateway:
    name = "stripe"
    # Stripe's search index lags a little: "not found" only counts once an attempt is some minutes old.
    lookup_is_immediate = False

    def __init__(self) -> None:
        self.client = _client()

    def charge(
        self,
        *,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        off_session: bool,
        return_url: str = "",
        description: str = "",
    ) -> ChargeResult:
        customer, method = _split_token(token)
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "payment_method": method,
            "payment_method_types": ["card"],
            "confirm": True,
            "description": description[:350],
            "metadata": {"idempotency_key": idempotency_key},
        }
        if customer:
            params["customer"] = customer
        if off_session:
            params["off_session"] = True
        elif return_url:
            params["return_url"] = _absolute(return_url)
        try:
            intent = self.client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            return _error_result(exc)
        return intent_result(intent)

    def confirm(self, *, reference: str) -> ChargeResult:
        try:
            return intent_result(self.client.v1.payment_intents.retrieve(reference))
        except stripe.StripeError as exc:
            return ChargeResult.unknown(f"{type(exc).__name__}: {exc}", reference=reference)

    def lookup(self, *, idempotency_key: str, reference: str = "") -> ChargeResult:
        if reference:
            return self.confirm(reference=reference)
        try:
            found = self.client.v1.payment_intents.search(
                params={"query": f"metadata['idempotency_key']:'{idempotency_key}'", "limit": 1}
            )
        except stripe.StripeError as exc:
            return ChargeResult.unknown(f"{type(exc).__name__}: {exc}")
        if not found.data:
            return ChargeResult(outcome=ChargeOutcome.NOT_FOUND)
        return intent_result(found.data[0])

    def cancel(self, *, reference: str) -> ChargeResult:
        try:
            return intent_result(self.client.v1.payment_intents.cancel(reference))
        except stripe.InvalidRequestError:
            # Not cancelable any more (e.g. it succeeded meanwhile): say what it is now.
            return self.confirm(reference=reference)
        except stripe.StripeError as exc:
            return ChargeResult.unknown(f"{type(exc).__name__}: {exc}", reference=reference)

    def add_card(
        self, *, number: str, exp_month: int, exp_year: int, cvc: str, holder_name: str
    ) -> CardResult:
        # Card numbers never reach our server in Stripe mode: cards come in through Elements.
        return CardResult(ok=False, errors={"__all__": _("Add the card with the secure card form.")})

    def customer_create(self, *, name: str, email: str, idempotency_key: str) -> str:
        customer = self.client.v1.customers.create(
            params={"name": name, "email": email}, options={"idempotency_key": idempotency_key}
        )
        return customer.id

    def setup_intent_create(self, *, customer: str = "", idempotency_key: str) -> tuple[str, str]:
        """A SetupIntent for Stripe Elements; returns (id, client_secret)."""
        params: dict[str, Any] = {"usage": "off_session", "payment_method_types": ["card"]}
        if customer:
            params["customer"] = customer
        intent = self.client.v1.setup_intents.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": idempotency_key},
        )
        return intent.id, intent.client_secret or ""

    def card_from_setup_intent(self, *, setup_intent_id: str) -> CardResult:
        try:
            intent = self.client.v1.setup_intents.retrieve(
                setup_intent_id, params={"expand": ["payment_method"]}
            )
        except stripe.StripeError as exc:
            logger.warning("setup intent %s: %s", setup_intent_id, exc)
            return CardResult(ok=False, unavailable=True)
        if intent.status != "succeeded" or not intent.payment_method:
            return CardResult(ok=False, errors={"__all__": _("The card was not confirmed. Try again.")})
        method = intent.payment_method
        card = _get(method, "card") or {}
        customer = intent.customer if isinstance(intent.customer, str) else _get(intent.customer, "id", "")
        return CardResult(
            ok=True,
            token=f"{customer}/{_get(method, 'id')}" if customer else _get(method, "id"),
            brand=_get(card, "brand", "other"),
            last4=_get(card, "last4", ""),
            exp_month=int(_get(card, "exp_month", 0)),
            exp_year=int(_get(card, "exp_year", 0)),
            # Stripe's identity of the card number within the account: the same card added twice is one.
            fingerprint=_get(card, "fingerprint", "") or "",
        )

    def update_expiry(self, *, token: str, exp_month: int, exp_year: int) -> CardResult:
        _customer, method = _split_token(token)
        try:
            updated = self.client.v1.payment_methods.update(
                method,
                params={"card": {"exp_month": exp_month, "exp_year": exp_year}},
            )
        except stripe.CardError as exc:
            return CardResult(ok=False, errors={"exp_month": exc.user_message or str(exc)})
        except stripe.StripeError as exc:
            logger.warning("update expiry of %s: %s", method, exc)
            return CardResult(ok=False, unavailable=True)
        card = _get(updated, "card") or {}
        return CardResult(
            ok=True,
            token=token,
            brand=_get(card, "brand", ""),
            last4=_get(card, "last4", ""),
            exp_month=exp_month,
            exp_year=exp_year,
        )


def webhook_verify(*, payload: bytes, signature: str) -> dict[str, Any]:
    """Check a webhook's signature and timestamp tolerance; return the event as plain JSON."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhookInvalid("no webhook secret configured")
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), signature, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise WebhookInvalid(str(exc)) from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise WebhookInvalid("not JSON") from exc
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise WebhookInvalid("not an event")
    return event
