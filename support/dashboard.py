"""The recovery dashboard for support leads: where past-due money stands and how it comes back.

The figures are aggregation queries over every invoice and attempt (seconds at a million accounts),
so a beat task computes them into one DashboardSnapshot row (dashboard_figures() →
support.services.dashboard_snapshot_refresh) and a page view reads that row and draws the charts:
past-due totals per day, recovered per channel, declines per code, and the recovery engine's
analytics (recovery rate, recovered by attempt and by decline code, days to recover, money at risk
by lifecycle stage, retries refused by the retry budget).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, cast

from django.db.models import Case, CharField, Count, F, Q, Sum, Value, When, Window
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing_portal.money import format_money
from payments.gateways.base import INVALID_REQUEST_CODE, decline_message
from payments.models import Dispute, PaymentAllocation, PaymentAttempt, Refund
from subscriptions.models import Invoice

from .charts import CHART_WIDTH, Bar, Series, bar_chart, line_chart

WINDOW_DAYS = 30

S = PaymentAttempt.Source
CHANNELS = {
    "automatic": (gettext_lazy("Automatic retries and renewals"), (S.RENEWAL, S.RETRY)),
    "customer": (gettext_lazy("Customers settling or paying"), (S.SETTLE, S.PAY_NOW)),
    "support": (gettext_lazy("Support (retry now, bank transfers)"), (S.SUPPORT_RETRY, S.BANK_TRANSFER)),
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


# --- The recovery engine's analytics -------------------------------------------------------------

COHORT_DAYS = 90  # recovery figures cover invoices whose first charge failed in the last 90 days
STAGES = {
    "retrying": gettext_lazy("Retrying automatically"),
    "waiting": gettext_lazy("Waiting for the customer"),
    "disabled": gettext_lazy("Subscription disabled"),
    "cancelled": gettext_lazy("Subscription cancelled"),
    "other": gettext_lazy("Other unpaid invoices"),
}


def recovery_rates(*, since: dt.datetime) -> dict[str, dict[str, int]]:
    """Per currency: invoices whose first charge failed since `since`, and how many of them are paid."""
    paid = Q(status=Invoice.Status.PAID)
    rows = (
        Invoice.objects.filter(first_failed_at__gte=since)
        .order_by()
        .values("currency")
        .annotate(
            failed=Count("pk"),
            failed_minor=Sum("total_minor", default=0),
            recovered=Count("pk", filter=paid),
            recovered_minor=Sum("total_minor", filter=paid, default=0),
        )
    )
    return {
        row["currency"]: {k: row[k] for k in ("failed", "failed_minor", "recovered", "recovered_minor")}
        for row in rows
    }


def recovered_by_attempt(*, since: dt.datetime) -> list[dict[str, Any]]:
    """Recovered invoices (first failure since `since`) by the payment that recovered them: the n-th
    automatic charge, or a customer or support payment."""
    rows = (
        PaymentAllocation.objects.filter(
            attempt__status=PaymentAttempt.Status.SUCCEEDED,
            invoice__first_failed_at__gte=since,
            invoice__status=Invoice.Status.PAID,
        )
        .order_by()
        .values("attempt__source", "invoice__attempt_count", "attempt__currency")
        .annotate(n=Count("pk"), amount=Sum("amount_minor"))
    )
    return [
        {
            "source": row["attempt__source"],
            "number": row["invoice__attempt_count"],
            "currency": row["attempt__currency"],
            "n": row["n"],
            "amount": row["amount"],
        }
        for row in rows
    ]


def recovery_by_code(*, since: dt.datetime) -> list[dict[str, Any]]:
    """Failed and recovered invoices (first failure since `since`) by the code of their first decline."""
    paid = Q(status=Invoice.Status.PAID)
    rows = (
        Invoice.objects.filter(first_failed_at__gte=since)
        .order_by()
        .values("currency", code=Coalesce("dunning__first_decline_code", Value("")))
        .annotate(
            failed=Count("pk"),
            recovered=Count("pk", filter=paid),
            recovered_minor=Sum("total_minor", filter=paid, default=0),
        )
    )
    return [dict(row) for row in rows]


def days_to_recover(*, since: dt.datetime) -> list[float]:
    """Days from the first failed charge to payment, for each invoice recovered since `since`."""
    pairs = Invoice.objects.filter(
        first_failed_at__gte=since, status=Invoice.Status.PAID, paid_at__isnull=False
    ).values_list("first_failed_at", "paid_at")
    return sorted(
        round((paid - failed).total_seconds() / 86400, 2)
        for failed, paid in pairs
        if failed is not None and paid is not None
    )


def money_at_risk() -> list[dict[str, Any]]:
    """Unpaid money on invoices that have failed or fallen due, per currency and lifecycle stage."""
    stage = Case(
        When(subscription__status="past_due", next_attempt_at__isnull=False, then=Value("retrying")),
        When(subscription__status="past_due", then=Value("waiting")),
        When(subscription__status="disabled", then=Value("disabled")),
        When(subscription__status="cancelled", then=Value("cancelled")),
        default=Value("other"),
        output_field=CharField(),
    )
    rows = (
        Invoice.objects.filter(status=Invoice.Status.PAST_DUE, amount_due_minor__gt=0)
        .order_by()
        .annotate(stage=stage)
        .values("currency", "stage")
        .annotate(n=Count("pk"), amount=Sum("amount_due_minor"))
    )
    return [dict(row) for row in rows]


def refused_by_budget(*, since: dt.datetime) -> list[dict[str, Any]]:
    from dunning.models import RetryRefusal

    rows = (
        RetryRefusal.objects.filter(created_at__gte=since)
        .order_by()
        .values("reason")
        .annotate(n=Count("pk"), overridden=Count("pk", filter=Q(overridden=True)))
    )
    return [dict(row) for row in rows]


def dashboard_figures(*, now: dt.datetime | None = None, window_days: int = WINDOW_DAYS) -> dict[str, Any]:
    """Every figure of the dashboard, as JSON-ready numbers (no labels: those are drawn per language).
    The heavy part: run by the beat task, never per page view."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    days = [today - dt.timedelta(days=window_days - 1 - i) for i in range(window_days)]
    since = _day_end(days[0]) - dt.timedelta(days=1)
    cohort = now - dt.timedelta(days=COHORT_DAYS)
    return {
        "window_days": window_days,
        "cohort_days": COHORT_DAYS,
        "days": [d.isoformat() for d in days],
        "past_due": past_due_by_day(days=days),
        "recovered": recovered_by_channel(since=since),
        "declines": declines_by_code(since=since),
        "rates": recovery_rates(since=cohort),
        "by_attempt": recovered_by_attempt(since=cohort),
        "by_code": recovery_by_code(since=cohort),
        "days_to_recover": days_to_recover(since=cohort),
        "at_risk": money_at_risk(),
        "refused": refused_by_budget(since=since),
    }


