"""Billing mails: one Notice row per event (dedupe_key), rendered in the account's language and
sent after the surrounding transaction commits."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from accounts.models import BillingAccount
from billing_portal.batch import WriteBatch

from .models import Notice

logger = logging.getLogger(__name__)


def notice_send(
    *,
    account: BillingAccount,
    kind: str,
    dedupe_key: str,
    context: dict[str, Any],
    recipient: str | None = None,
    new_event: bool = False,
    writes: WriteBatch | None = None,
) -> Notice | None:
    """Queue one mail, at most once per dedupe_key, written in the account's language. Billing mail goes to
    the account's notification address and its additional recipients ("Edit recipients"); a mail for one
    person (`recipient`: an invited person, the owner, whoever asked support) goes to that person alone.

    Returns the new Notice, or None when this event was already notified. The mail itself goes
    out from a task enqueued on commit, so a rolled-back payment never mails a receipt.

    `new_event`: the caller knows no notice has this dedupe key yet (a receipt keyed by the attempt that
    succeeded in this very transaction, under the account lock). Then the row is inserted without the
    savepoint that catches a duplicate: a duplicate would be a bug, and is the caller's transaction's error.
    With `writes` as well, the INSERT joins the caller's batch (billing_portal.batch); the row has its id once
    the caller has executed it, before the transaction commits and the mail is handed on.
    """
    if writes is not None and not new_event:
        raise ValueError("only a new event's notice can be batched: a duplicate needs its own savepoint")
    context = {**context, "account": account, "site_url": settings.SITE_URL}
    with translation.override(account.language):
        subject = render_to_string(f"notifications/email/{kind}_subject.txt", context).strip()
    row = Notice(
        account=account,
        kind=kind,
        recipient=recipient or account.notification_email,
        additional_recipients=[] if recipient else account.billing_mail_recipients[1:],
        subject=subject[:300],
        language=account.language,
        dedupe_key=dedupe_key,
        context=_serialisable(context),
    )
    if writes is not None:
        writes.insert([row], returning=True)
    elif new_event:
        row.save(force_insert=True)
    else:
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:
            return None
    notice = row
    transaction.on_commit(lambda: _notice_committed(notice_id=notice.pk))
    return notice


# Notices committed inside notices_batched(): handed to a worker together when the block ends.
_batch: ContextVar[list[int] | None] = ContextVar("notice_batch", default=None)


def _notice_committed(*, notice_id: int) -> None:
    batch = _batch.get()
    if batch is None:
        notice_enqueue_delivery(notice_id=notice_id)
    else:
        batch.append(notice_id)


@contextmanager
def notices_batched() -> Iterator[None]:
    """Inside this block (a dunning account run), each notice that commits is collected instead of getting a
    task of its own; at the end they go to ONE worker task. The dedupe keys are unchanged, and a notice whose
    task never got queued (broker down, process killed before the end) stays `queued` for the sweep's
    notices_requeue_stale(), as before."""
    token = _batch.set([])
    try:
        yield
    finally:
        ids = _batch.get() or []
        _batch.reset(token)
        if ids:
            notices_enqueue_delivery(notice_ids=ids)


def notices_enqueue_delivery(*, notice_ids: list[int]) -> bool:
    """Hand several notices to one worker task; a broker that is down leaves them queued (see above)."""
    from .tasks import deliver_notices

    try:
        deliver_notices.delay(notice_ids)
    except Exception:
        logger.exception("notices %s could not be queued for delivery; they stay queued", notice_ids)
        return False
    return True


def notice_enqueue_delivery(*, notice_id: int) -> bool:
    """Hand one notice to a worker. A broker that is down must not break the page or job that sent it:
    the notice stays queued and notices_requeue_stale() hands it out again later."""
    from .tasks import deliver_notice

    try:
        deliver_notice.delay(notice_id)
    except Exception:
        logger.exception("notice %s could not be queued for delivery; it stays queued", notice_id)
        return False
    return True


def notices_requeue_stale(*, older_than: dt.datetime, limit: int = 500) -> int:
    """Queued notices whose delivery never ran (the broker was down): queue them again. Delivery is
    idempotent, so a notice that was in fact queued twice is still sent once."""
    ids = list(
        Notice.objects.filter(status=Notice.Status.QUEUED, created_at__lt=older_than)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(notice_enqueue_delivery(notice_id=i) for i in ids)


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _serialisable(context: dict[str, Any]) -> dict[str, Any]:
    """What the mail is rendered from later: scalars, and lists of flat dicts (a grouped mail's rows)."""
    return {
        k: v
        for k, v in context.items()
        if _scalar(v)
        or (isinstance(v, list) and all(isinstance(r, dict) and all(map(_scalar, r.values())) for r in v))
    }


def notice_invoice_numbers(context: dict[str, Any]) -> list[str]:
    """The invoices a mail is about: `invoice` (one number) or `invoices` (numbers joined by ", ")."""
    numbers = [context.get("invoice") or "", *str(context.get("invoices") or "").split(",")]
    return list(dict.fromkeys(n.strip() for n in numbers if n and n.strip()))


class InvoicePdfSource(Protocol):
    def __call__(self, *, account_id: int, numbers: list[str]) -> list[tuple[str, bytes]]: ...


# The invoice PDFs are billing documents (billing/documents.py). They print the invoice's payments, and
# payments send mail through this app, so notifications may not import them: BillingConfig.ready() hands
# the function that makes them to `invoice_pdf_source_register`.
_invoice_pdf_source: list[InvoicePdfSource] = []


def invoice_pdf_source_register(source: InvoicePdfSource) -> None:
    _invoice_pdf_source[:] = [source]


def notice_invoice_attachments(*, notice: Notice) -> list[tuple[str, bytes]]:
    """The PDFs of the invoices a mail is about ("Get invoices in e-mail attachments"), as (filename, data)."""
    numbers = notice_invoice_numbers(notice.context)
    if not numbers:
        return []
    if not _invoice_pdf_source:
        raise ImproperlyConfigured("No invoice PDFs for mail: the 'billing' app is not installed.")
    return _invoice_pdf_source[0](account_id=notice.account_id, numbers=numbers)


def _notice_message(*, notice: Notice, context: dict[str, Any] | None = None) -> EmailMultiAlternatives:
    """The mail of one notice, rendered in its language (text and HTML, and the invoices' PDFs when the
    account asked for attachments)."""
    context = {
        **notice.context,
        **(context or {}),
        "account": notice.account,
        "site_url": settings.SITE_URL,
        "notice": notice,
    }
    with translation.override(notice.language):
        text = render_to_string(f"notifications/email/{notice.kind}.txt", context)
        html = render_to_string(f"notifications/email/{notice.kind}.html", context)
    message = EmailMultiAlternatives(
        subject=notice.subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notice.recipient, *notice.additional_recipients],
    )
    message.attach_alternative(html, "text/html")
    if notice.account.invoice_email_attachments:
        for filename, data in notice_invoice_attachments(notice=notice):
            message.attach(filename, data, "application/pdf")
    return message


