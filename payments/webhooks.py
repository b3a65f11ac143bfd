"""Gateway webhooks: receive, store every event once, and act on the kinds listed in HANDLERS.

The adapter (`gateway.parse_webhook`) checks the signature and time and translates the gateway's
event into our GatewayEvent; nothing here knows a gateway's event names. Every event is stored
(`WebhookEvent`) with how it was handled: processed, ignored (no handler, or nothing to do) or
failed (malformed, or a handler refused it). A replayed or duplicated delivery of a processed or
ignored event does nothing; a failed one is tried again. Handlers are safe in any order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_record

from .disputes import dispute_event_apply
from .gateways.base import (
    ChargeOutcome,
    GatewayEvent,
    GatewayEventKind,
    WebhookRejected,
    get_gateway,
)
from .models import GatewayCustomer, PaymentAttempt, PaymentMethod, WebhookEvent
from .refunds import NOTE_NOT_OURS, NOTE_UNREADABLE, refund_event_apply
from .services import _payment_method_record, account_lock, attempt_apply_result

logger = logging.getLogger(__name__)

Status = WebhookEvent.Status


@dataclasses.dataclass(frozen=True)
class Handled:
    status: str  # WebhookEvent.Status
    error: str = ""


Handler = Callable[[WebhookEvent, GatewayEvent], Handled]


class WebhookMalformed(Exception):
    """A signed delivery we could not read: stored as failed, answered 400."""

    def __init__(self, event: WebhookEvent) -> None:
        super().__init__(event.error)
        self.event = event


def webhook_receive(*, gateway_name: str, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
    """Verify, store and handle one delivery.

    Raises WebhookRejected (not stored: bad signature, stale or future-dated), WebhookMalformed (stored
    as failed with its reason), UnsupportedOperation / LookupError (no webhooks for that gateway).
    """
    gateway = get_gateway(gateway_name)
    try:
        event = gateway.parse_webhook(payload=payload, headers=headers)
    except WebhookRejected as exc:
        if not exc.malformed:
            raise
        raise WebhookMalformed(
            _store_malformed(gateway_name=gateway.name, payload=payload, rejected=exc)
        ) from exc
    try:
        body = json.loads(payload)
    except ValueError:
        body = {}
    return gateway_event_receive(gateway_name=gateway.name, event=event, payload=body)


def gateway_event_receive(*, gateway_name: str, event: GatewayEvent, payload: dict[str, Any]) -> WebhookEvent:
    """Store one translated event once by its id and handle it, exactly like a webhook delivery. In-process
    gateways (the simulated bank raising a refund, a dispute or a card update) call this directly."""
    stored, _created = webhook_event_record(gateway_name=gateway_name, event=event, payload=payload)
    if stored.status in (Status.PROCESSED, Status.IGNORED):
        return stored  # a replay: handled already
    return webhook_event_process(webhook_event_id=stored.pk, event=event)


def _store_malformed(*, gateway_name: str, payload: bytes, rejected: WebhookRejected) -> WebhookEvent:
    # Without a readable id, the body's hash stands in, so a redelivery is the same row.
    event_id = rejected.event_id or "malformed:" + hashlib.sha256(payload).hexdigest()[:40]
    body = (
        rejected.payload
        if isinstance(rejected.payload, dict)
        else {"raw": payload[:2000].decode("utf-8", "replace")}
    )
    stored, _created = _get_or_create(
        gateway_name=gateway_name,
        event_id=event_id,
        raw_type=rejected.raw_type or "(malformed)",
        payload=body,
    )
    if stored.status in (Status.PROCESSED, Status.IGNORED):
        return stored  # a readable delivery of this event was handled already: keep its outcome
    stored.status, stored.error, stored.processed_at = (
        Status.FAILED,
        f"malformed: {rejected}"[:2000],
        timezone.now(),
    )
    stored.save(update_fields=["status", "error", "processed_at"])
    logger.warning("%s webhook %s is malformed: %s", gateway_name, event_id, rejected)
    return stored


def _get_or_create(
    *, gateway_name: str, event_id: str, raw_type: str, payload: Any
) -> tuple[WebhookEvent, bool]:
    try:
        with transaction.atomic():
            return (
                WebhookEvent.objects.create(
                    gateway=gateway_name, event_id=event_id[:255], type=raw_type[:100], payload=payload
                ),
                True,
            )
    except IntegrityError:
        return WebhookEvent.objects.get(gateway=gateway_name, event_id=event_id[:255]), False


def webhook_event_record(
    *, gateway_name: str, event: GatewayEvent, payload: dict[str, Any]
) -> tuple[WebhookEvent, bool]:
    """Store a verified event once by its id. Returns (event, created); a replay is not created."""
    return _get_or_create(
        gateway_name=gateway_name, event_id=event.id, raw_type=event.raw_type, payload=payload
    )


def webhook_event_process(*, webhook_event_id: int, event: GatewayEvent) -> WebhookEvent:
    """Run the kind's handler (HANDLERS) and store the outcome. Unlisted kinds are stored as ignored."""
    stored = WebhookEvent.objects.get(pk=webhook_event_id)
    if stored.status in (Status.PROCESSED, Status.IGNORED):
        return stored
    handler = HANDLERS.get(event.kind)
    handled = Handled(Status.IGNORED) if handler is None else handler(stored, event)
    stored.status, stored.error, stored.processed_at = handled.status, handled.error[:2000], timezone.now()
    stored.save(update_fields=["status", "error", "processed_at"])
    return stored