# --- Drawing the page from a snapshot -------------------------------------------------------------


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


def _code_label(code: str) -> str:
    """A decline code in plain words (the policy table's customer message title), never the raw code."""
    from dunning.models import DeclineCode
    from dunning.policy import decline_table

    entry = decline_table().get(code)
    if entry is None:
        return str(_("Other or unknown decline")) if code else str(_("No decline recorded"))
    return str(DeclineCode.Message(entry.message).label)


def _attempt_label(source: str, number: int) -> str:
    if source in (S.RETRY, S.RENEWAL):
        return _("Automatic retry %(n)d") % {"n": max(number - 1, 1)}
    for _key, (label, sources) in CHANNELS.items():
        if source in sources:
            return str(label)
    return _("Other")


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "—"


def recovery_analytics(figures: dict[str, Any]) -> dict[str, Any]:
    """The recovery engine's charts and tables, drawn from a snapshot's figures."""
    rates = []
    for currency, r in sorted(figures.get("rates", {}).items()):
        rates.append(
            {
                "currency": currency,
                "failed": r["failed"],
                "recovered": r["recovered"],
                "by_count": _percent(r["recovered"], r["failed"]),
                "failed_amount": format_money(r["failed_minor"], currency),
                "recovered_amount": format_money(r["recovered_minor"], currency),
                "by_amount": _percent(r["recovered_minor"], r["failed_minor"]),
            }
        )
    attempt_rows: dict[str, int] = {}
    for row in sorted(
        figures.get("by_attempt", []), key=lambda r: (r["source"] not in (S.RETRY, S.RENEWAL), r["number"])
    ):
        label = _attempt_label(row["source"], row["number"])
        attempt_rows[label] = attempt_rows.get(label, 0) + row["n"]
    attempt_bars = [Bar(label, n, str(n)) for label, n in attempt_rows.items()]
    code_rows: dict[str, list[int]] = {}
    for row in figures.get("by_code", []):
        label = _code_label(row["code"])
        acc = code_rows.setdefault(label, [0, 0])
        acc[0] += row["failed"]
        acc[1] += row["recovered"]
    codes = sorted(code_rows.items(), key=lambda kv: (-kv[1][0], kv[0]))
    code_bars = [Bar(label, rec, f"{rec} / {failed}") for label, (failed, rec) in codes]
    median = _median(figures.get("days_to_recover", []))
    at_risk: dict[str, dict[str, int]] = {}
    for row in figures.get("at_risk", []):
        at_risk.setdefault(row["currency"], {})[row["stage"]] = row["amount"]
    risk_charts = []
    for currency, stages in sorted(at_risk.items()):
        bars = [
            Bar(str(label), stages.get(key, 0), format_money(stages.get(key, 0), currency))
            for key, label in STAGES.items()
        ]
        risk_charts.append(
            {
                "currency": currency,
                "svg": bar_chart(
                    chart_id=f"at-risk-{currency.lower()}",
                    title=_("Money at risk by lifecycle stage (%(currency)s)") % {"currency": currency},
                    desc="; ".join(f"{b.label}: {b.display}" for b in bars),
                    bars=bars,
                    width=WIDE,
                ),
                "rows": [(b.label, b.display) for b in bars],
            }
        )
    from dunning.messages import refusal_text

    refused = sorted(figures.get("refused", []), key=lambda r: -r["n"])
    refused_bars = [Bar(refusal_text(r["reason"]), r["n"], str(r["n"])) for r in refused]
    cohort = figures.get("cohort_days", COHORT_DAYS)
    return {
        "cohort_days": cohort,
        "rates": rates,
        "median_days": f"{median:.1f}" if median is not None else "—",
        "recovered_count": len(figures.get("days_to_recover", [])),
        "attempt_svg": bar_chart(
            chart_id="by-attempt",
            title=_("Recovered invoices by the payment that recovered them, last %(days)d days")
            % {"days": cohort},
            desc="; ".join(f"{b.label}: {b.display}" for b in attempt_bars) or _("Nothing recovered."),
            bars=attempt_bars,
            width=WIDE,
        ),
        "attempt_rows": [(b.label, b.display) for b in attempt_bars],
        "code_svg": bar_chart(
            chart_id="by-code",
            title=_("Recovered of failed invoices by decline reason, last %(days)d days") % {"days": cohort},
            desc="; ".join(f"{b.label}: {b.display}" for b in code_bars) or _("No failed invoices."),
            bars=code_bars,
            width=WIDE,
        ),
        "code_rows": [(label, failed, rec, _percent(rec, failed)) for label, (failed, rec) in codes],
        "risk_charts": risk_charts,
        "refused_svg": bar_chart(
            chart_id="refused",
            title=_("Retries refused by the card networks' rules, last %(days)d days")
            % {"days": figures.get("window_days", WINDOW_DAYS)},
            desc="; ".join(f"{b.label}: {b.display}" for b in refused_bars) or _("No retries were refused."),
            bars=refused_bars,
            width=WIDE,
        ),
        "refused_rows": [(refusal_text(r["reason"]), r["n"], r["overridden"]) for r in refused],
    }


