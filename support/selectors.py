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
    Count,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    StringAgg,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Concat
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import BillingAccount, Membership, Role
from audit.models import AuditEvent
from billing_portal.dates import format_date
from notifications.models import Notice
from payments.gateways.base import decline_message
from payments.models import CreditNote, Dispute, PaymentAllocation, PaymentAttempt, PaymentMethod, Refund
from payments.selectors import payments_in_flight
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
    Subscription.Status.DISABLED: 6,
    Subscription.Status.WARNED: 5,
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


def _account_ids_for_key(key: str, q: Any) -> QuerySet[Any, Any]:
    """One bounded, index-served query per key, returning billing account ids.

    No ORDER BY (hence .order_by()): with a LIMIT and no sort PostgreSQL stops at the 50th match
    instead of sorting every account whose name contains "ltd". `q` is what the key looks for, already
    parsed (an int for ids, the e-mail and domain lower-cased): see _key_value().
    """
    if key == "email":
        qs: QuerySet[Any, Any] = Membership.objects.filter(user__email=q).values_list("account_id", flat=True)
    elif key == "email_partial":
        qs = Membership.objects.filter(user__email__icontains=q).values_list("account_id", flat=True)
    elif key == "domain":
        qs = BillingAccount.objects.filter(domain=q).values_list("pk", flat=True)
    elif key == "payment_reference":
        qs = PaymentAttempt.objects.filter(pk=q).values_list("account_id", flat=True)
    elif key == "invoice_number":
        # As typed and upper-cased (two parameters always, so the compiled statement fits every query).
        qs = Invoice.objects.filter(Q(number=q) | Q(number=q.upper())).values_list("account_id", flat=True)
    elif key == "card_last4":
        qs = PaymentMethod.objects.filter(last4=q).values_list("account_id", flat=True)
    elif key == "subscription_id":
        qs = Subscription.objects.filter(pk=q).values_list("account_id", flat=True)
    else:
        qs = BillingAccount.objects.filter(Q(name__icontains=q) | Q(domain__icontains=q)).values_list(
            "pk", flat=True
        )
    return qs.order_by()[:SEARCH_LIMIT]


def _key_value(key: str, q: str) -> Any:
    if key in ("email", "domain"):
        return q.lower()  # stored lower-case (UserManager normalises addresses)
    if key == "payment_reference":
        match = PAYMENT_REFERENCE_RE.match(q)
        assert match
        return int(match.group(1))
    if key == "subscription_id":
        return int(q)
    return q


class _CompiledSearch:
    """A search statement compiled once, run with new values: the ORM builds the same SQL for every
    query of a key, and building it was most of the selector's Python time (~1-2 ms a search).

    The queryset is compiled with marker values; at run time each parameter that is (or, for LIKE
    patterns, contains) a marker gets the real value, escaped the way the lookup escapes it."""

    STR = "zq7markerq7z"
    INT = 987_654_321_987

    def __init__(self, queryset: QuerySet[Any, Any]) -> None:
        self.sql, params = queryset.query.sql_with_params()
        self.params = tuple(params)

    def run(self, value: Any, *, ids: list[int] | None = None) -> list[tuple[Any, ...]]:
        from django.db import connection

        params: list[Any] = []
        for p in self.params:
            if isinstance(p, int) and not isinstance(p, bool) and ids is not None and p >= self.INT:
                params.append(ids[p - self.INT])
            elif p in (self.INT, self.STR):
                params.append(value)
            elif p == self.STR.upper():
                params.append(value.upper())
            elif isinstance(p, str) and self.STR in p:
                params.append(p.replace(self.STR, connection.ops.prep_for_like_query(value)))
            else:
                params.append(p)
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            return cursor.fetchall()


@functools.cache
def _compiled_key(key: str, vendor: str) -> _CompiledSearch:
    marker = _CompiledSearch.INT if key in ("payment_reference", "subscription_id") else _CompiledSearch.STR
    return _CompiledSearch(_account_ids_for_key(key, marker))