# --- Handlers -----------------------------------------------------------------------------------


def payment_event_apply(stored: WebhookEvent, event: GatewayEvent) -> Handled:
    """PAYMENT_*: the charge's news goes through the same phase 3 as every payment."""
    result = event.charge
    if result is None:
        return Handled(Status.FAILED, "payment event without a charge")
    attempt = None
    if event.reference:
        attempt = PaymentAttempt.objects.filter(
            gateway=stored.gateway, gateway_reference=event.reference
        ).first()
    if attempt is None and event.idempotency_key:
        attempt = PaymentAttempt.objects.filter(
            gateway=stored.gateway, idempotency_key=event.idempotency_key
        ).first()
    if attempt is None:
        return Handled(Status.IGNORED, "no payment attempt of ours")
    if attempt.gateway_reference and result.reference and attempt.gateway_reference != result.reference:
        # Found by our key, but the attempt's charge is another one: never merge two charges into one.
        logger.error(
            "%s event %s: charge %s carries the key of attempt %s (charge %s)",
            stored.gateway,
            stored.event_id,
            result.reference,
            attempt.pk,
            attempt.gateway_reference,
        )
        return Handled(Status.FAILED, "another charge carries this attempt's key")
    if result.amount_minor is not None and result.amount_minor != attempt.amount_minor:
        return Handled(Status.FAILED, "amount differs from the attempt's")
    if result.currency and result.currency.upper() != attempt.currency.upper():
        return Handled(Status.FAILED, "currency differs from the attempt's")
    if result.outcome == ChargeOutcome.REQUIRES_ACTION and attempt.status not in (
        PaymentAttempt.Status.PENDING,
        PaymentAttempt.Status.UNKNOWN,
    ):
        return Handled(Status.PROCESSED)  # nothing new: the customer already has the challenge
    attempt_apply_result(attempt_id=attempt.pk, result=result)
    return Handled(Status.PROCESSED)


# Decline codes that a new expiry date (or a new card number from the network) answers.
EXPIRY_DECLINE_CODES = frozenset({"expired_card", "invalid_expiry_month", "invalid_expiry_year"})


def _methods_for_token(*, gateway_name: str, token: str) -> Q:
    _customer, _sep, method_id = token.rpartition("/")
    return Q(gateway=gateway_name) & (
        Q(gateway_token=token) | Q(gateway_token=method_id) | Q(gateway_token__endswith=f"/{method_id}")
    )