WIDE = CHART_WIDTH  # every chart is drawn this wide and scales to the page width (support/charts.py)


def dashboard_snapshot_read() -> tuple[dict[str, Any], dt.datetime]:
    """The latest snapshot's figures (one indexed read); computed and stored now if there is none."""
    from .models import DashboardSnapshot

    snapshot = DashboardSnapshot.objects.filter(key=SNAPSHOT_KEY).first()
    if snapshot is None:
        from .services import dashboard_snapshot_refresh

        snapshot = dashboard_snapshot_refresh()
    return snapshot.data, snapshot.computed_at


SNAPSHOT_KEY = "recovery"


def recovery_dashboard(*, window_days: int = WINDOW_DAYS) -> dict[str, Any]:
    figures, computed_at = dashboard_snapshot_read()
    window_days = figures.get("window_days", window_days)
    days = [dt.date.fromisoformat(d) for d in figures["days"]]
    past_due = figures["past_due"]
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
    recovered = figures["recovered"]
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
    # Live, not from the snapshot: a refused request is a bug someone must fix now (partial index, few rows).
    invalid, invalid_total = invalid_requests(since=timezone.now() - dt.timedelta(days=window_days))
    declines = [tuple(d) for d in figures["declines"]]
    decline_bars = [Bar(_code_label(code), n, str(n)) for code, n in declines]
    return {
        **money_back_alerts(),
        "window_days": window_days,
        "computed_at": computed_at,
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
        "recovery": recovery_analytics(figures),
    }