@functools.cache
def _compiled_rows(count: int, vendor: str) -> tuple[_CompiledSearch, tuple[str, ...]]:
    """The result rows for `count` ids (one compiled statement per count, at most SEARCH_LIMIT)."""
    ids = [_CompiledSearch.INT + i for i in range(count)]
    qs = _accounts_with_standing().filter(pk__in=ids).order_by("name", "pk")
    fields = tuple(f.attname for f in BillingAccount._meta.concrete_fields)
    return _CompiledSearch(qs), fields


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
    partial matches only when no exact key found anything. The statements are compiled once per key
    (_CompiledSearch), so a search costs its SQL and little Python besides."""
    from django.db import connection

    q = query.strip()
    matched: dict[int, list[str]] = {}
    keys = search_keys(q)
    vendor = connection.vendor
    for tier in (EXACT_KEYS, PARTIAL_KEYS):
        for key in keys:
            if key in tier:
                for (account_id,) in _compiled_key(key, vendor).run(_key_value(key, q)):
                    matched.setdefault(account_id, []).append(key)
        if matched:
            break
    if not matched:
        return []
    ids = list(matched)[:SEARCH_LIMIT]
    compiled, fields = _compiled_rows(len(ids), vendor)
    n = len(fields)
    results = []
    for row in compiled.run(None, ids=ids):
        account = BillingAccount.from_db(connection.alias, fields, row[:n])
        worst_rank, outstanding = row[n], row[n + 1]
        results.append(
            SearchResult(
                account=account,
                status=_RANK_STATUS.get(worst_rank),
                outstanding_minor=int(outstanding or 0),
                matched_by=tuple(matched[account.pk]),
            )
        )
    return results


# -- the account view ---------------------------------------------------------------------------


@dataclass
class AccountOverview:
    account: BillingAccount
    status: Subscription.Status | None
    outstanding_minor: int
    members: list[MemberLine]
    subscriptions: list[Subscription]
    subscription_count: int
    invoices: list[Invoice]
    invoice_count: int
    payment_methods: list[PaymentMethod]
    attempts: list[PaymentAttempt]
    attempt_count: int
    notices: list[Notice]
    notice_count: int
    notes: list[SupportNote] = field(default_factory=list)
    note_count: int = 0
    audit_count: int = 0
    refunds: list[Refund] = field(default_factory=list)
    credit_notes: list[CreditNote] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)

    @property
    def open_disputes(self) -> list[Dispute]:
        return [d for d in self.disputes if d.status == Dispute.Status.OPEN]

    @property
    def payable_invoices(self) -> list[Invoice]:
        return [i for i in self.invoices if i.is_payable]

    @property
    def status_label(self) -> str:
        return str(self.status.label) if self.status else _("No subscriptions")


@dataclass(frozen=True)
class MemberLine:
    email: str
    role: str

    @property
    def role_label(self) -> str:
        return str(Role(self.role).label) if self.role in Role.values else self.role


def _count(model: Any) -> Subquery:
    return Subquery(
        model.objects.filter(account=OuterRef("pk"))
        .order_by()
        .values("account")
        .annotate(n=Count("pk"))
        .values("n"),
        output_field=IntegerField(),
    )


def _member_lines(aggregated: str | None) -> list[MemberLine]:
    """Members from support_account_get's "e-mail<TAB>role" lines, by role then e-mail (SQLite cannot
    order inside an aggregate, so the order is made here)."""
    lines = [line.split("\t", 1) for line in (aggregated or "").split("\n") if "\t" in line]
    return [MemberLine(email=email, role=role) for email, role in sorted(lines, key=lambda x: (x[1], x[0]))]


def support_account_get(*, account_id: int, with_overview: bool = False) -> BillingAccount:
    """The account with its standing, or 404. with_overview adds, in the same query, how many rows
    each list of the account view has and its members (as "e-mail<TAB>role" lines)."""
    qs = _accounts_with_standing()
    if with_overview:
        members = (
            Membership.objects.filter(account=OuterRef("pk"))
            .order_by()
            .values("account")
            .annotate(
                lines=StringAgg(
                    Concat("user__email", Value("\t"), "role", output_field=CharField()),
                    delimiter=Value("\n"),
                )
            )
            .values("lines")
        )
        qs = qs.annotate(
            n_subscriptions=_count(Subscription),
            n_invoices=_count(Invoice),
            n_attempts=_count(PaymentAttempt),
            n_notices=_count(Notice),
            n_notes=_count(SupportNote),
            n_audit=_count(AuditEvent),
            n_refunds=_count(Refund),
            n_credit_notes=_count(CreditNote),
            n_disputes=_count(Dispute),
            member_lines=Subquery(members, output_field=CharField()),
        )
    return get_object_or_404(qs, pk=account_id)


def support_subscriptions(*, account: BillingAccount) -> QuerySet[Subscription]:
    """The account's subscriptions, worst standing first (what a caller phones about), then by product."""
    rank = Case(
        *(When(status=status, then=Value(r)) for status, r in _STATUS_RANK.items()),
        default=Value(0),
        output_field=IntegerField(),
    )
    return (
        Subscription.objects.filter(account=account)
        .select_related("product", "payment_method")
        .annotate(rank=rank)
        .order_by("-rank", "product__name", "pk")
    )