def card_updated_apply(stored: WebhookEvent, event: GatewayEvent) -> Handled:
    """CARD_UPDATED (network account updater): new brand, last4, expiry. Clears an expiry-related decline
    only; a card declined for funds or fraud stays declined. Older news never overwrites newer."""
    card = event.card
    if card is None or not card.token:
        return Handled(Status.FAILED, "card event without a card")
    method = (
        PaymentMethod.objects.filter(_methods_for_token(gateway_name=stored.gateway, token=card.token))
        .exclude(status=PaymentMethod.Status.DETACHED)
        .first()
    )
    if method is None:
        return Handled(Status.IGNORED, "no saved card of ours")
    with transaction.atomic():
        account = account_lock(account_id=method.account_id)
        method = PaymentMethod.objects.select_for_update().get(pk=method.pk)
        if method.status == PaymentMethod.Status.DETACHED:
            return Handled(Status.IGNORED, "the card was removed")
        if method.card_synced_at is not None and method.card_synced_at >= event.created:
            return Handled(Status.PROCESSED, "a newer update was applied already")
        before = f"{method.label} (expires {method.expiry})"
        fields = ["card_synced_at"]
        method.card_synced_at = event.created
        if card.brand:
            method.brand = (
                card.brand if card.brand in PaymentMethod.Brand.values else PaymentMethod.Brand.OTHER
            )
            fields.append("brand")
        if len(card.last4) == 4 and card.last4.isascii() and card.last4.isdigit():
            method.last4 = card.last4
            fields.append("last4")
        if 1 <= card.exp_month <= 12 and card.exp_year >= 2000:
            method.exp_month, method.exp_year = card.exp_month, card.exp_year
            fields += ["exp_month", "exp_year"]
        cleared = False
        if method.status == PaymentMethod.Status.EXPIRED or (
            method.status == PaymentMethod.Status.DECLINED
            and method.last_decline_code in EXPIRY_DECLINE_CODES
        ):
            method.status = PaymentMethod.Status.VALID
            method.last_decline_code = ""
            fields += ["status", "last_decline_code"]
            cleared = True
        method.save(update_fields=fields)
        audit_record(
            account=account,
            actor_label=stored.gateway,
            action="payment_method.updated_by_network",
            message=f"{before} was updated by the card network: now {method.label} (expires {method.expiry})"
            + ("; its expiry decline is cleared" if cleared else ""),
            target=method,
            data={"event": stored.event_id},
        )
    return Handled(Status.PROCESSED)


def card_setup_apply(stored: WebhookEvent, event: GatewayEvent) -> Handled:
    """CARD_SETUP_SUCCEEDED: save the card even when the browser never came back. The browser's own save
    of the same setup finds this row (one card per gateway token), and the other way round."""
    card = event.card
    customer_id = card.customer if card is not None else ""
    customer = (
        GatewayCustomer.objects.filter(gateway=stored.gateway, customer_id=customer_id).first()
        if customer_id
        else None
    )
    if customer is None:
        return Handled(Status.IGNORED, "no account of ours for this customer")
    result = get_gateway(stored.gateway).card_setup_finish(reference=event.reference)
    if not result.ok:
        if result.unavailable:
            raise RuntimeError(f"card setup {event.reference} could not be read at the gateway now")
        return Handled(Status.FAILED, "the card setup did not produce a card")
    if not result.token.startswith(f"{customer.customer_id}/"):
        return Handled(Status.FAILED, "the card belongs to another customer")
    _payment_method_record(
        account_id=customer.account_id,
        actor=None,
        actor_label=stored.gateway,
        gateway_name=stored.gateway,
        card=result,
        holder_name="",
    )
    return Handled(Status.PROCESSED)


