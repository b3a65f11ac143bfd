"""Reads for the support console: search, the account view, its timeline and the dashboard.

Every selector runs a fixed number of queries, whatever the size of the account or the database.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import BillingAccount, Membership
from audit.models import AuditEvent
from notifications.models import Notice
from payments.gateways.base import decline_message
from payments.models import PaymentAllocation, PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice, Subscription

from .models import SupportNote

SEARCH_LIMIT = 50
LIST_LIMIT = 50
TIMELINE_PAGE_SIZE = 50

PAYMENT_REFERENCE_RE = re.compile(r"^PAY-?(\d{1,12})$", re.IGNORECASE)
INVOICE_NUMBER_RE = re.compile(r"^[A-Z]{2,5}-?[0-9][0-9A-Z-]*$", re.IGNORECASE)
LAST4_RE = re.compile(r"^\d{4}$")
DIGITS_RE = re.compile(r"^\d{1,18}$")
DOMAIN_RE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$", re.IGNORECASE)

# Worst first: what a caller most likely phones about. Cancelled and deleted rank below active,
# because an old cancelled subscription says nothing about the account's standing today.
_STATUS_RANK = {
    Subscription.Status.DISABLED: 5,
    Subscription.Status.PAST_DUE: 4,
    Subscription.Status.ACTIVE: 3,
    Subscription.Status.CANCELLED: 2,
    Subscription.Status.DELETED: 1,
}
_RANK_STATUS = {rank: status for status, rank in _STATUS_RANK.items()}


# -- search ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    account: BillingAccount
    status: Subscription.Status | None
    outstanding_minor: int
    matched_by: tuple[str, ...]

    @property
    def matched_by_labels(self) -> list[str]:
        return [str(KEY_LABELS.get(key, key)) for key in self.matched_by]

    @property
    def status_label(self) -> str:
        return str(self.status.label) if self.status else _("No subscriptions")


# Keys that name one thing exactly (B-tree lookups), and the partial matches tried only when none
# of them found anything. A full e-mail or domain shares trigrams such as "exa" and "ple" with most
# rows, so answering it from the unique index first keeps it fast at a million accounts.
EXACT_KEYS = ("payment_reference", "invoice_number", "card_last4", "subscription_id", "email", "domain")
PARTIAL_KEYS = ("email_partial", "name_domain")


KEY_LABELS = {
    "payment_reference": gettext_lazy("payment reference"),
    "invoice_number": gettext_lazy("invoice number"),
    "card_last4": gettext_lazy("card last4"),
    "subscription_id": gettext_lazy("subscription id"),
    "email": gettext_lazy("member e-mail"),
    "domain": gettext_lazy("domain"),
    "email_partial": gettext_lazy("member e-mail (partial)"),
    "name_domain": gettext_lazy("name or domain"),
}


def search_keys(query: str) -> list[str]:
    """Which lookups a query is worth, exact ones first. Name/domain is the fallback for anything
    that is not an e-mail address."""
    q = query.strip()
    keys: list[str] = []
    if PAYMENT_REFERENCE_RE.match(q):
        keys.append("payment_reference")
    if INVOICE_NUMBER_RE.match(q) and any(c.isdigit() for c in q):
        keys.append("invoice_number")
    if LAST4_RE.match(q):
        keys.append("card_last4")
    if DIGITS_RE.match(q):
        keys.append("subscription_id")
    if "@" in q:
        keys += ["email", "email_partial"]
    else:
        if DOMAIN_RE.match(q):
            keys.append("domain")
        # One letter would match most of the database; a name needs at least two.
        if len(q) >= 2:
            keys.append("name_domain")
    return keys


def _account_ids_for_key(key: str, q: str) -> QuerySet[Any, Any]:
    """One bounded, index-served query per key, returning billing account ids.

    No ORDER BY (hence .order_by()): with a LIMIT and no sort PostgreSQL stops at the 50th match
    instead of sorting every account whose name contains "ltd".
    """
    if key == "email":
        # Addresses are stored lower-case (UserManager normalises them).
        qs: QuerySet[Any, Any] = Membership.objects.filter(user__email=q.lower()).values_list(
            "account_id", flat=True
        )
    elif key == "email_partial":
        qs = Membership.objects.filter(user__email__icontains=q).values_list("account_id", flat=True)
    elif key == "domain":
        qs = BillingAccount.objects.filter(domain=q.lower()).values_list("pk", flat=True)
    elif key == "payment_reference":
        match = PAYMENT_REFERENCE_RE.match(q)
        assert match
        qs = PaymentAttempt.objects.filter(pk=int(match.group(1))).values_list("account_id", flat=True)
    elif key == "invoice_number":
        qs = Invoice.objects.filter(number__in={q, q.upper()}).values_list("account_id", flat=True)
    elif key == "card_last4":
        qs = PaymentMethod.objects.filter(last4=q).values_list("account_id", flat=True)
    elif key == "subscription_id":
        qs = Subscription.objects.filter(pk=int(q)).values_list("account_id", flat=True)
    else:
        qs = BillingAccount.objects.filter(Q(name__icontains=q) | Q(domain__icontains=q)).values_list(
            "pk", flat=True
        )
    return qs.order_by()[:SEARCH_LIMIT]


def _with_standing(qs: QuerySet[BillingAccount]) -> QuerySet[BillingAccount]:
    """Annotate the worst subscription state and the past-due balance, as correlated subqueries
    (a join of both would multiply rows and add subscriptions x invoices)."""
    rank = Case(
        *(When(status=status, then=Value(r)) for status, r in _STATUS_RANK.items()),
        default=Value(0),
        output_field=IntegerField(),
    )
    worst = (
        Subscription.objects.filter(account=OuterRef("pk"))
        .order_by()
        .values("account")
        .annotate(worst=Max(rank))
        .values("worst")
    )
    outstanding = (
        Invoice.objects.filter(account=OuterRef("pk"), status=Invoice.Status.PAST_DUE)
        .order_by()
        .values("account")
        .annotate(owed=Sum("amount_due_minor"))
        .values("owed")
    )
    return qs.annotate(
        worst_rank=Subquery(worst, output_field=IntegerField()),
        outstanding_minor=Coalesce(
            Subquery(outstanding, output_field=BigIntegerField()), Value(0), output_field=BigIntegerField()
        ),
    )


@functools.cache
def _accounts_with_standing() -> QuerySet[BillingAccount]:
    """Built once: resolving the annotations is a third of the search's Python time. Every use
    clones it (filter/order_by), so sharing it is safe."""
    return _with_standing(BillingAccount.objects.all())


def support_search(*, query: str) -> list[SearchResult]:
    """Accounts matching a name, domain, member e-mail, invoice number, subscription id, payment
    reference (PAY-00000042) or card last4. One query per applicable key, then one for the rows;
    partial matches only when no exact key found anything."""
    q = query.strip()
    matched: dict[int, list[str]] = {}
    keys = search_keys(q)
    for tier in (EXACT_KEYS, PARTIAL_KEYS):
        for key in (k for k in keys if k in tier):
            for account_id in _account_ids_for_key(key, q):
                matched.setdefault(account_id, []).append(key)
        if matched:
            break
    if not matched:
        return []
    ids = list(matched)[:SEARCH_LIMIT]
    accounts = _accounts_with_standing().filter(pk__in=ids).order_by("name", "pk")
    return [
        SearchResult(
            account=account,
            status=_RANK_STATUS.get(account.worst_rank),  # type: ignore[attr-defined]
            outstanding_minor=account.outstanding_minor,  # type: ignore[attr-defined]
            matched_by=tuple(matched[account.pk]),
        )
        for account in accounts
    ]


# -- the account view ---------------------------------------------------------------------------


@dataclass
class AccountOverview:
    account: BillingAccount
    status: Subscription.Status | None
    outstanding_minor: int
    members: list[Membership]
    subscriptions: list[Subscription]
    invoices: list[Invoice]
    invoice_count: int
    payment_methods: list[PaymentMethod]
    attempts: list[PaymentAttempt]
    attempt_count: int
    notices: list[Notice]
    notice_count: int
    notes: list[SupportNote] = field(default_factory=list)

    @property
    def payable_invoices(self) -> list[Invoice]:
        return [i for i in self.invoices if i.is_payable]

    @property
    def status_label(self) -> str:
        return str(self.status.label) if self.status else _("No subscriptions")


def support_account_get(*, account_id: int) -> BillingAccount:
    """The account with its standing, or 404."""
    return get_object_or_404(_accounts_with_standing(), pk=account_id)


def support_account_overview(*, account: BillingAccount) -> AccountOverview:
    """Everything support sees on one page. Lists show the newest LIST_LIMIT rows; the timeline
    below pages through all of it. Counts come with the lists so the page can say "50 of 1,204"."""
    invoice_count = Invoice.objects.filter(account=account).count()
    attempt_count = PaymentAttempt.objects.filter(account=account).count()
    notice_count = Notice.objects.filter(account=account).count()
    attempts = list(
        PaymentAttempt.objects.filter(account=account)
        .select_related("payment_method", "initiated_by")
        .order_by("-created_at", "-pk")[:LIST_LIMIT]
    )
    for attempt in attempts:
        attempt.decline_text = decline_message(attempt.decline_code) if attempt.decline_code else ""  # type: ignore[attr-defined]
    return AccountOverview(
        account=account,
        status=_RANK_STATUS.get(getattr(account, "worst_rank", None) or 0),
        outstanding_minor=getattr(account, "outstanding_minor", 0) or 0,
        members=list(account.memberships.select_related("user").order_by("role", "user__email")),
        subscriptions=list(
            Subscription.objects.filter(account=account)
            .select_related("product", "payment_method")
            .order_by("product__name", "pk")
        ),
        invoices=list(Invoice.objects.filter(account=account).order_by("-issued_on", "-pk")[:LIST_LIMIT]),
        invoice_count=invoice_count,
        # Only what support may see of a card: brand, last4, expiry, status. Never the token.
        payment_methods=list(
            PaymentMethod.objects.filter(account=account)
            .only(
                "pk",
                "account_id",
                "brand",
                "last4",
                "exp_month",
                "exp_year",
                "status",
                "is_default",
                "last_decline_code",
                "last_declined_at",
            )
            .order_by("-is_default", "pk")
        ),
        attempts=attempts,
        attempt_count=attempt_count,
        notices=list(Notice.objects.filter(account=account).order_by("-created_at", "-pk")[:LIST_LIMIT]),
        notice_count=notice_count,
        notes=list(
            SupportNote.objects.filter(account=account)
            .select_related("author")
            .order_by("-created_at", "-pk")[:LIST_LIMIT]
        ),
    )


# -- the merged timeline ------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    kind: str  # "audit" | "attempt" | "notice" | "note" (shown through kind_label, never raw)
    at: dt.datetime
    title: str
    detail: str
    actor: str
    obj: Any

    @property
    def kind_label(self) -> str:
        return str(TIMELINE_KIND_LABELS.get(self.kind, self.kind))


TIMELINE_KIND_LABELS = {
    "audit": gettext_lazy("Change"),
    "attempt": gettext_lazy("Payment"),
    "notice": gettext_lazy("Mail"),
    "note": gettext_lazy("Note"),
}
# Audit event names are for code and queries; people read these (support.account_viewed is not a sentence).
AUDIT_ACTION_LABELS = {
    "account.notifications_changed": gettext_lazy("Notification settings changed"),
    "dunning.stopped": gettext_lazy("Automatic retries stopped"),
    "invoice.renewal_issued": gettext_lazy("Renewal invoice issued"),
    "payment.canceled": gettext_lazy("Payment canceled"),
    "payment.declined": gettext_lazy("Payment declined"),
    "payment.overpaid": gettext_lazy("Payment larger than the balance"),
    "payment.succeeded": gettext_lazy("Payment received"),
    "payment.unknown": gettext_lazy("Payment outcome unknown"),
    "payment_method.added": gettext_lazy("Payment method added"),
    "payment_method.expiry_changed": gettext_lazy("Card expiry date changed"),
    "subscription.cancelled": gettext_lazy("Subscription cancelled"),
    "subscription.data_deleted": gettext_lazy("Subscription data deleted"),
    "subscription.disabled": gettext_lazy("Subscription disabled"),
    "subscription.past_due": gettext_lazy("Subscription past due"),
    "subscription.reactivated": gettext_lazy("Subscription reactivated"),
    "support.account_viewed": gettext_lazy("Account viewed by support"),
    "support.bank_transfer_recorded": gettext_lazy("Bank transfer recorded"),
    "support.grace_extended": gettext_lazy("Grace period extended"),
    "support.note_added": gettext_lazy("Support note added"),
    "support.retry_requested": gettext_lazy("Payment retried by support"),
    "support.searched": gettext_lazy("Support search"),
}


def audit_action_label(action: str) -> str:
    """A readable name for an audit event; an unknown one is spelled out ("foo.bar_baz" → "Foo bar baz")."""
    label = AUDIT_ACTION_LABELS.get(action)
    if label is not None:
        return str(label)
    return action.replace(".", " ").replace("_", " ").strip().capitalize()


@dataclass(frozen=True)
class TimelinePage:
    entries: list[TimelineEntry]
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def _timeline_keys(account_id: int) -> QuerySet[Any, Any]:
    """(kind, id, created_at) of every event of the account, from four tables, as one UNION ALL."""

    def keys(model: Any, kind: str) -> QuerySet[Any, Any]:
        return (
            model.objects.filter(account_id=account_id)
            .order_by()
            .annotate(entry_kind=Value(kind, output_field=CharField()))
            .values_list("entry_kind", "pk", "created_at")
        )

    return keys(AuditEvent, "audit").union(
        keys(PaymentAttempt, "attempt"), keys(Notice, "notice"), keys(SupportNote, "note"), all=True
    )


def support_timeline(*, account: BillingAccount, page: int = 1) -> TimelinePage:
    """One page of everything that happened to the account, newest first.

    Five queries for any page and any account: the merged keys, then each kind's rows by id.
    """
    page = max(1, page)
    offset = (page - 1) * TIMELINE_PAGE_SIZE
    rows = list(
        _timeline_keys(account.pk).order_by("-created_at", "-pk")[offset : offset + TIMELINE_PAGE_SIZE + 1]
    )
    has_next = len(rows) > TIMELINE_PAGE_SIZE
    rows = rows[:TIMELINE_PAGE_SIZE]
    ids: dict[str, list[int]] = {"audit": [], "attempt": [], "notice": [], "note": []}
    for kind, pk, _created in rows:
        ids[kind].append(pk)
    audits = AuditEvent.objects.select_related("actor").in_bulk(ids["audit"]) if ids["audit"] else {}
    attempts = (
        PaymentAttempt.objects.select_related("payment_method", "initiated_by").in_bulk(ids["attempt"])
        if ids["attempt"]
        else {}
    )
    notices = Notice.objects.in_bulk(ids["notice"]) if ids["notice"] else {}
    notes = SupportNote.objects.select_related("author").in_bulk(ids["note"]) if ids["note"] else {}
    entries: list[TimelineEntry] = []
    for kind, pk, created in rows:
        if kind == "audit" and pk in audits:
            event = audits[pk]
            entries.append(
                TimelineEntry(
                    "audit",
                    created,
                    audit_action_label(event.action),
                    event.message,
                    event.actor_label,
                    event,
                )
            )
        elif kind == "attempt" and pk in attempts:
            attempt = attempts[pk]
            detail = f"{attempt.amount} · {attempt.get_status_display()}"
            if attempt.decline_code:
                detail += f" · {decline_message(attempt.decline_code)}"
            if attempt.payment_method:
                detail += f" · {attempt.payment_method.label}"
            if attempt.reference_note:
                detail += " · " + _("ref. %(reference)s") % {"reference": attempt.reference_note}
            entries.append(
                TimelineEntry(
                    "attempt",
                    created,
                    f"{attempt.reference} {attempt.get_source_display()}",
                    detail,
                    attempt.initiated_by_label,
                    attempt,
                )
            )
        elif kind == "notice" and pk in notices:
            notice = notices[pk]
            entries.append(
                TimelineEntry(
                    "notice",
                    created,
                    _("Mail: %(kind)s") % {"kind": notice.get_kind_display()},
                    f"{notice.subject} → {notice.recipient} ({notice.get_status_display()})",
                    "billing",
                    notice,
                )
            )
        elif kind == "note" and pk in notes:
            note = notes[pk]
            author = note.author.email if note.author else ""
            entries.append(TimelineEntry("note", created, _("Support note"), note.body, author, note))
    return TimelinePage(entries=entries, page=page, has_next=has_next)


# -- for the actions ------------------------------------------------------------------------------


def support_payable_invoices(*, account_id: int) -> QuerySet[Invoice]:
    return Invoice.objects.filter(
        account_id=account_id, status__in=Invoice.PAYABLE_STATUSES, amount_due_minor__gt=0
    ).order_by("due_on", "issued_on", "pk")


def in_flight_invoice_ids(*, invoice_ids: list[int]) -> set[int]:
    return set(
        PaymentAllocation.objects.filter(
            invoice_id__in=invoice_ids, attempt__status__in=PaymentAttempt.IN_FLIGHT
        ).values_list("invoice_id", flat=True)
    )
