"""The recovery dashboard for support leads: where past-due money stands and how it comes back.

Three aggregation queries, whatever the data size: past-due totals per day and currency, amounts
recovered per channel and currency, failed attempts per decline code.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, cast

from django.db.models import Case, CharField, Count, F, Q, Sum, Value, When, Window
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from billing_portal.money import format_money
from payments.gateways.base import INVALID_REQUEST_CODE, decline_message
from payments.models import Dispute, PaymentAllocation, PaymentAttempt, Refund
from subscriptions.models import Invoice

from .charts import Bar, Series, bar_chart, line_chart

WINDOW_DAYS = 30

S = PaymentAttempt.Source
CHANNELS = {
    "automatic": (_lazy("Automatic retries and renewals"), (S.RENEWAL, S.RETRY)),
    "customer": (_lazy("Customers settling or paying"), (S.SETTLE, S.PAY_NOW)),
    "support": (_lazy("Support (retry now, bank transfers)"), (S.SUPPORT_RETRY, S.BANK_TRANSFER)),
}


def _day_end(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min))


def past_due_by_day(*, days: list[dt.date]) -> dict[str, list[int]]:
    """Per currency, what was past due at the end of each day.

    An invoice counts from its first failed charge (or, for pay-by-invoice accounts that have no
    charge, from the day after it fell due) until it was paid. Its total counts: partial bank
    transfers are not replayed day by day. Void and uncollectible invoices are left out, because
    when they stopped being owed is not recorded.
    """
    started = Q(first_failed_at__isnull=False) | Q(due_on__lt=days[-1])
    not_yet_paid_at_start = Q(paid_at__isnull=True) | Q(paid_at__gt=_day_end(days[0]))
    sums = {}
    for i, day in enumerate(days):
        end = _day_end(day)
        was_past_due = (Q(first_failed_at__lt=end) | Q(first_failed_at__isnull=True, due_on__lt=day)) & (
            Q(paid_at__isnull=True) | Q(paid_at__gte=end)
        )
        sums[f"d{i}"] = Sum("total_minor", filter=was_past_due, default=0)
    rows: Any = (
        Invoice.objects.exclude(status__in=[Invoice.Status.VOID, Invoice.Status.UNCOLLECTIBLE])
        .filter(started & not_yet_paid_at_start)
        .order_by()
        .values("currency")
        .annotate(**sums)
    )
    return {row["currency"]: [row[f"d{i}"] for i in range(len(days))] for row in rows}


def recovered_by_channel(*, since: dt.datetime) -> dict[str, dict[str, int]]:
    """Per currency and channel, money that paid invoices which had been past due."""
    channel = Case(
        *(When(attempt__source__in=sources, then=Value(key)) for key, (_label, sources) in CHANNELS.items()),
        default=Value("other"),
        output_field=CharField(),
    )
    was_past_due = Q(invoice__first_failed_at__lt=F("attempt__completed_at")) | Q(
        invoice__first_failed_at__isnull=True, invoice__due_on__lt=TruncDate("attempt__completed_at")
    )
    rows = (
        PaymentAllocation.objects.filter(
            was_past_due, attempt__status=PaymentAttempt.Status.SUCCEEDED, attempt__completed_at__gte=since
        )
        .order_by()
        .annotate(channel=channel)
        .values("attempt__currency", "channel")
        .annotate(total=Sum("amount_minor"))
    )
    result: dict[str, dict[str, int]] = {}
    for row in rows:
        result.setdefault(row["attempt__currency"], {})[row["channel"]] = row["total"]
    return result


def declines_by_code(*, since: dt.datetime) -> list[tuple[str, int]]:
    rows = (
        PaymentAttempt.objects.filter(status=PaymentAttempt.Status.FAILED, created_at__gte=since)
        .order_by()
        .values("decline_code")
        .annotate(n=Count("pk"))
        .order_by("-n", "decline_code")
    )
    return [(row["decline_code"], row["n"]) for row in rows]


INVALID_SHOWN = 20


def invalid_requests(*, since: dt.datetime) -> tuple[list[PaymentAttempt], int]:
    """Payments the gateway refused as invalid requests (a bug or a configuration to fix, never the card):
    the latest ones with their operator error, and how many there were. One query."""
    rows: list[PaymentAttempt] = list(
        PaymentAttempt.objects.filter(
            status=PaymentAttempt.Status.FAILED, decline_code=INVALID_REQUEST_CODE, created_at__gte=since
        )
        .select_related("account")
        .annotate(total=Window(Count("pk")))
        .order_by("-created_at", "-pk")[:INVALID_SHOWN]
    )
    return rows, (cast(Any, rows[0]).total if rows else 0)


OPEN_DISPUTES_SHOWN = 20


def money_back_alerts() -> dict[str, Any]:
    """The chargebacks support must answer (soonest evidence deadline first) and refunds still waiting
    for the gateway's answer. Two queries, whatever the data size."""
    open_disputes = list(
        Dispute.objects.filter(status=Dispute.Status.OPEN)
        .select_related("account", "attempt")
        .annotate(open_count=Window(Count("pk")))
        .order_by(F("evidence_due_by").asc(nulls_last=True), "pk")[:OPEN_DISPUTES_SHOWN]
    )
    pending_refunds = Refund.objects.filter(status=Refund.Status.PENDING).count()
    return {
        "open_disputes": open_disputes,
        "open_dispute_count": open_disputes[0].open_count if open_disputes else 0,
        "pending_refund_count": pending_refunds,
    }