def notice_deliver(*, notice_id: int, context: dict[str, Any] | None = None) -> Notice:
    """Render and send one queued notice. Safe to call again: a sent notice is not sent twice."""
    with transaction.atomic():
        notice = Notice.objects.select_for_update().select_related("account").get(pk=notice_id)
        if notice.status == Notice.Status.SENT:
            return notice
        message = _notice_message(notice=notice, context=context)
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


def notices_deliver(*, notice_ids: list[int]) -> list[int]:
    """Send several queued notices (an account run's receipts and failure mails) in one transaction and
    over one mail connection: one locked read of all of them, one SMTP session, one UPDATE marking the
    sent ones, instead of a transaction, a connection and two statements for each.

    Safe to call again, like notice_deliver: a sent notice is skipped. A notice whose mail fails is
    marked failed (with the error) and its id returned, for the caller to retry on its own; the others
    are still sent.
    """
    from django.core.mail import mailers

    if not notice_ids:
        return []
    failed: list[int] = []
    with transaction.atomic():
        notices = list(
            Notice.objects.select_for_update(of=("self",))
            .select_related("account")
            .filter(pk__in=notice_ids)
            .exclude(status=Notice.Status.SENT)
            .order_by("pk")
        )
        if not notices:
            return []
        sent: list[int] = []
        with mailers.default as mailer:
            for notice in notices:
                try:
                    mailer.send_messages([_notice_message(notice=notice)])
                except Exception as exc:
                    logger.exception("notice %s could not be sent", notice.pk)
                    Notice.objects.filter(pk=notice.pk).update(
                        status=Notice.Status.FAILED, error=str(exc)[:2000]
                    )
                    failed.append(notice.pk)
                else:
                    sent.append(notice.pk)
        if sent:
            Notice.objects.filter(pk__in=sent).update(
                status=Notice.Status.SENT, sent_at=timezone.now(), error=""
            )
    return failed
