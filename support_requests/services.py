"""Writes on support requests. Each is audited in its own transaction; replies mail the customer.

A request is created, replied to and closed under a row lock on the request (or the account row for a
new one), so a reply and a close racing each other leave one consistent state.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from audit.services import audit_record
from notifications.services import notice_send
from payments.models import PaymentAttempt
from subscriptions.models import Invoice, Subscription

from .models import SupportRequest, SupportRequestMessage

SUPPORT_STAFF_GROUP = "Support staff"
SUBJECT_MAX_LENGTH = 120


class SupportRequestError(Exception):
    """Input a request cannot take; the message is for the person."""


def support_staff_grant_reply() -> None:
    """Add reply_support_request to the "Support staff" group (support's post_migrate hook creates it)."""
    group = Group.objects.filter(name=SUPPORT_STAFF_GROUP).first()
    if group is None:
        return
    content_type = ContentType.objects.get_for_model(SupportRequest)
    permission, _created = Permission.objects.get_or_create(
        content_type=content_type,
        codename="reply_support_request",
        defaults={"name": "Can reply to and close customers' support requests"},
    )
    group.permissions.add(permission)


def _clean_text(text: str, *, max_length: int, empty: str) -> str:
    text = (text or "").strip()
    if not text:
        raise SupportRequestError(empty)
    if len(text) > max_length:
        raise SupportRequestError(
            _("Keep it under %(n)d characters (now %(len)d).") % {"n": max_length, "len": len(text)}
        )
    return text


def _customer_url(request: SupportRequest) -> str:
    path = reverse(
        "support_requests:detail", kwargs={"account_id": request.account_id, "request_id": request.pk}
    )
    return settings.SITE_URL.rstrip("/") + path


def support_request_open(
    *,
    membership: Membership,
    about: str,
    subject: str,
    body: str,
    form_key: str,
    invoice: Invoice | None = None,
    payment_attempt: PaymentAttempt | None = None,
    subscription: Subscription | None = None,
) -> SupportRequest:
    """Open a request about the account or one of its invoices, payments or subscriptions.

    The objects must belong to the member's account (the view looked them up scoped to it; checked
    again here). A form submitted twice (same form_key) returns the first request.
    """
    if not membership.can_open_support_requests:
        raise PermissionDenied("readers cannot open support requests")
    if about == SupportRequest.About.SUBSCRIPTION and not membership.can_view_subscriptions:
        raise PermissionDenied("invoice managers do not see subscriptions")
    subject = _clean_text(
        subject, max_length=SUBJECT_MAX_LENGTH, empty=_("Say in a few words what it is about.")
    )
    body = _clean_text(
        body, max_length=settings.SUPPORT_REQUEST_MAX_LENGTH, empty=_("Describe the problem or question.")
    )
    account_id = membership.account_id
    for obj in (invoice, payment_attempt, subscription):
        if obj is not None and obj.account_id != account_id:
            raise PermissionDenied("object of another account")
    # Keys are scoped to the account (and messages to their request), so nobody can guess into another's.
    form_key = f"{account_id}:{form_key}"
    existing = SupportRequest.objects.filter(form_key=form_key, account_id=account_id).first()
    if existing is not None:
        return existing
    now = timezone.now()
    try:
        with transaction.atomic():
            request = SupportRequest.objects.create(
                account_id=account_id,
                opened_by=membership.user,
                about=about,
                invoice=invoice,
                payment_attempt=payment_attempt,
                subscription=subscription,
                subject=subject,
                form_key=form_key,
                waiting_since=now,
            )
            SupportRequestMessage.objects.create(
                request=request, author=membership.user, body=body, form_key=f"{form_key}:0"
            )
            audit_record(
                account=membership.account,
                actor=membership.user,
                action="support_request.opened",
                message=f"{request.reference} opened: {subject}",
                target=request,
                data={
                    "about": about,
                    "invoice": invoice.number if invoice else None,
                    "payment": payment_attempt.reference if payment_attempt else None,
                    "subscription": subscription.pk if subscription else None,
                },
            )
    except IntegrityError:
        # The same form a moment ago, in another request: that one won.
        return SupportRequest.objects.get(form_key=form_key, account_id=account_id)
    return request


def support_request_customer_reply(
    *, membership: Membership, request_id: int, body: str, form_key: str
) -> SupportRequestMessage:
    """The customer writes again; the request waits for support (again) from now. A closed request reopens."""
    if not membership.can_open_support_requests:
        raise PermissionDenied("readers cannot write to support")
    body = _clean_text(body, max_length=settings.SUPPORT_REQUEST_MAX_LENGTH, empty=_("Write your reply."))
    form_key = f"{request_id}:{form_key}"
    existing = SupportRequestMessage.objects.filter(form_key=form_key, request_id=request_id).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        request = SupportRequest.objects.select_for_update().get(
            pk=request_id, account_id=membership.account_id
        )
        message = SupportRequestMessage.objects.create(
            request=request, author=membership.user, body=body, form_key=form_key
        )
        before = request.status
        request.status = SupportRequest.Status.OPEN
        request.closed_at = None
        if request.waiting_since is None:
            request.waiting_since = message.created_at
        request.save(update_fields=["status", "closed_at", "waiting_since", "updated_at"])
        audit_record(
            account=membership.account,
            actor=membership.user,
            action="support_request.customer_replied",
            message=f"{request.reference}: the customer replied"
            + (" and reopened it" if before == SupportRequest.Status.CLOSED else ""),
            target=request,
            data={"message": message.pk, "before": before},
        )
    return message


def _require_support(actor: Any) -> None:
    if not (actor.is_staff and actor.has_perm("support_requests.reply_support_request")):
        raise PermissionDenied("reply_support_request is needed")


def support_request_reply(
    *, request_id: int, actor: User, body: str, form_key: str, close: bool = False
) -> SupportRequestMessage | None:
    """Support answers (and may close in the same step). The customer who opened it gets a mail per reply,
    in the account's language. With `close` and no text, only closes."""
    _require_support(actor)
    body = (body or "").strip()
    if not body and not close:
        raise SupportRequestError(_("Write a reply, or close the request."))
    if body:
        body = _clean_text(body, max_length=settings.SUPPORT_REQUEST_MAX_LENGTH, empty="")
    form_key = f"{request_id}:{form_key}"
    existing = SupportRequestMessage.objects.filter(form_key=form_key, request_id=request_id).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        request = (
            # Lock the request row only (opened_by is an outer join, which PostgreSQL will not lock).
            SupportRequest.objects.select_for_update(of=("self",))
            .select_related("account", "opened_by")
            .get(pk=request_id)
        )
        now = timezone.now()
        message = None
        if body:
            message = SupportRequestMessage.objects.create(
                request=request, author=actor, from_support=True, body=body, form_key=form_key
            )
            audit_record(
                account=request.account,
                actor=actor,
                action="support_request.replied",
                message=f"{request.reference}: support replied",
                target=request,
                data={"message": message.pk},
            )
            recipient = request.opened_by.email if request.opened_by else request.account.notification_email
            notice_send(
                account=request.account,
                kind="support_reply",
                dedupe_key=f"support_reply:{message.pk}",
                recipient=recipient,
                context={
                    "reference": request.reference,
                    "subject": request.subject,
                    "reply": body,
                    "closed": close,
                    "request_url": _customer_url(request),
                },
            )
        request.waiting_since = None
        if close:
            if request.status != SupportRequest.Status.CLOSED:
                audit_record(
                    account=request.account,
                    actor=actor,
                    action="support_request.closed",
                    message=f"{request.reference}: closed by support",
                    target=request,
                    data={},
                )
            request.status = SupportRequest.Status.CLOSED
            request.closed_at = now
        else:
            request.status = SupportRequest.Status.ANSWERED
        request.save(update_fields=["status", "closed_at", "waiting_since", "updated_at"])
    return message


def support_request_viewed(*, request: SupportRequest, actor: User, ip_address: str | None = None) -> None:
    """Support staff read customer data only with a trace, like support.account_viewed."""
    audit_record(
        account=request.account,
        actor=actor,
        action="support_request.viewed",
        message=f"{request.reference} opened in the support console",
        target=request,
        ip_address=ip_address,
    )
