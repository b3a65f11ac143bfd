"""Reads for the billing pages that combine subscriptions with payments: Home's summary cards, a
subscription's "Subscription and payment settings" page, and the display rows of Your products and Invoices.
Fixed query counts, however large the account."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Count, Func, IntegerField, Q, QuerySet, Subquery, Sum
from django.utils import formats
from django.utils.functional import cached_property
from django.utils.html import escape
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from accounts.models import BillingAccount
from billing_portal.dates import format_date
from billing_portal.money import Money, format_money
from payments.models import PaymentMethod
from payments.selectors import MethodBalance, past_due_summary
from subscriptions.models import RENEWING_STATUSES, UNPAID_STATUSES, Invoice, Product, Subscription
from subscriptions.selectors import subscription_for_account

_UNPAID_METHOD_STATUSES = (PaymentMethod.Status.DECLINED, PaymentMethod.Status.EXPIRED)


@dataclass(frozen=True)
class AccountOverview:
    active_count: int
    unpaid_count: int
    total_count: int
    next_invoice: Invoice | None
    default_method: PaymentMethod | None
    # In the Warned stage (a few days before disabling): the first few, for the Home banner.
    warned: list[Subscription] = field(default_factory=list)
    warned_count: int = 0


WARNED_SHOWN = 5
IN_SERVICE_STATUSES = (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE, Subscription.Status.WARNED)


# Home's summary cards in one statement, where three ORM queries compiled and ran one after another:
# the subscription counts, the next invoice due (its row, joined on) and the default card (the columns
# Home shows, joined on). Counted as SUM(CASE …) so SQLite and PostgreSQL read it alike.
_OVERVIEW_SQL = """
SELECT ni.*, c.ov_active, c.ov_unpaid, c.ov_total, c.ov_warned,
       dm.id AS ov_dm_id, dm.brand AS ov_dm_brand, dm.last4 AS ov_dm_last4,
       dm.exp_month AS ov_dm_exp_month, dm.exp_year AS ov_dm_exp_year, dm.status AS ov_dm_status
