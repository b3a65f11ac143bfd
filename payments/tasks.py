"""Payment jobs: thin wrappers that load by id and call one service."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import services
from .selectors import attempts_abandoned, attempts_due_for_reconcile


@shared_task(acks_late=True)
def attempt_reconcile_task(attempt_id: int) -> None:
    services.attempt_reconcile(attempt_id=attempt_id)


@shared_task(acks_late=True)
def attempts_reconcile_due() -> int:
    """Every unknown attempt whose reconcile_after has come is looked up (one task each)."""
    ids = list(attempts_due_for_reconcile(now=timezone.now()).values_list("pk", flat=True))
    for attempt_id in ids:
        attempt_reconcile_task.delay(attempt_id)
    return len(ids)


@shared_task(acks_late=True)
def attempt_abandon_task(attempt_id: int) -> None:
    services.attempt_abandon(attempt_id=attempt_id)


@shared_task(acks_late=True)
def attempts_abandon_stale() -> int:
    ids = list(attempts_abandoned(now=timezone.now()).values_list("pk", flat=True))
    for attempt_id in ids:
        attempt_abandon_task.delay(attempt_id)
    return len(ids)


@shared_task(acks_late=True)
def refund_reconcile_task(refund_id: int) -> None:
    from .refunds import refund_reconcile

    refund_reconcile(refund_id=refund_id)


@shared_task(acks_late=True)
def refunds_reconcile_due() -> int:
    """Every pending refund whose answer is due is asked about again, with its own key (one task each)."""
    from .refunds import refunds_due_for_reconcile

    ids = refunds_due_for_reconcile(now=timezone.now())
    for refund_id in ids:
        refund_reconcile_task.delay(refund_id)
    return len(ids)