def support_account_overview(*, account: BillingAccount) -> AccountOverview:
    """Everything support sees on one page. Lists show the first LIST_LIMIT rows (subscriptions worst
    first, the rest newest first); the subscriptions have a paged list of their own and the timeline
    below pages through everything else. The counts come in one query with the lists, so the page can
    say "50 of 1,204"."""
    if not hasattr(account, "n_subscriptions"):
        account = support_account_get(account_id=account.pk, with_overview=True)
    invoice_count = account.n_invoices or 0  # type: ignore[attr-defined]  # annotated by the query above
    attempt_count = account.n_attempts or 0  # type: ignore[attr-defined]  # annotated by the query above
    notice_count = account.n_notices or 0  # type: ignore[attr-defined]  # annotated by the query above
    attempts = list(
        PaymentAttempt.objects.filter(account=account)
        .select_related("payment_method", "initiated_by")
        .annotate(**_attempt_money_back_sums())
        .order_by("-created_at", "-pk")[:LIST_LIMIT]
    )
    for attempt in attempts:
        attempt.decline_text = decline_message(attempt.decline_code) if attempt.decline_code else ""  # type: ignore[attr-defined]  # annotated by the query above
        # What is left to refund and what was overpaid, from the sums annotated above (same rules as
        # payments.refunds.refundable_minor / overpaid_minor, without a query per row).
        refundable = 0
        overpaid = 0
        if attempt.status == PaymentAttempt.Status.SUCCEEDED and attempt.payment_method_id is not None:
            refundable = max(attempt.amount_minor - attempt.refunded_sum - attempt.disputed_sum, 0)  # type: ignore[attr-defined]  # annotated by the query above
            overpaid = max(
                min(attempt.amount_minor - attempt.applied_sum - attempt.unapplied_refunded_sum, refundable),  # type: ignore[attr-defined]  # annotated by the query above
                0,
            )
        attempt.refundable_minor = refundable  # type: ignore[attr-defined]  # annotated by the query above
        attempt.overpaid_minor = overpaid  # type: ignore[attr-defined]  # annotated by the query above
    return AccountOverview(
        account=account,
        status=_RANK_STATUS.get(getattr(account, "worst_rank", None) or 0),
        outstanding_minor=getattr(account, "outstanding_minor", 0) or 0,
        members=_member_lines(account.member_lines),  # type: ignore[attr-defined]  # annotated by the query above
        subscriptions=list(support_subscriptions(account=account)[:LIST_LIMIT]),
        subscription_count=account.n_subscriptions or 0,  # type: ignore[attr-defined]  # annotated by the query above
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
                "disputed_at",
                "blocked_reason",
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
        note_count=account.n_notes or 0,  # type: ignore[attr-defined]  # annotated by the query above
        audit_count=account.n_audit or 0,  # type: ignore[attr-defined]  # annotated by the query above
        # Refunds, credit notes and chargebacks are rare: each list is read only when the account's row
        # (support_account_get) counted any, so most accounts' view stays at its query budget.
        refunds=list(
            Refund.objects.filter(account=account)
            .select_related("attempt")
            .order_by("-created_at", "-pk")[:LIST_LIMIT]
        )
        if getattr(account, "n_refunds", 1)
        else [],
        credit_notes=list(
            CreditNote.objects.filter(account=account)
            .select_related("invoice", "refund")
            .order_by("-created_at", "-pk")[:LIST_LIMIT]
        )
        if getattr(account, "n_credit_notes", 1)
        else [],
        disputes=list(
            Dispute.objects.filter(account=account)
            .select_related("attempt")
            .order_by("status", "-opened_at", "-pk")[:LIST_LIMIT]
        )
        if getattr(account, "n_disputes", 1)
        else [],
    )


def _sum_of(qs: QuerySet[Any, Any], column: str) -> Any:
    """A correlated SUM over rows of one attempt, 0 when there are none."""
    total = qs.order_by().values("attempt").annotate(total=Sum(column)).values("total")
    return Coalesce(Subquery(total, output_field=BigIntegerField()), Value(0), output_field=BigIntegerField())