def customer_deleted_apply(stored: WebhookEvent, event: GatewayEvent) -> Handled:
    """CUSTOMER_DELETED: the gateway forgot the customer and its cards; so do we. A later card setup
    creates a new customer."""
    if not event.customer:
        return Handled(Status.FAILED, "customer event without a customer")
    customer = GatewayCustomer.objects.filter(gateway=stored.gateway, customer_id=event.customer).first()
    prefix = f"{event.customer}/"
    if customer is None:
        # Deleted already (a replay), or never ours: forget any card still filed under it all the same.
        account_ids = list(
            PaymentMethod.objects.filter(gateway=stored.gateway, gateway_token__startswith=prefix)
            .exclude(status=PaymentMethod.Status.DETACHED)
            .values_list("account_id", flat=True)
            .distinct()
        )
        if not account_ids:
            return Handled(Status.IGNORED, "no account of ours for this customer")
    else:
        account_ids = [customer.account_id]
    for account_id in sorted(account_ids):
        with transaction.atomic():
            account = account_lock(account_id=account_id)
            methods = list(
                PaymentMethod.objects.select_for_update()
                .filter(account=account, gateway=stored.gateway, gateway_token__startswith=prefix)
                .exclude(status=PaymentMethod.Status.DETACHED)
                .order_by("pk")
            )
            for method in methods:
                method.status = PaymentMethod.Status.DETACHED
                method.is_default = False
                method.save(update_fields=["status", "is_default"])
            GatewayCustomer.objects.filter(
                account=account, gateway=stored.gateway, customer_id=event.customer
            ).update(customer_id="", generation=F("generation") + 1)
            audit_record(
                account=account,
                actor_label=stored.gateway,
                action="payment_method.customer_deleted",
                message=f"The {stored.gateway} customer {event.customer} was deleted; "
                f"{len(methods)} card(s) removed: " + ", ".join(m.label for m in methods),
                data={
                    "event": stored.event_id,
                    "customer": event.customer,
                    "methods": [m.pk for m in methods],
                },
            )
    return Handled(Status.PROCESSED)


def _money_back_handled(note: str) -> Handled:
    """A refund or dispute handler's note as the stored outcome: not for us → ignored (with why),
    unreadable → failed (with why), anything else was applied."""
    if note.startswith(NOTE_NOT_OURS):
        return Handled(Status.IGNORED, note.removeprefix(NOTE_NOT_OURS))
    if note.startswith(NOTE_UNREADABLE):
        return Handled(Status.FAILED, note.removeprefix(NOTE_UNREADABLE))
    return Handled(Status.PROCESSED)


def refund_webhook_apply(stored: WebhookEvent, event: GatewayEvent) -> Handled:
    """REFUND_UPDATED: applied like our own refund's answer, once (payments.refunds)."""
    return _money_back_handled(refund_event_apply(event=event))


def dispute_webhook_apply(stored: WebhookEvent, event: GatewayEvent) -> Handled:
    """DISPUTE_*: recorded, card blocked, lost → due again, won → nothing (payments.disputes)."""
    return _money_back_handled(dispute_event_apply(event=event))


# The kinds we act on, in one place. Unlisted kinds are stored as ignored.
HANDLERS: dict[GatewayEventKind, Handler] = {
    GatewayEventKind.REFUND_UPDATED: refund_webhook_apply,
    GatewayEventKind.DISPUTE_OPENED: dispute_webhook_apply,
    GatewayEventKind.DISPUTE_UPDATED: dispute_webhook_apply,
    GatewayEventKind.DISPUTE_CLOSED: dispute_webhook_apply,
    GatewayEventKind.PAYMENT_SUCCEEDED: payment_event_apply,
    GatewayEventKind.PAYMENT_FAILED: payment_event_apply,
    GatewayEventKind.PAYMENT_REQUIRES_ACTION: payment_event_apply,
    GatewayEventKind.PAYMENT_CANCELED: payment_event_apply,
    GatewayEventKind.CARD_UPDATED: card_updated_apply,
    GatewayEventKind.CARD_SETUP_SUCCEEDED: card_setup_apply,
    GatewayEventKind.CUSTOMER_DELETED: customer_deleted_apply,
}
