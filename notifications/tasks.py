import logging
from typing import Any

from celery import shared_task

from .services import notice_deliver, notices_deliver

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5, default_retry_delay=60)
def deliver_notice(self, notice_id: int, context: dict[str, Any] | None = None) -> None:
    try:
        notice_deliver(notice_id=notice_id, context=context)
    except Exception as exc:
        raise self.retry(exc=exc) from exc


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_notices(notice_ids: list[int]) -> None:
    """One account run's notices in one task, one transaction and one mail connection (notices_deliver).
    A notice that fails goes on alone to deliver_notice and its retries; delivery is idempotent, so a
    redelivered task sends nothing twice."""
    try:
        failed = notices_deliver(notice_ids=notice_ids)
    except Exception:
        # The batch itself broke (the mail server refused the connection, the database went away):
        # each notice gets its own task and retries.
        logger.exception("notices %s could not be sent together; retried one by one", notice_ids)
        failed = notice_ids
    for notice_id in failed:
        try:
            deliver_notice.delay(notice_id)
        except Exception:
            logger.exception("notice %s could not be queued again; it stays queued", notice_id)
