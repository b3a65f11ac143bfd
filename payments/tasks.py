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


@shared_task(acks_late=True)
def method_detach_retry_task(method_id: int) -> None:
    from .detach import detach_retry

    detach_retry(method_id=method_id)


@shared_task(acks_late=True)
def methods_detach_due() -> int:
    """Removed cards the gateway has not confirmed forgetting, whose next try has come (one task each;
    each task takes a lease, so a second sweep or a redelivered task does not call the gateway again)."""
    from .detach import detach_due

    ids = list(detach_due(now=timezone.now()).values_list("pk", flat=True))
    for method_id in ids:
        method_detach_retry_task.delay(method_id)
    return len(ids)
