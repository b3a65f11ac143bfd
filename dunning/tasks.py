"""Thin tasks: the sweep finds due accounts, each account task re-checks and acts under its lock.

acks_late + reject_on_worker_lost: a worker killed mid-task leaves the message to be delivered again,
and running it again is harmless (charges reuse their attempt key). No task waits with an ETA or a
countdown: every wait is a time in the database that a later sweep finds.
"""

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .services import account_dunning_run
from .services import dunning_sweep as sweep


@shared_task(
    name="dunning.tasks.dunning_sweep", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def dunning_sweep() -> int:
    return sweep(now=timezone.now(), batch_size=settings.DUNNING_SWEEP_BATCH).enqueued


@shared_task(
    name="dunning.tasks.dunning_account", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def dunning_account(account_id: int) -> None:
    account_dunning_run(account_id=account_id, now=timezone.now())


@shared_task(name="dunning.tasks.noop", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def noop() -> None:
    """Does nothing; the benchmark measures the broker and worker overhead with it."""
