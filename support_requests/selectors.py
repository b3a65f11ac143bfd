"""Reads of support requests: the customer's list and thread, the support queue."""

from __future__ import annotations

from django.db.models import F, QuerySet
from django.http import Http404

from accounts.models import Membership

from .models import SupportRequest, SupportRequestMessage

QUEUE_SORTS = ("waiting", "newest")


def support_requests_for_member(*, membership: Membership) -> QuerySet[SupportRequest]:
    """Every request of the member's account, newest first. Invoice managers, who see no subscriptions,
    do not see requests about one."""
    qs = SupportRequest.objects.filter(account_id=membership.account_id).select_related(
        "opened_by", "invoice", "payment_attempt", "subscription__product"
    )
    if not membership.can_view_subscriptions:
        qs = qs.exclude(about=SupportRequest.About.SUBSCRIPTION)
    return qs.order_by("-created_at", "-pk")


def support_request_for_member(*, membership: Membership, request_id: int) -> SupportRequest:
    """One request of the member's account, or 404 (another account's request is as unknown as a missing one)."""
    request = support_requests_for_member(membership=membership).filter(pk=request_id).first()
    if request is None:
        raise Http404
    return request


def support_request_messages(*, request: SupportRequest) -> QuerySet[SupportRequestMessage]:
    return (
        SupportRequestMessage.objects.filter(request=request)
        .select_related("author")
        .order_by("created_at", "pk")
    )


def support_queue(*, sort: str, include_closed: bool = False) -> QuerySet[SupportRequest]:
    """The support console's queue. `waiting`: requests waiting for support, the longest-waiting first;
    `newest`: every request still open or answered (or all with include_closed), newest first."""
    qs = SupportRequest.objects.select_related("account", "opened_by", "invoice", "payment_attempt")
    if sort == "waiting":
        return qs.filter(waiting_since__isnull=False).order_by(F("waiting_since").asc(), "pk")
    if not include_closed:
        qs = qs.exclude(status=SupportRequest.Status.CLOSED)
    return qs.order_by("-created_at", "-pk")


def support_request_for_staff(*, request_id: int) -> SupportRequest:
    request = (
        SupportRequest.objects.select_related(
            "account", "opened_by", "invoice", "payment_attempt", "subscription__product"
        )
        .filter(pk=request_id)
        .first()
    )
    if request is None:
        raise Http404
    return request