FROM (
    SELECT COALESCE(SUM(CASE WHEN status IN ({in_service}) THEN 1 ELSE 0 END), 0) AS ov_active,
           COALESCE(SUM(CASE WHEN status IN ({unpaid}) THEN 1 ELSE 0 END), 0) AS ov_unpaid,
           COALESCE(SUM(CASE WHEN status <> %s THEN 1 ELSE 0 END), 0) AS ov_total,
           COALESCE(SUM(CASE WHEN status = %s THEN 1 ELSE 0 END), 0) AS ov_warned
    FROM {subscription} WHERE account_id = %s
) c
LEFT OUTER JOIN {invoice} ni ON ni.id = (
    SELECT id FROM {invoice} WHERE account_id = %s AND status IN ({payable}) AND amount_due_minor > 0
    ORDER BY due_on, id LIMIT 1
)
LEFT OUTER JOIN {method} dm ON dm.id = (
    SELECT id FROM {method} WHERE account_id = %s AND is_default AND status <> %s ORDER BY id LIMIT 1
)
"""
_OVERVIEW_METHOD_FIELDS = ("id", "brand", "last4", "exp_month", "exp_year", "status")


def account_overview(*, account: BillingAccount) -> AccountOverview:
    """The summary cards of Home. One query, two when a subscription is in the Warned stage."""
    from django.db import connection

    def marks(values: tuple[str, ...]) -> str:
        return ", ".join(["%s"] * len(values))

    quote = connection.ops.quote_name
    sql = _OVERVIEW_SQL.format(
        # "Active" as the admin center counts it: the service works, whether or not a payment is late.
        in_service=marks(IN_SERVICE_STATUSES),
        unpaid=marks(UNPAID_STATUSES),
        payable=marks(Invoice.PAYABLE_STATUSES),
        subscription=quote(Subscription._meta.db_table),
        invoice=quote(Invoice._meta.db_table),
        method=quote(PaymentMethod._meta.db_table),
    )
    params = [
        *IN_SERVICE_STATUSES,
        *UNPAID_STATUSES,
        Subscription.Status.DELETED,
        Subscription.Status.WARNED,
        account.pk,
        # Past-due invoices are due too (and first): "Nothing due" beside a past-due balance was wrong.
        account.pk,
        *Invoice.PAYABLE_STATUSES,
        account.pk,
        PaymentMethod.Status.DETACHED,
    ]
    row = next(iter(Invoice.objects.raw(sql, [str(p) if not isinstance(p, int) else p for p in params])))
    counts = vars(row)  # the columns raw() set beside the invoice's fields
    default_method = None
    if counts["ov_dm_id"] is not None:
        # Only the columns Home shows (label, expiry); any other field loads on access.
        default_method = PaymentMethod.from_db(
            connection.alias,
            list(_OVERVIEW_METHOD_FIELDS),
            [counts[f"ov_dm_{name}"] for name in _OVERVIEW_METHOD_FIELDS],
        )
    warned_count = int(counts["ov_warned"])
    warned = (
        list(
            Subscription.objects.filter(account=account, status=Subscription.Status.WARNED)
            .select_related("product")
            .order_by("grace_ends_at", "pk")[:WARNED_SHOWN]
        )
        if warned_count
        else []
    )
    return AccountOverview(
        active_count=int(counts["ov_active"]),
        unpaid_count=int(counts["ov_unpaid"]),
        total_count=int(counts["ov_total"]),
        next_invoice=row if row.pk is not None else None,
        default_method=default_method,
        warned=warned,
        warned_count=warned_count,
    )


SUBSCRIPTION_INVOICES_SHOWN = 12


@dataclass(frozen=True)
class SubscriptionDetails:
    """The "Subscription and payment settings" page of one subscription: three queries, five when past due."""

    subscription: Subscription
    invoices: list[Invoice]
    invoice_count: int
    amount_due: Money
    balance: MethodBalance | None

    @property
    def more_invoices(self) -> bool:
        return self.invoice_count > len(self.invoices)


def subscription_details(*, account: BillingAccount, subscription_id: int) -> SubscriptionDetails:
    sub = subscription_for_account(account=account, subscription_id=subscription_id)
    invoices = list(
        Invoice.objects.filter(subscription=sub).order_by("-issued_on", "-pk")[:SUBSCRIPTION_INVOICES_SHOWN]
    )
    totals = Invoice.objects.filter(subscription=sub).aggregate(
        count=Count("pk"),
        due=Sum("amount_due_minor", filter=Q(status__in=Invoice.PAYABLE_STATUSES)),
        past_due=Sum("amount_due_minor", filter=Q(status=Invoice.Status.PAST_DUE)),
    )
    balance = None
    if sub.payment_method is not None and totals["past_due"]:
        # What Settle balance collects for this subscription's card (all its past-due subscriptions).
        balance = past_due_summary(account=account).for_method(sub.payment_method.pk)
    return SubscriptionDetails(
        subscription=sub,
        invoices=invoices,
        invoice_count=totals["count"],
        amount_due=Money(int(totals["due"] or 0), sub.currency),
        balance=balance,
    )


_NOTHING = SafeString("")  # an empty cell part


@dataclass(slots=True)
class ProductRow:
    """One row of Your products with every display value worked out, so writing it (billing.tables) only
    prints them.

    A page of rows is the one part of the page that grows with the account, and a template pays for
    each lookup, translation, number formatting and escape once per row. So they are done here, from
    plain column values (no model instances), once per distinct value where rows repeat (labels,
    cards, prices, days), and the text is escaped here once (SafeString: the template does not escape
    it again). The view adds what needs the request: URLs and the Settle balance action.
    """

    pk: int
    status: str
    product_name: SafeString
    quantity: SafeString  # localized, as {{ number }} prints it
    price: SafeString  # the period price, formatted for the active language
    period_label: SafeString
    status_label: SafeString
    tone: str  # success | warning | error | neutral: the status chip and the unpaid note
    tone_icon: str  # the icon beside the status and the note
    row_class: str  # row--warning / row--error for rows that need attention
    unpaid: bool
    payment_method_id: int | None
    method_label: SafeString  # "" when no card pays it
    method_failed: bool  # the card was declined or has expired
    renews_on: SafeString  # formatted; "" when it does not renew
    data_deleted_on: SafeString  # cancelled for non-payment: formatted day its data is deleted, else ""
    menu_label: SafeString  # accessible name of the row's "…" menu
    # Set by the view (billing.views._product_row_parts): URLs and the parts rows share.
    detail_url: str = ""
    timeline_url: str = ""
    replace_url: str = ""
    status_cell: SafeString = _NOTHING
    method_cell: SafeString = _NOTHING
    note: SafeString = _NOTHING  # the unpaid note
    settle: SafeString = _NOTHING  # Settle balance for the row's card, beside the Payment timeline link


# status -> (tone, icon, row class); any other status is neutral.
_ROW_TONES = {
    Subscription.Status.ACTIVE: ("success", "success", ""),
    Subscription.Status.PAST_DUE: ("warning", "warning", "row--warning"),
    Subscription.Status.WARNED: ("warning", "warning", "row--warning"),
    Subscription.Status.DISABLED: ("error", "blocked", "row--error"),
}
_NEUTRAL_TONE = ("neutral", "circle", "")
_PRODUCT_ROW_COLUMNS = (
    "pk",
    "product__name",
    "product__billing_period",
    "quantity",
    "unit_price_minor",
    "currency",
    "status",
    "current_period_end",
    "next_lifecycle_at",
    "payment_method_id",
    "payment_method__brand",
    "payment_method__last4",
    "payment_method__status",
)

# Your products in order: what needs attention first (past due and warned, then disabled, then active, then
# the rest), then by product name. Deleted subscriptions are gone from the page.
_ATTENTION_RANKS = (
    (Subscription.Status.WARNED, 0),
    (Subscription.Status.PAST_DUE, 0),
    (Subscription.Status.DISABLED, 1),
    (Subscription.Status.ACTIVE, 2),
)

# One page of Your products and the number of rows on all pages, in one statement written once: the ORM
# took 4 ms to compile and run a count and the page's query (with its ordering CASE) that PostgreSQL answers
# in 1.5 ms. The page is sorted from the subscriptions and their products alone, and only its rows are
# joined to their cards; the count is a sub-select on the account's subscriptions. (COUNT(*) OVER () made
# PostgreSQL carry every row through a window before the sort: 2.6 ms where this takes 1.7 at 1,000
# subscriptions, bench/load.py's data.)
_PRODUCT_PAGE_SQL = """
SELECT page.id, page.name, page.billing_period, page.quantity, page.unit_price_minor, page.currency,
       page.status, page.current_period_end, page.next_lifecycle_at, page.payment_method_id,
       pm.brand, pm.last4, pm.status,
       (SELECT COUNT(*) FROM {subscription} c WHERE c.account_id = %(account)s AND c.status <> %(deleted)s)
