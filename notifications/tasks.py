from typing import Any

from celery import shared_task

from .services import notice_deliver


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5, default_retry_delay=60)
def deliver_notice(self, notice_id: int, context: dict[str, Any] | None = None) -> None:
    try:
        notice_deliver(notice_id=notice_id, context=context)
    except Exception as exc:
        raise self.retry(exc=exc) from exc