def _attempt_money_back_sums() -> dict[str, Any]:
    live_refunds = Refund.objects.filter(attempt=OuterRef("pk")).exclude(status=Refund.Status.FAILED)
    return {
        "refunded_sum": _sum_of(live_refunds, "amount_minor"),
        "unapplied_refunded_sum": _sum_of(live_refunds, "unapplied_minor"),
        "disputed_sum": _sum_of(
            Dispute.objects.filter(attempt=OuterRef("pk")).exclude(outcome=Dispute.Outcome.WON),
            "amount_minor",
        ),
        "applied_sum": _sum_of(PaymentAllocation.objects.filter(attempt=OuterRef("pk")), "applied_minor"),
    }


# -- the merged timeline ------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    # "audit" | "attempt" | "notice" | "note" | "refund" | "credit_note" | "dispute" (shown through
    # kind_label, never raw)
    kind: str
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
    "refund": gettext_lazy("Refund"),
    "credit_note": gettext_lazy("Credit note"),
    "dispute": gettext_lazy("Chargeback"),
}
# Audit event names are for code and queries; people read these (support.account_viewed is not a sentence).
AUDIT_ACTION_LABELS = {
    "account.billing_profile_changed": gettext_lazy("Billing profile changed"),
    "account.invitation_accepted": gettext_lazy("Invitation accepted"),
    "account.invitation_revoked": gettext_lazy("Invitation withdrawn"),
    "account.member_invited": gettext_lazy("Person invited"),
    "account.member_removed": gettext_lazy("Member removed"),
    "account.notifications_changed": gettext_lazy("Notification settings changed"),
    "account.ownership_transferred": gettext_lazy("Ownership handed over"),
    "account.recipients_changed": gettext_lazy("Billing mail recipients changed"),
    "account.role_changed": gettext_lazy("Role changed"),
    "dispute.lost": gettext_lazy("Chargeback lost"),
    "dispute.opened": gettext_lazy("Chargeback opened"),
    "dispute.won": gettext_lazy("Chargeback won"),
    "dunning.budget_overridden": gettext_lazy("Card network retry limit overridden by support"),
    "dunning.stopped": gettext_lazy("Automatic retries stopped"),
    "invoice.renewal_issued": gettext_lazy("Renewal invoice issued"),
    "payment.canceled": gettext_lazy("Payment canceled"),
    "payment.declined": gettext_lazy("Payment declined"),
    "payment.invalid_request": gettext_lazy("Payment refused by the gateway as invalid"),
    "payment.overpaid": gettext_lazy("Payment larger than the balance"),
    "payment.succeeded": gettext_lazy("Payment received"),
    "payment.unknown": gettext_lazy("Payment outcome unknown"),
    "payment_method.added": gettext_lazy("Payment method added"),
    "payment_method.customer_deleted": gettext_lazy("Cards removed: customer deleted at the gateway"),
    "payment_method.duplicate_dropped": gettext_lazy("Same card added again; its duplicate is detached"),
    "payment_method.edited": gettext_lazy("Payment method edited"),
    "payment_method.gateway_detach_failed": gettext_lazy(
        "Deleted card still attached at the gateway; retrying"
    ),
    "payment_method.gateway_detached": gettext_lazy("Deleted card detached at the gateway"),
    "payment_method.expiry_changed": gettext_lazy("Card expiry date changed"),
    "payment_method.made_default": gettext_lazy("Active payment method changed"),
    "payment_method.removed": gettext_lazy("Payment method deleted"),
    "payment_method.replaced": gettext_lazy("Payment method replaced"),
    "payment_method.updated_by_network": gettext_lazy("Card updated by the card network"),
    "refund.failed": gettext_lazy("Refund failed"),
    "refund.requested": gettext_lazy("Refund requested"),
    "refund.succeeded": gettext_lazy("Refund completed"),
    "subscription.cancelled": gettext_lazy("Subscription cancelled"),
    "subscription.data_deleted": gettext_lazy("Subscription data deleted"),
    "subscription.disabled": gettext_lazy("Subscription disabled"),
    "subscription.past_due": gettext_lazy("Subscription past due"),
    "subscription.reactivated": gettext_lazy("Subscription reactivated"),
    "subscription.reactivation_requested": gettext_lazy("Reactivation requested"),
    "subscription.warned": gettext_lazy("Final warning before disabling"),
    "support.account_viewed": gettext_lazy("Account viewed by support"),
    "support.bank_transfer_recorded": gettext_lazy("Bank transfer recorded"),
    "support.grace_extended": gettext_lazy("Grace period extended"),
    "support.note_added": gettext_lazy("Support note added"),
    "support.retry_requested": gettext_lazy("Payment retried by support"),
    "support.searched": gettext_lazy("Support search"),
    "support_request.closed": gettext_lazy("Support request closed"),
    "support_request.customer_replied": gettext_lazy("Customer replied to a support request"),
    "support_request.opened": gettext_lazy("Support request opened"),
    "support_request.replied": gettext_lazy("Support replied to a support request"),
    "support_request.viewed": gettext_lazy("Support request viewed by support"),
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

    def keys(model: Any, kind: str, at: str = "created_at") -> QuerySet[Any, Any]:
        return (
            model.objects.filter(account_id=account_id)
            .order_by()
            .annotate(entry_kind=Value(kind, output_field=CharField()))
            .values_list("entry_kind", "pk", at)
        )

    return keys(AuditEvent, "audit").union(
        keys(PaymentAttempt, "attempt"),
        keys(Notice, "notice"),
        keys(SupportNote, "note"),
        keys(Refund, "refund"),
        keys(CreditNote, "credit_note"),
        keys(Dispute, "dispute", "opened_at"),
        all=True,
    )


def _timeline_entry(kind: str, obj: Any, created: dt.datetime) -> TimelineEntry:
    if kind == "audit":
        return TimelineEntry(
            "audit", created, audit_action_label(obj.action), obj.message, obj.actor_label, obj
        )
    if kind == "attempt":
        attempt = obj
        detail = f"{attempt.amount} · {attempt.get_status_display()}"
        if attempt.decline_code:
            detail += f" · {decline_message(attempt.decline_code)}"
        if attempt.payment_method:
            detail += f" · {attempt.payment_method.label}"
        if attempt.reference_note:
            detail += " · " + _("ref. %(reference)s") % {"reference": attempt.reference_note}
        return TimelineEntry(
            "attempt",
            created,
            f"{attempt.reference} {attempt.get_source_display()}",
            detail,
            attempt.initiated_by_label,
            attempt,
        )
    if kind == "notice":
        notice = obj
        return TimelineEntry(
            "notice",
            created,
            _("Mail: %(kind)s") % {"kind": notice.get_kind_display()},
            f"{notice.subject} → {notice.recipient} ({notice.get_status_display()})",
            "billing",
            notice,
        )
    if kind == "refund":
        refund = obj
        detail = f"{refund.amount} · {refund.get_status_display()} · " + _("on %(payment)s") % {
            "payment": refund.attempt.reference
        }
        detail += f" · {refund.reason}"
        if refund.failure_message:
            detail += f" · {refund.failure_message}"
        return TimelineEntry(
            "refund",
            created,
            f"{refund.reference} {refund.get_source_display()}",
            detail,
            refund.initiated_by_label,
            refund,
        )
    if kind == "credit_note":
        credit = obj
        return TimelineEntry(
            "credit_note",
            created,
            _("Credit note %(number)s") % {"number": credit.number},
            _("%(amount)s on invoice %(invoice)s, from refund %(refund)s")
            % {"amount": credit.amount, "invoice": credit.invoice.number, "refund": credit.refund.reference},
            "billing",
            credit,
        )
    if kind == "dispute":
        dispute = obj
        detail = _("%(amount)s on %(payment)s · reason: %(reason)s") % {
            "amount": dispute.amount,
            "payment": dispute.attempt.reference,
            "reason": dispute.reason,
        }
        if dispute.evidence_due_by and dispute.status == Dispute.Status.OPEN:
            detail += " · " + _("evidence due by %(date)s") % {"date": format_date(dispute.evidence_due_by)}
        if dispute.outcome == Dispute.Outcome.WON:
            detail += " · " + _("won: nothing changes")
        elif dispute.outcome == Dispute.Outcome.LOST:
            detail += " · " + _("lost: the amount is due again")
        else:
            detail += " · " + _("open: automatic charges on the card stopped")
        return TimelineEntry(
            "dispute",
            created,
            _("Chargeback %(reference)s") % {"reference": dispute.reference},
            detail,
            _("payment provider"),
            dispute,
        )
    note = obj
    author = note.author.email if note.author else ""
    return TimelineEntry("note", created, _("Support note"), note.body, author, note)


def support_timeline_first_page(*, overview: AccountOverview) -> TimelinePage:
    """The timeline's first page for the account view, from the lists the overview already holds.

    Any attempt, mail or note among the newest TIMELINE_PAGE_SIZE entries is among the newest
    LIST_LIMIT of its kind, which the overview loaded; so one more query (the newest audit events)
    and a merge give the same page as support_timeline(page=1)."""
    assert LIST_LIMIT >= TIMELINE_PAGE_SIZE
    audits = list(
        AuditEvent.objects.filter(account=overview.account)
        .select_related("actor")
        .order_by("-created_at", "-pk")[:TIMELINE_PAGE_SIZE]
    )
    merged: list[tuple[str, Any]] = [
        *(("audit", e) for e in audits),
        *(("attempt", a) for a in overview.attempts),
        *(("notice", n) for n in overview.notices),
        *(("note", n) for n in overview.notes),
        *(("refund", r) for r in overview.refunds),
        *(("credit_note", c) for c in overview.credit_notes),
        *(("dispute", d) for d in overview.disputes),
    ]

    def at(item: tuple[str, Any]) -> dt.datetime:
        # The moment support_timeline orders by: a chargeback by when it was opened, the rest when created.
        return item[1].opened_at if item[0] == "dispute" else item[1].created_at

    merged.sort(key=lambda item: (at(item), item[1].pk), reverse=True)
    total = overview.audit_count + overview.attempt_count + overview.notice_count + overview.note_count
    # The money-back lists carry no count of their own; a list at its cap means there is more.
    capped = any(
        len(rows) >= LIST_LIMIT for rows in (overview.refunds, overview.credit_notes, overview.disputes)
    )
    total += len(overview.refunds) + len(overview.credit_notes) + len(overview.disputes)
    return TimelinePage(
        entries=[_timeline_entry(kind, obj, at((kind, obj))) for kind, obj in merged[:TIMELINE_PAGE_SIZE]],
        page=1,
        has_next=capped or total > TIMELINE_PAGE_SIZE,
    )


def support_timeline(*, account: BillingAccount, page: int = 1) -> TimelinePage:
    """One page of everything that happened to the account, newest first.

    Five queries for any page and any account: the merged keys, then each kind's rows by id (and one
    more for each of refunds, credit notes and chargebacks when the page shows any).
    """
    page = max(1, page)
    offset = (page - 1) * TIMELINE_PAGE_SIZE
    rows = list(
        _timeline_keys(account.pk).order_by("-created_at", "-pk")[offset : offset + TIMELINE_PAGE_SIZE + 1]
    )
    has_next = len(rows) > TIMELINE_PAGE_SIZE
    rows = rows[:TIMELINE_PAGE_SIZE]
    ids: dict[str, list[int]] = {
        "audit": [],
        "attempt": [],
        "notice": [],
        "note": [],
        "refund": [],
        "credit_note": [],
        "dispute": [],
    }
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
    refunds = Refund.objects.select_related("attempt").in_bulk(ids["refund"]) if ids["refund"] else {}
    credit_notes = (
        CreditNote.objects.select_related("invoice", "refund").in_bulk(ids["credit_note"])
        if ids["credit_note"]
        else {}
    )
    disputes = Dispute.objects.select_related("attempt").in_bulk(ids["dispute"]) if ids["dispute"] else {}
    by_kind: dict[str, dict[int, Any]] = {
        "audit": audits,
        "attempt": attempts,
        "notice": notices,
        "note": notes,
        "refund": refunds,
        "credit_note": credit_notes,
        "dispute": disputes,
    }
    entries = [
        _timeline_entry(kind, by_kind[kind][pk], created) for kind, pk, created in rows if pk in by_kind[kind]
    ]
    return TimelinePage(entries=entries, page=page, has_next=has_next)


# -- for the actions ------------------------------------------------------------------------------


def support_payable_invoices(*, account_id: int) -> QuerySet[Invoice]:
    return Invoice.objects.filter(
        account_id=account_id, status__in=Invoice.PAYABLE_STATUSES, amount_due_minor__gt=0
    ).order_by("due_on", "issued_on", "pk")


def in_flight_invoice_ids(*, account_id: int, invoice_ids: list[int]) -> set[int]:
    """Which of these invoices a payment still under way pays (payments.selectors.payments_in_flight)."""
    attempts = payments_in_flight(account_id=account_id, invoices=invoice_ids)
    return set(
        PaymentAllocation.objects.filter(invoice_id__in=invoice_ids, attempt__in=attempts).values_list(
            "invoice_id", flat=True
        )
    )
