"""The Stripe adapter: the only module that imports the Stripe SDK.

PaymentIntents (off_session for jobs, next_action for the customer in the pane), SetupIntents with
Stripe Elements to add cards (no card number touches our server), an idempotency key on every
create, and every SDK error turned into a ChargeResult here, at this one seam.

Our PaymentMethod.gateway_token for Stripe is "cus_…/pm_…" (customer and payment method), or a
bare "pm_…" for a method not attached to a customer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import stripe
from django.conf import settings
from django.utils.translation import gettext as _
from stripe.params import (
    CustomerCreateParams,
    PaymentIntentCreateParams,
    RefundCreateParams,
    SetupIntentCreateParams,
)

from .base import (
    CardCollection,
    CardInfo,
    CardResult,
    CardSetup,
    ChargeOutcome,
    ChargeResult,
    DisputeInfo,
    GatewayError,
    GatewayEvent,
    GatewayEventKind,
    RefundInfo,
    RefundOutcome,
    RefundResult,
    WebhookRejected,
    classify_decline,
)

logger = logging.getLogger(__name__)

stripe.enable_telemetry = False

# Only cards: the parameter the pinned API version offers for it (payment_method_types is refused
# since 2026-09-30.endive). Stripe.js Elements get the same list (payments/static/payments/stripe-card.js).
ALLOWED_PAYMENT_METHOD_TYPES = ["card"]
# A signed event dated further ahead than this is refused (clock skew beyond it is not skew).
WEBHOOK_FUTURE_TOLERANCE = dt.timedelta(minutes=5)


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
            network_advice_code=_get(error, "network_advice_code", "") or "",
            network_decline_code=_get(error, "network_decline_code", "") or "",
            **common,
        )
    # processing, requires_capture (we never use manual capture) or anything new: find out later.
    return ChargeResult(outcome=ChargeOutcome.UNKNOWN, message=f"payment intent is {status}", **common)


def _error_result(exc: stripe.StripeError) -> ChargeResult:
    """One seam for every SDK error of a charge: a decline, no answer, or a request refused as invalid."""
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
            network_advice_code=(error and error.network_advice_code) or "",
            network_decline_code=(error and error.network_decline_code) or "",
        )
    if _permanent(exc):
        # Stripe refused the request itself (unknown or missing parameter, unknown API version, a
        # revoked key): nothing was processed and sending it again cannot help. Someone must fix it.
        logger.error("stripe refused a request as invalid: %s %s", type(exc).__name__, exc)
        return ChargeResult.invalid(_describe(exc))
    # Connection failures, time-outs, rate limits, 5xx, an idempotency conflict: nothing here proves
    # that no money moved, so the attempt is reconciled by looking it up, never charged again.
    return ChargeResult.unknown(_describe(exc))


def _permanent(exc: stripe.StripeError) -> bool:
    # IdempotencyError is not here: a key already used may mean an earlier request did charge.
    return isinstance(exc, stripe.InvalidRequestError | stripe.AuthenticationError | stripe.PermissionError)


def _describe(exc: stripe.StripeError) -> str:
    error = exc.error
    parts = [type(exc).__name__]
    if exc.http_status:
        parts.append(str(exc.http_status))
    if error is not None and error.code:
        parts.append(error.code)
    if error is not None and error.param:
        parts.append(f"param={error.param}")
    return f"{' '.join(parts)}: {exc.user_message or str(exc)}"[:500]


def _card_info(method: Any, *, customer: str = "") -> CardInfo:
    card = _get(method, "card") or {}
    customer = customer or _id(_get(method, "customer"))
    method_id = _get(method, "id", "")
    return CardInfo(
        token=f"{customer}/{method_id}" if customer else method_id,
        brand=_get(card, "brand", "") or "",
        last4=_get(card, "last4", "") or "",
        exp_month=int(_get(card, "exp_month", 0) or 0),
        exp_year=int(_get(card, "exp_year", 0) or 0),
        fingerprint=_get(card, "fingerprint", "") or "",
        customer=customer,
    )


def _id(value: Any) -> str:
    """An expandable field: an id string, an object with an id, or nothing."""
    if isinstance(value, str):
        return value
    return _get(value, "id", "") or ""


class StripeGateway:
    name = "stripe"
    # Stripe's search index lags a little: "not found" only counts once an attempt is some minutes old.
    lookup_is_final = False
    card_collection = CardCollection.ELEMENTS

    def __init__(self) -> None:
        self.client = _client()
        self.public_key = settings.STRIPE_PUBLISHABLE_KEY

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
        language: str = "",
    ) -> ChargeResult:
        # `language` is not sent: a PaymentIntent has no language parameter; Stripe and the issuer choose
        # the 3-D Secure page's language themselves.
        del language
        customer, method = _split_token(token)
        params: PaymentIntentCreateParams = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "payment_method": method,
            "allowed_payment_method_types": list(ALLOWED_PAYMENT_METHOD_TYPES),
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
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            return _error_result(exc)
        return intent_result(intent)

    def confirm(self, *, reference: str) -> ChargeResult:
        try:
            return intent_result(self.client.v1.payment_intents.retrieve(reference))
        except stripe.StripeError as exc:
            # About a charge that may exist: whatever the error, its outcome is still unknown.
            if _permanent(exc):
                logger.error("stripe refused to read payment intent %s: %s", reference, _describe(exc))
            return ChargeResult.unknown(_describe(exc), reference=reference)

    def lookup(self, *, idempotency_key: str, reference: str = "") -> ChargeResult:
        if reference:
            return self.confirm(reference=reference)
        try:
            found = self.client.v1.payment_intents.search(
                params={"query": f"metadata['idempotency_key']:'{idempotency_key}'", "limit": 1}
            )
        except stripe.StripeError as exc:
            if _permanent(exc):
                logger.error("stripe refused the search for %s: %s", idempotency_key, _describe(exc))
            return ChargeResult.unknown(_describe(exc))
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
            return ChargeResult.unknown(_describe(exc), reference=reference)

    def add_card(
        self, *, number: str, exp_month: int, exp_year: int, cvc: str, holder_name: str
    ) -> CardResult:
        # Card numbers never reach our server in Stripe mode: cards come in through Elements.
        return CardResult(ok=False, errors={"__all__": _("Add the card with the secure card form.")})

    def customer_create(self, *, name: str, email: str, idempotency_key: str) -> str:
        params: CustomerCreateParams = {"name": name}
        if email:
            params["email"] = email
        try:
            customer = self.client.v1.customers.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise GatewayError(_describe(exc), permanent=_permanent(exc)) from exc
        return customer.id

    def card_setup_start(self, *, customer: str, idempotency_key: str) -> CardSetup:
        """A SetupIntent for Stripe Elements on the account's customer, for off-session charges later."""
        params: SetupIntentCreateParams = {
            "usage": "off_session",
            "allowed_payment_method_types": list(ALLOWED_PAYMENT_METHOD_TYPES),
        }
        if customer:
            params["customer"] = customer
        try:
            intent = self.client.v1.setup_intents.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise GatewayError(_describe(exc), permanent=_permanent(exc)) from exc
        return CardSetup(
            reference=intent.id,
            client_secret=intent.client_secret or "",
            publishable_key=self.public_key,
        )

    def card_setup_finish(self, *, reference: str) -> CardResult:
        try:
            intent = self.client.v1.setup_intents.retrieve(reference, params={"expand": ["payment_method"]})
        except stripe.StripeError as exc:
            logger.warning("setup intent %s: %s", reference, _describe(exc))
            return CardResult(ok=False, unavailable=not _permanent(exc))
        if intent.status != "succeeded" or not intent.payment_method:
            return CardResult(ok=False, errors={"__all__": _("The card was not confirmed. Try again.")})
        card = _card_info(intent.payment_method, customer=_id(intent.customer))
        return CardResult(
            ok=True,
            token=card.token,
            brand=card.brand or "other",
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            # Stripe's identity of the card number within the account: the same card added twice is one.
            fingerprint=card.fingerprint,
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
            logger.warning("update expiry of %s: %s", method, _describe(exc))
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

    def detach(self, *, token: str) -> None:
        _customer, method = _split_token(token)
        try:
            self.client.v1.payment_methods.detach(method)
        except stripe.InvalidRequestError as exc:
            if exc.code in ("resource_missing", "payment_method_unexpected_state"):
                return  # gone or detached already at Stripe: what we wanted
            raise GatewayError(_describe(exc), permanent=True) from exc
        except stripe.StripeError as exc:
            raise GatewayError(_describe(exc), permanent=_permanent(exc)) from exc

    def refund(
        self,
        *,
        charge_reference: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        reason: str = "",
    ) -> RefundResult:
        params: RefundCreateParams = {
            "payment_intent": charge_reference,
            "amount": amount_minor,
            "metadata": {"idempotency_key": idempotency_key, "reason": reason[:500]},
        }
        try:
            refund = self.client.v1.refunds.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            if _permanent(exc):
                logger.error("stripe refused a refund of %s: %s", charge_reference, _describe(exc))
                return RefundResult(outcome=RefundOutcome.INVALID, message=_describe(exc))
            return RefundResult(outcome=RefundOutcome.UNKNOWN, message=_describe(exc))
        return RefundResult(
            outcome=_refund_outcome(refund.status),
            reference=refund.id,
            amount_minor=refund.amount,
            currency=str(refund.currency or currency).upper(),
            message=_get(refund, "failure_reason", "") or "",
        )

    def parse_webhook(self, *, payload: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        return webhook_parse(payload=payload, headers=headers)


def _refund_outcome(status: Any) -> RefundOutcome:
    if status == "succeeded":
        return RefundOutcome.SUCCEEDED
    if status in ("failed", "canceled"):
        return RefundOutcome.FAILED
    return RefundOutcome.PENDING  # pending, requires_action


# --- Webhooks: Stripe's event names are known here and nowhere else. ---------------------------

_PAYMENT_EVENTS = {
    "payment_intent.succeeded": GatewayEventKind.PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": GatewayEventKind.PAYMENT_FAILED,
    "payment_intent.requires_action": GatewayEventKind.PAYMENT_REQUIRES_ACTION,
    "payment_intent.canceled": GatewayEventKind.PAYMENT_CANCELED,
}
_REFUND_EVENTS = {"refund.created", "refund.updated", "refund.failed"}
_DISPUTE_EVENTS = {
    "charge.dispute.created": GatewayEventKind.DISPUTE_OPENED,
    "charge.dispute.updated": GatewayEventKind.DISPUTE_UPDATED,
    "charge.dispute.closed": GatewayEventKind.DISPUTE_CLOSED,
}


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _signed_at(signature: str) -> int | None:
    for item in signature.split(","):
        key, _sep, value = item.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            return int(value)
    return None


def webhook_parse(*, payload: bytes, headers: Mapping[str, str]) -> GatewayEvent:
    """Verify a delivery's signature and time, then translate the event into our GatewayEvent."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhookRejected("no webhook secret configured")
    signature = _header(headers, "Stripe-Signature")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(
            text, signature, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise WebhookRejected(f"signature: {exc}") from exc
    signed_at = _signed_at(signature)
    if signed_at is None or signed_at > time.time() + WEBHOOK_FUTURE_TOLERANCE.total_seconds():
        raise WebhookRejected("signed timestamp lies in the future")
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise WebhookRejected("the body is not JSON", malformed=True) from exc
    if not isinstance(event, dict):
        raise WebhookRejected("the body is not an event object", malformed=True)
    event_id, raw_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(raw_type, str) or not raw_type:
        raise WebhookRejected("the event has no id or no type", malformed=True, payload=event)
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise WebhookRejected(
            "data.object is not an object",
            malformed=True,
            event_id=event_id,
            raw_type=raw_type,
            payload=event,
        )
    created = event.get("created")
    try:
        translated = _translate(event_id=event_id, raw_type=raw_type, obj=obj, created=created)
    except (TypeError, ValueError, KeyError) as exc:
        raise WebhookRejected(
            f"{raw_type}: unreadable object ({type(exc).__name__}: {exc})",
            malformed=True,
            event_id=event_id,
            raw_type=raw_type,
            payload=event,
        ) from exc
    return translated


def _when(epoch: Any) -> dt.datetime:
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return dt.datetime.now(tz=dt.UTC)


def _translate(*, event_id: str, raw_type: str, obj: dict[str, Any], created: Any) -> GatewayEvent:
    common: dict[str, Any] = {"id": event_id, "raw_type": raw_type, "created": _when(created)}
    if raw_type in _PAYMENT_EVENTS:
        metadata = obj.get("metadata") or {}
        return GatewayEvent(
            kind=_PAYMENT_EVENTS[raw_type],
            charge=intent_result(obj),
            reference=str(obj.get("id") or ""),
            idempotency_key=str(metadata.get("idempotency_key") or ""),
            **common,
        )
    if raw_type in _REFUND_EVENTS:
        return GatewayEvent(
            kind=GatewayEventKind.REFUND_UPDATED,
            refund=_refund_info(obj),
            # Our refund's key, echoed from the metadata refund() sends: matches a refund whose own
            # answer has not arrived yet exactly, not by amount.
            idempotency_key=_metadata_key(obj),
            **common,
        )
    if raw_type == "charge.refunded":
        # The charge lists its refunds when Stripe includes them; each refund.* event tells the same.
        refunds = (obj.get("refunds") or {}).get("data") or []
        if not refunds:
            return GatewayEvent(kind=GatewayEventKind.IGNORED, **common)
        newest = max(refunds, key=lambda r: int(r.get("created") or 0))
        info = _refund_info(
            {**newest, "payment_intent": newest.get("payment_intent") or obj.get("payment_intent")}
        )
        return GatewayEvent(
            kind=GatewayEventKind.REFUND_UPDATED, refund=info, idempotency_key=_metadata_key(newest), **common
        )
    if raw_type in _DISPUTE_EVENTS:
        due_by = (obj.get("evidence_details") or {}).get("due_by")
        return GatewayEvent(
            kind=_DISPUTE_EVENTS[raw_type],
            dispute=DisputeInfo(
                reference=str(obj["id"]),
                charge_reference=_id(obj.get("payment_intent")) or _id(obj.get("charge")),
                amount_minor=int(obj["amount"]),
                currency=str(obj.get("currency") or "").upper(),
                reason=str(obj.get("reason") or ""),
                status=str(obj.get("status") or ""),
                evidence_due_by=_when(due_by) if isinstance(due_by, int) else None,
            ),
            **common,
        )
    if raw_type == "payment_method.automatically_updated":
        return GatewayEvent(
            kind=GatewayEventKind.CARD_UPDATED, card=_card_info(obj), reference=str(obj["id"]), **common
        )
    if raw_type == "setup_intent.succeeded":
        method = obj.get("payment_method")
        customer = _id(obj.get("customer"))
        card = (
            _card_info(method, customer=customer)
            if isinstance(method, dict)
            else CardInfo(
                token=f"{customer}/{method}" if customer and method else str(method or ""), customer=customer
            )
        )
        return GatewayEvent(
            kind=GatewayEventKind.CARD_SETUP_SUCCEEDED, card=card, reference=str(obj["id"]), **common
        )
    if raw_type == "customer.deleted":
        return GatewayEvent(kind=GatewayEventKind.CUSTOMER_DELETED, customer=str(obj["id"]), **common)
    return GatewayEvent(kind=GatewayEventKind.IGNORED, **common)


def _metadata_key(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("idempotency_key") or "") if isinstance(metadata, dict) else ""


def _refund_info(obj: dict[str, Any]) -> RefundInfo:
    metadata = obj.get("metadata") or {}
    return RefundInfo(
        reference=str(obj["id"]),
        charge_reference=_id(obj.get("payment_intent")) or _id(obj.get("charge")),
        amount_minor=int(obj["amount"]),
        currency=str(obj.get("currency") or "").upper(),
        status=_refund_outcome(obj.get("status")),
        reason=str(metadata.get("reason") or obj.get("reason") or ""),
    )