def _money_label(amount_minor: int, currency: str) -> str:
    return format_money(amount_minor, currency)


def recovery_dashboard(*, window_days: int = WINDOW_DAYS) -> dict[str, Any]:
    today = timezone.localdate()
    days = [today - dt.timedelta(days=window_days - 1 - i) for i in range(window_days)]
    since = _day_end(days[0]) - dt.timedelta(days=1)
    past_due = past_due_by_day(days=days)
    labels = [d.strftime("%d %b") for d in days]
    past_due_charts = [
        {
            "currency": currency,
            "now": format_money(values[-1], currency),
            "svg": line_chart(
                chart_id=f"past-due-{currency.lower()}",
                title=_("Past-due total (%(currency)s), last %(days)d days")
                % {"currency": currency, "days": window_days},
                desc=_("From %(first)s on %(first_day)s to %(last)s on %(last_day)s.")
                % {
                    "first": format_money(values[0], currency),
                    "first_day": labels[0],
                    "last": format_money(values[-1], currency),
                    "last_day": labels[-1],
                },
                x_labels=labels,
                series=[Series(currency, values)],
                y_format=functools.partial(_money_label, currency=currency),
            ),
            "rows": [(d, format_money(v, currency)) for d, v in zip(days, values, strict=True)],
        }
        for currency, values in sorted(past_due.items())
    ]
    recovered = recovered_by_channel(since=since)
    recovered_charts = []
    for currency, by_channel in sorted(recovered.items()):
        bars = [
            Bar(str(label), by_channel.get(key, 0), format_money(by_channel.get(key, 0), currency))
            for key, (label, _sources) in CHANNELS.items()
        ]
        recovered_charts.append(
            {
                "currency": currency,
                "svg": bar_chart(
                    chart_id=f"recovered-{currency.lower()}",
                    title=_("Recovered in the last %(days)d days (%(currency)s), by channel")
                    % {"days": window_days, "currency": currency},
                    desc="; ".join(f"{b.label}: {b.display}" for b in bars),
                    bars=bars,
                ),
                "rows": [(b.label, b.display) for b in bars],
            }
        )
    invalid, invalid_total = invalid_requests(since=since)
    declines = declines_by_code(since=since)
    decline_bars = [Bar(code or "unknown", n, str(n)) for code, n in declines]
    return {
        **money_back_alerts(),
        "window_days": window_days,
        "past_due_charts": past_due_charts,
        "recovered_charts": recovered_charts,
        "declines_svg": bar_chart(
            chart_id="declines",
            title=_("Failed payment attempts per decline code, last %(days)d days") % {"days": window_days},
            desc="; ".join(f"{b.label}: {b.display}" for b in decline_bars) or _("No declines."),
            bars=decline_bars,
        ),
        "declines": [(code, decline_message(code), n) for code, n in declines],
        "invalid_attempts": invalid,
        "invalid_total": invalid_total,
    }