FROM (
    SELECT s.id, p.name, p.billing_period, s.quantity, s.unit_price_minor, s.currency, s.status,
           s.current_period_end, s.next_lifecycle_at, s.payment_method_id,
           CASE s.status {ranks} ELSE {last_rank} END AS attention
    FROM {subscription} s
    INNER JOIN {product} p ON p.id = s.product_id
    WHERE s.account_id = %(account)s AND s.status <> %(deleted)s
    ORDER BY attention, p.name, s.id
    LIMIT %(limit)s OFFSET %(offset)s
) page
LEFT OUTER JOIN {method} pm ON pm.id = page.payment_method_id AND pm.account_id = %(account)s
ORDER BY page.attention, page.name, page.id
"""


class _CountedPaginator(Paginator):
    """A paginator told its count by the statement that read the page, so it never counts again."""

    def __init__(self, *, count: int, per_page: int) -> None:
        super().__init__((), per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


def _product_page_rows(
    account: BillingAccount, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    quote = connection.ops.quote_name
    sql = _PRODUCT_PAGE_SQL.format(
        subscription=quote(Subscription._meta.db_table),
        product=quote(Product._meta.db_table),
        method=quote(PaymentMethod._meta.db_table),
        ranks=" ".join(
            f"WHEN %(rank_{i})s THEN {rank}" for i, (_status, rank) in enumerate(_ATTENTION_RANKS)
        ),
        last_rank=len(_ATTENTION_RANKS),
    )
    params: dict[str, int | str] = {
        **{f"rank_{i}": status.value for i, (status, _rank) in enumerate(_ATTENTION_RANKS)},
        "account": account.pk,
        "deleted": Subscription.Status.DELETED.value,
        "limit": limit,
        "offset": offset,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    rows = []
    for *values, _total in fetched:
        row = dict(zip(_PRODUCT_ROW_COLUMNS, values, strict=True))
        moment = row["next_lifecycle_at"]
        if moment is not None and moment.tzinfo is None:  # SQLite's raw cursor: naive UTC
            row["next_lifecycle_at"] = moment.replace(tzinfo=dt.UTC)
        rows.append(row)
    return rows, (fetched[0][-1] if fetched else 0)


def product_page(*, account: BillingAccount, number: int, per_page: int) -> Page:
    """Page `number` of Your products, its rows as column values (keys: _PRODUCT_ROW_COLUMNS) for
    product_rows(). One query (see _counted_page for a page past the end)."""
    return _counted_page(
        lambda limit, offset: _product_page_rows(account, limit=limit, offset=offset), number, per_page
    )


def _counted_page(
    read: Callable[[int, int], tuple[list[dict[str, Any]], int]], number: int, per_page: int
) -> Page:
    """Page `number` from `read(limit, offset)`, which returns the page's rows and the number of rows on
    all pages in one statement. A page past the end is the last page, as Paginator.get_page makes it: one
    more read for the first page (which says how many there are) and a third when the last is not the first."""
    number = max(1, number)
    rows, count = read(per_page, (number - 1) * per_page)
    if not rows and number > 1:
        number = 1
        rows, count = read(per_page, 0)
        if count > per_page:
            number = -(-count // per_page)
            rows, count = read(per_page, (number - 1) * per_page)
    return Page(rows, number, _CountedPaginator(count=count, per_page=per_page))


def product_rows(*, values: Iterable[dict[str, Any]]) -> list[ProductRow]:
    """The display rows of one page of product_page(), in the active language. No queries."""
    status_labels = {value: escape(label) for value, label in Subscription.Status.choices}
    period_labels = {value: escape(label) for value, label in Product.Period.choices}
    more_actions = gettext("More actions for %(product)s")
    method_labels: dict[int, SafeString] = {}
    quantities: dict[int, SafeString] = {}
    prices: dict[tuple[int, str], SafeString] = {}
    days: dict[dt.date, SafeString] = {}
    rows = []
    for v in values:
        status = v["status"]
        method_id = v["payment_method_id"]
        if method_id is not None and method_id not in method_labels:
            # The card's own label ("Visa ending 0341").
            method_labels[method_id] = escape(
                PaymentMethod(brand=v["payment_method__brand"], last4=v["payment_method__last4"])
            )
        quantity = v["quantity"]
        if quantity not in quantities:
            quantities[quantity] = escape(formats.localize(quantity))
        price_key = (v["unit_price_minor"] * quantity, v["currency"])
        if price_key not in prices:
            prices[price_key] = escape(format_money(*price_key))
        renews_on = _NOTHING
        if status in RENEWING_STATUSES:
            day = v["current_period_end"] + dt.timedelta(days=1)
            if day not in days:
                days[day] = escape(format_date(day))
            renews_on = days[day]
        deletes = v["next_lifecycle_at"] if status == Subscription.Status.CANCELLED else None
        tone, tone_icon, row_class = _ROW_TONES.get(status, _NEUTRAL_TONE)
        name = v["product__name"]
        rows.append(
            ProductRow(
                pk=v["pk"],
                status=status,
                product_name=escape(name),
                quantity=quantities[quantity],
                price=prices[price_key],
                period_label=period_labels.get(v["product__billing_period"])
                or escape(v["product__billing_period"]),
                status_label=status_labels.get(status) or escape(status),
                tone=tone,
                tone_icon=tone_icon,
                row_class=row_class,
                unpaid=status in UNPAID_STATUSES,
                payment_method_id=method_id,
                method_label=method_labels[method_id] if method_id is not None else SafeString(""),
                method_failed=v["payment_method__status"] in _UNPAID_METHOD_STATUSES,
                renews_on=renews_on,
                data_deleted_on=escape(format_date(deletes)) if deletes else SafeString(""),
                menu_label=escape(more_actions % {"product": name}),
            )
        )
    return rows


@dataclass(slots=True)
class InvoiceRow:
    """One row of the Invoices tab with its display values worked out (see ProductRow for why)."""

    number: str
    status: str
    issued_on: SafeString
    period: SafeString  # "1 Nov 2026 – 30 Nov 2026", or "" without a service period
    period_start: SafeString  # the period's two ends, formatted, for a cell that may wrap between them
    period_end: SafeString
    transaction_type: SafeString
    total: SafeString
    amount_due: SafeString
    due_on: SafeString
    payable: bool  # open or past due with something still owed
    # Set by the view: URLs, the status chip (one per status) and the Pay now link's URL ("" when not offered).
    detail_url: str = ""
    pdf_url: str = ""
    pdf_label: str = ""
    pay_url: str = ""
    status_cell: SafeString = _NOTHING


INVOICE_ROW_COLUMNS = (
    "number",
    "status",
    "transaction_type",
    "currency",
    "total_minor",
    "amount_due_minor",
    "issued_on",
    "due_on",
    "period_start",
    "period_end",
)


def invoice_page(*, invoices: QuerySet[Invoice], number: int, per_page: int) -> Page:
    """Page `number` of these invoices (invoices_for_account, filtered) as column values (keys:
    INVOICE_ROW_COLUMNS) for invoice_rows(). One query: the page's rows with the number of invoices on all
    pages, counted by a sub-select in the same statement, where Paginator sent a COUNT first."""

    def read(limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        # COUNT(*) with no GROUP BY: PostgreSQL counts from an index alone (COUNT(id) read every row).
        count = (
            invoices.order_by().annotate(n=Func(template="COUNT(*)", output_field=IntegerField())).values("n")
        )
        rows = list(
            invoices.values(*INVOICE_ROW_COLUMNS, on_all_pages=Subquery(count))[offset : offset + limit]
        )
        return rows, (rows[0]["on_all_pages"] if rows else 0)

    return _counted_page(read, number, per_page)


def invoice_rows(*, values: Iterable[dict[str, Any]]) -> list[InvoiceRow]:
    """The display rows of one page of invoices_for_account(...).values(*INVOICE_ROW_COLUMNS), in the
    active language. No queries."""
    types = {value: escape(label) for value, label in Invoice.TransactionType.choices}
    days: dict[dt.date, SafeString] = {}
    amounts: dict[tuple[int, str], SafeString] = {}

    def day(value: dt.date) -> SafeString:
        if value not in days:
            days[value] = escape(format_date(value))
        return days[value]

    def money(amount_minor: int, currency: str) -> SafeString:
        if (amount_minor, currency) not in amounts:
            amounts[(amount_minor, currency)] = escape(format_money(amount_minor, currency))
        return amounts[(amount_minor, currency)]

    rows = []
    for v in values:
        status = v["status"]
        start, end = v["period_start"], v["period_end"]
        period = SafeString(f"{day(start)} – {day(end) if end else ''}") if start else SafeString("")
        rows.append(
            InvoiceRow(
                number=v["number"],
                status=status,
                issued_on=day(v["issued_on"]),
                period=period,
                period_start=day(start) if start else SafeString(""),
                period_end=day(end) if end else SafeString(""),
                transaction_type=types.get(v["transaction_type"]) or escape(v["transaction_type"]),
                total=money(v["total_minor"], v["currency"]),
                amount_due=money(v["amount_due_minor"], v["currency"]),
                due_on=day(v["due_on"]),
                payable=status in Invoice.PAYABLE_STATUSES and v["amount_due_minor"] > 0,
            )
        )
    return rows
