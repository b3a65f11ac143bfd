"""Detaching deleted cards at the gateway, retried until the gateway confirms it.

Deleting a card (payments.services.payment_method_remove) marks it removed in our records at once, so the
engine and dunning never charge it again whatever the gateway does, and then asks the gateway to forget it.
When that request fails (the gateway is down, times out, answers 5xx) the card would stay attached at the
gateway for ever. This module retries it:

- `detach_due()` selects removed cards the gateway has not confirmed forgetting and whose next try is due;
- `detach_retry()` makes one try for one card: it takes a lease first (moves `gateway_detach_next_at` to the
  next back-off step in its own short transaction, row locked, skipped when another run holds it), so two
  sweeps or a double-delivered task never call the gateway for one card at once; then calls the gateway
  outside any lock; then records the answer. Detaching is idempotent at the gateway (a card it no longer
  knows counts as detached), so even a call repeated after a crash is harmless.
- Every try is audited on the account ("payment_method.gateway_detach_failed" / "…gateway_detached"), which
  support sees on the account's timeline with the gateway's answer and the time of the next try.

Back-off after the n-th failed try: DETACH_RETRY_BACKOFF[n-1], the last step repeating (daily) for as long as
the gateway refuses; a card whose gateway cannot detach at all (UnsupportedOperation) keeps the daily step so
it stays visible instead of silently dropped.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.services import audit_record

from .gateways.base import GatewayError, UnsupportedOperation, get_gateway
from .models import PaymentMethod

logger = logging.getLogger(__name__)

# The first retry waits for the delete's own attempt (made right after its commit) to have finished.
DETACH_FIRST_RETRY_AFTER = dt.timedelta(minutes=5)
DETACH_RETRY_BACKOFF = (
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
    dt.timedelta(hours=6),
    dt.timedelta(days=1),
)
# How long one try may hold its lease before another run may take the card (longer than any gateway timeout).
DETACH_LEASE = dt.timedelta(minutes=5)


def _backoff(attempts: int) -> dt.timedelta:
    return DETACH_RETRY_BACKOFF[min(max(attempts, 1), len(DETACH_RETRY_BACKOFF)) - 1]


def detach_pending() -> QuerySet[PaymentMethod]:
    """Removed cards that the gateway has not confirmed forgetting."""
    return PaymentMethod.objects.filter(
        status=PaymentMethod.Status.DETACHED, gateway_detached_at__isnull=True
    ).exclude(gateway_token="")


def detach_due(*, now: dt.datetime) -> QuerySet[PaymentMethod]:
    """Pending detaches whose next try has come (never tried: DETACH_FIRST_RETRY_AFTER after the delete)."""
    return detach_pending().filter(
        Q(gateway_detach_next_at__lte=now)
        | Q(gateway_detach_next_at__isnull=True, removed_at__lte=now - DETACH_FIRST_RETRY_AFTER)
        | Q(gateway_detach_next_at__isnull=True, removed_at__isnull=True)
    )


def _claim(*, method_id: int, now: dt.datetime) -> PaymentMethod | None:
    """Lock the card and take the lease for one try; None when it is done, not due, or held by another run."""
    with transaction.atomic():
        method = detach_due(now=now).select_for_update(skip_locked=True).filter(pk=method_id).first()
        if method is None:
            return None
        method.gateway_detach_next_at = now + DETACH_LEASE
        method.save(update_fields=["gateway_detach_next_at"])
        return method


def detach_retry(*, method_id: int, now: dt.datetime | None = None) -> bool | None:
    """One try to detach a removed card at its gateway. True: the gateway no longer holds it; False: it
    failed and the next try is scheduled; None: nothing to do (done already, not due, or another run
    holds it)."""
    now = now or timezone.now()
    method = _claim(method_id=method_id, now=now)
    if method is None:
        return None
    error = ""
    permanent = False
    try:
        get_gateway(method.gateway).detach(token=method.gateway_token)
    except UnsupportedOperation as exc:
        error = f"the {method.gateway} gateway cannot detach cards: {exc}"
    except GatewayError as exc:
        if exc.permanent:
            # Refused as invalid: the gateway does not know the card (any more), so nothing is left to
            # forget (payments.services._gateway_detach_token reads it the same way).
            permanent = True
            error = str(exc)
        else:
            error = str(exc) or exc.__class__.__name__
    except Exception as exc:  # an adapter bug or a network error it did not wrap: retried like a time-out
        logger.exception("detach retry of %s card %s failed", method.gateway, method.pk)
        error = f"{exc.__class__.__name__}: {exc}"
    succeeded = not error or permanent
    with transaction.atomic():
        locked = PaymentMethod.objects.select_for_update().select_related("account").get(pk=method.pk)
        if locked.gateway_detached_at is not None:  # the delete's own call confirmed it meanwhile
            return True
        attempts = locked.gateway_detach_attempts + 1
        locked.gateway_detach_attempts = attempts
        locked.gateway_detach_last_error = error[:500]
        if succeeded:
            locked.gateway_detached_at = timezone.now()
            locked.gateway_detach_next_at = None
            action = "payment_method.gateway_detached"
            message = f"{locked.label} was detached at the gateway (try {attempts})"
            if permanent:
                message += f"; the gateway no longer knew it: {error}"
        else:
            locked.gateway_detach_next_at = now + _backoff(attempts)
            action = "payment_method.gateway_detach_failed"
            message = (
                f"{locked.label} is still attached at the gateway (try {attempts} failed: {error}); "
                f"next try at {locked.gateway_detach_next_at.isoformat(timespec='minutes')}"
            )
        locked.save(
            update_fields=[
                "gateway_detach_attempts",
                "gateway_detach_last_error",
                "gateway_detached_at",
                "gateway_detach_next_at",
            ]
        )
        audit_record(
            account=locked.account,
            actor_label="billing",
            action=action,
            message=message,
            target=locked,
            data={
                "attempts": attempts,
                "error": error[:500],
                "next_at": locked.gateway_detach_next_at.isoformat()
                if locked.gateway_detach_next_at
                else None,
            },
        )
    return succeeded
