"""Billing mails: one Notice row per event (dedupe_key), rendered in the account's language and
sent after the surrounding transaction commits."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from accounts.models import BillingAccount

from .models import Notice


def notice_send(
    *, account: BillingAccount, kind: str, dedupe_key: str, context: dict[str, Any]
) -> Notice | None:
    """Queue one mail to the account's notification address, at most once per dedupe_key.

    Returns the new Notice, or None when this event was already notified. The mail itself goes
    out from a task enqueued on commit, so a rolled-back payment never mails a receipt.
    """
    context = {**context, "account": account, "site_url": settings.SITE_URL}
    with translation.override(account.language):
        subject = render_to_string(f"notifications/email/{kind}_subject.txt", context).strip()
    try:
        with transaction.atomic():
            notice = Notice.objects.create(
                account=account,
                kind=kind,
                recipient=account.notification_email,
                subject=subject[:300],
                language=account.language,
                dedupe_key=dedupe_key,
            )
    except IntegrityError:
        return None
    from .tasks import deliver_notice

    # Only JSON-safe scalars travel to the task; it re-renders from the database.
    transaction.on_commit(lambda: deliver_notice.delay(notice.pk, _serialisable(context)))
    return notice


def _serialisable(context: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in context.items() if isinstance(v, (str, int, float, bool)) or v is None}


def notice_deliver(*, notice_id: int, context: dict[str, Any]) -> Notice:
    """Render and send one queued notice. Safe to call again: a sent notice is not sent twice."""
    with transaction.atomic():
        notice = Notice.objects.select_for_update().select_related("account").get(pk=notice_id)
        if notice.status == Notice.Status.SENT:
            return notice
        context = {**context, "account": notice.account, "site_url": settings.SITE_URL, "notice": notice}
        with translation.override(notice.language):
            text = render_to_string(f"notifications/email/{notice.kind}.txt", context)
            html = render_to_string(f"notifications/email/{notice.kind}.html", context)
        message = EmailMultiAlternatives(
            subject=notice.subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[notice.recipient]
        )
        message.attach_alternative(html, "text/html")
        try:
            message.send()
        except Exception as exc:  # an SMTP failure is recorded and retried by the task
            notice.status = Notice.Status.FAILED
            notice.error = str(exc)[:2000]
            notice.save(update_fields=["status", "error"])
            raise
        notice.status = Notice.Status.SENT
        notice.sent_at = timezone.now()
        notice.error = ""
        notice.save(update_fields=["status", "sent_at", "error"])
        return notice
