"""The recovery simulator behind `manage.py simulate_recovery`.

It draws a population of failed renewals and replays each retry policy against the same population
and seed. Every retry decision goes through the live engine's own code: the policies and the retry
budget of dunning.recovery, and the decline-code table through dunning.policy.decline_entry(); only
the bank is simulated. Parameters default to the published figures of ../shared/RECOVERY-DATA.md
(sources in docs/RECOVERY.md); the ones marked "assumption" there are assumptions here too, and every
one can be overridden from a JSON or TOML file.
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import json
import math
import random
import statistics
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from . import recovery
from .policy import DeclineEntry
from .recovery import CardAttempt, PolicyName, RetryContext, RetryPlan, Timing

DAY = dt.timedelta(days=1)

DEFAULTS: dict[str, Any] = {
    "size": 5000,
    # First failures spread over one month (so paydays fall anywhere in the retry windows).
    "start": "2026-01-05T00:00:00+00:00",
    "spread_days": 30,
    "horizon_days": 60,
    # Amount in euros: log-normal around a typical monthly seat bill (assumption).
    "amount_median_eur": 30.0,
    "amount_sigma": 1.0,
    "amount_min_eur": 5.0,
    "amount_max_eur": 2000.0,
    "brands": {"visa": 0.58, "mastercard": 0.37, "amex": 0.05},  # assumption
    "countries": {"NL": 0.30, "DE": 0.20, "FR": 0.15, "GB": 0.15, "US": 0.20},  # assumption
    # Recurly, "How do you compare" (836 sites, recurring, 2014–2016), blended at 61 % credit; expired
    # card 4 % and authentication required 3 % taken out of "generic decline" (assumption).
    "decline_mix": {
        "card_declined": 40.1,  # generic decline
        "do_not_honor": 19.8,  # temporary hold
        "insufficient_funds": 15.8,
        "stolen_card": 2.0,  # fraud / stolen card 5.6 % split (assumption)
        "lost_card": 1.6,
        "fraudulent": 2.0,
        "incorrect_number": 4.3,  # invalid card number
        "transaction_not_allowed": 1.5,  # invalid transaction
        "processing_error": 5.8,  # other
        "expired_card": 4.0,
        "authentication_required": 3.0,
    },
    # Share of Mastercard declines that carry a Merchant Advice Code (assumption).
    "mastercard_mac": {"soft_wait": 0.10, "soft_never": 0.05, "hard_never": 0.50},
    # Success probability of one retry on day d after the first failure, no customer action
    # (RECOVERY-DATA.md per-code curve: an assumption fitted to the published totals).
    "curve_days": [1, 3, 5, 7, 10, 14, 21, 28],
    "curves": {
        "funds": [0.175, 0.148, 0.125, 0.106, 0.083, 0.059, 0.033, 0.018],
        "generic": [0.140, 0.105, 0.079, 0.059, 0.039, 0.022, 0.008, 0.003],
        "processing": [0.83, 0.11, 0.015, 0, 0, 0, 0, 0],
        "none": [0, 0, 0, 0, 0, 0, 0, 0],
    },
    "curve_of_code": {
        "insufficient_funds": "funds",
        "card_declined": "generic",
        "do_not_honor": "generic",
        "processing_error": "processing",
    },
    # Decline rate about 18 % in business hours vs 25–28 % between 01:00 and 04:00 (Recurly, "time of
    # day is critical"): approval × (1 − 0.265) / (1 − 0.18) at night.
    "night_factor": 0.896,
    "night_hours": [0, 5],
    # Payday effect on insufficient funds (assumption): ×1.3 in the 2 days after, ×0.8 in the 3 before.
    "payday_after_factor": 1.3,
    "payday_after_days": 2,
    "payday_before_factor": 0.8,
    "payday_before_days": 3,
    # Customer action (mail with a pay link) by day 28 (assumption, RECOVERY-DATA.md).
    "customer_action": {"soft": 0.135, "expired_card": 0.425, "authentication_required": 0.40, "hard": 0.20},
    "customer_action_days": 28,
    # Network fees per offending attempt, in euros (US$ taken 1:1, assumption). Visa: $0.25
    # interregional from 25 Apr 2026, €1 after R0/R1/R3 (payway, Checkout.com, ixopay). Mastercard:
    # $0.50 per excessive attempt (2025, Braintree); retry after MAC 03/21 charged per item (TabaPay;
    # amount not published: $0.50 assumed).
    "fees": {"visa": 0.25, "visa_stop_payment": 1.0, "mastercard": 0.50},
    "policies": {
        "kill_bill": {"days": [8, 16, 24]},
        "stripe_8_in_14": {"days": [2, 4, 5, 7, 9, 10, 12, 14]},
    },
}

POLICY_ORDER = (PolicyName.KILL_BILL, PolicyName.STRIPE_8_IN_14, PolicyName.PER_CODE, PolicyName.SMART)
STOP_PAYMENT = frozenset({"R0", "R1", "R3"})


def parameters(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """DEFAULTS with `overrides` merged in (nested dictionaries merge; anything else replaces)."""
    merged = copy.deepcopy(DEFAULTS)

    def merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
        for key, value in new.items():
            if isinstance(value, Mapping) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    merge(merged, overrides or {})
    return merged


def load_overrides(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        return tomllib.loads(text)
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the parameter file must hold an object at the top")
    return data


@dataclass(frozen=True, slots=True)
class FailedRenewal:
    index: int
    first_failed_at: dt.datetime
    amount_minor: int  # euro cents
    brand: str
    country: str
    code: str
    advice: str  # Mastercard Merchant Advice Code, "" when none
    network_code: str  # Visa response code, "" when none
    uniforms: tuple[float, ...]  # one per day since the first failure: common random numbers
    customer_at: dt.datetime | None  # when the customer pays by themselves, if ever


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[float(weights[k]) for k in keys])[0]


def population(
    *, params: Mapping[str, Any], seed: int, entry_of: Callable[[str], DeclineEntry]
) -> list[FailedRenewal]:
    """The failed renewals, the same for every policy with the same seed."""
    rng = random.Random(seed)
    start = dt.datetime.fromisoformat(params["start"])
    horizon = int(params["horizon_days"])
    mac = params["mastercard_mac"]
    action = params["customer_action"]
    items = []
    for i in range(int(params["size"])):
        first = start + dt.timedelta(seconds=rng.randrange(int(params["spread_days"]) * 86400))
        euros = math.exp(rng.gauss(math.log(params["amount_median_eur"]), params["amount_sigma"]))
        euros = min(max(euros, params["amount_min_eur"]), params["amount_max_eur"])
        brand = _pick(rng, params["brands"])
        country = _pick(rng, params["countries"])
        code = _pick(rng, params["decline_mix"])
        entry = entry_of(code)
        advice, network_code = "", ""
        roll = rng.random()
        if brand == recovery.MASTERCARD:
            if entry.rule.category == "soft":
                if roll < mac["soft_never"]:
                    advice = rng.choice(sorted(recovery.MAC_NEVER))
                elif roll < mac["soft_never"] + mac["soft_wait"]:
                    advice = rng.choice(sorted(recovery.MAC_WAIT))
            elif entry.rule.category == "hard" and roll < mac["hard_never"]:
                advice = "03"
        elif brand == recovery.VISA:
            network_code = entry.visa_response_code
        uniforms = tuple(rng.random() for _ in range(horizon + 1))
        kind = (
            code
            if code in ("expired_card", "authentication_required")
            else ("soft" if entry.rule.category == "soft" else "hard")
        )
        customer_at = None
        if rng.random() < float(action.get(kind, 0)):
            customer_at = first + dt.timedelta(
                seconds=rng.randrange(86400, int(params["customer_action_days"]) * 86400)
            )
        items.append(
            FailedRenewal(
                index=i,
                first_failed_at=first,
                amount_minor=round(euros * 100),
                brand=brand,
                country=country,
                code=code,
                advice=advice,
                network_code=network_code,
                uniforms=uniforms,
                customer_at=customer_at,
            )
        )
    return items


def _curve(params: Mapping[str, Any], code: str, day: float) -> float:
    values = params["curves"][params["curve_of_code"].get(code, "none")]
    days = params["curve_days"]
    if day <= days[0]:
        return float(values[0])
    if day >= days[-1]:
        return float(values[-1]) * max(0.0, 1 - (day - days[-1]) / days[-1])
    k = bisect.bisect_right(days, day)
    d0, d1 = days[k - 1], days[k]
    return float(values[k - 1] + (values[k] - values[k - 1]) * (day - d0) / (d1 - d0))


def success_probability(
    *, params: Mapping[str, Any], item: FailedRenewal, at: dt.datetime, timing: Timing, never: bool
) -> float:
    """The simulated bank: the per-code curve, the hour of day in the card's country, the payday."""
    if never:
        return 0.0  # the issuer said never (Category 1 or MAC 03/21): it will not approve
    wait = recovery.mac_wait(item.advice)
    if wait and at < item.first_failed_at + wait:
        return 0.0
    day = (at - item.first_failed_at) / DAY
    p = _curve(params, item.code, day)
    local = at.astimezone(ZoneInfo(timing.timezones.get(item.country, timing.default_timezone)))
    night = params["night_hours"]
    if night[0] <= local.hour < night[1]:
        p *= float(params["night_factor"])
    if item.code == "insufficient_funds":
        today = local.date()
        before = recovery.next_payday(timing=timing, country=item.country, after=today - DAY)
        if before is not None and 0 < (before - today).days <= int(params["payday_before_days"]):
            p *= float(params["payday_before_factor"])
        for back in range(int(params["payday_after_days"])):
            day_before = today - dt.timedelta(days=back + 1)
            if (
                recovery.next_payday(timing=timing, country=item.country, after=day_before - DAY)
                == day_before
            ):
                p *= float(params["payday_after_factor"])
                break
    return min(p, 1.0)


@dataclass
class Outcome:
    recovered_minor: int = 0
    by_retries_minor: int = 0
    attempts: int = 0
    fees: float = 0.0
    violations: int = 0
    recovered_day: float | None = None


@dataclass
class PolicyReport:
    policy: str
    failed_minor: int = 0
    recovered_minor: int = 0
    by_retries_minor: int = 0
    attempts: int = 0
    fees_eur: float = 0.0
    violations: int = 0
    recovered: int = 0
    days: list[float] = field(default_factory=list)
    cumulative_eur: list[float] = field(default_factory=list)

    @property
    def euros_per_attempt(self) -> float:
        if not self.attempts:
            return 0.0
        return (self.by_retries_minor / 100 - self.fees_eur) / self.attempts

    @property
    def recovery_rate(self) -> float:
        return self.recovered_minor / self.failed_minor if self.failed_minor else 0.0

    @property
    def median_days(self) -> float:
        return statistics.median(self.days) if self.days else 0.0

    @property
    def within_10_days(self) -> float:
        return sum(1 for d in self.days if d <= 10) / len(self.days) if self.days else 0.0


def _fee(params: Mapping[str, Any], item: FailedRenewal, rules: set[str]) -> float:
    if not rules:
        return 0.0
    fees = params["fees"]
    if item.network_code in STOP_PAYMENT and recovery.Refusal.NEVER_RETRY in rules:
        return float(fees["visa_stop_payment"])
    if item.brand == recovery.VISA:
        return float(fees["visa"])
    if item.brand == recovery.MASTERCARD:
        return float(fees["mastercard"])
    return max(float(fees["visa"]), float(fees["mastercard"]))


def replay(
    *,
    item: FailedRenewal,
    policy: str,
    params: Mapping[str, Any],
    entry: DeclineEntry,
    timing: Timing,
) -> Outcome:
    """One failed renewal under one policy: the engine's planning and budget code, a simulated bank."""
    rule = entry.rule
    never = recovery.never_retry_codes(
        network_advice_code=item.advice,
        network_decline_code=item.network_code,
        visa_category=rule.visa_category,
    )
    wait = recovery.mac_wait(item.advice)
    first = CardAttempt(
        at=item.first_failed_at,
        amount_minor=item.amount_minor,
        merchant_initiated=True,
        reattempt=False,
        declined=True,
        never_again=never,
        wait=wait,
    )
    history = [first]
    end = item.first_failed_at + dt.timedelta(days=int(params["horizon_days"]))
    outcome = Outcome()
    now = item.first_failed_at
    uses_budget = policy in (PolicyName.PER_CODE, PolicyName.SMART)
    for _ in range(64):
        ctx = RetryContext(
            first_failed_at=item.first_failed_at,
            now=now,
            attempts=len(history),
            rule=rule,
            country=item.country,
        )
        plan: RetryPlan
        if policy in (PolicyName.KILL_BILL, PolicyName.STRIPE_8_IN_14):
            plan = recovery.fixed_plan(ctx=ctx, days=params["policies"][policy]["days"], policy=policy)
        elif policy == PolicyName.SMART:
            plan = recovery.smart_plan(ctx=ctx, timing=timing)
        else:
            plan = recovery.per_code_plan(ctx=ctx)
        if uses_budget:
            plan, _refusal = recovery.plan_within_budget(
                plan=plan,
                decide=lambda at: recovery.retry_budget_decide(
                    history=history,
                    brand=item.brand,
                    amount_minor=item.amount_minor,
                    merchant_initiated=True,
                    reattempt=True,
                    at=at,
                ),
                timing=timing if policy == PolicyName.SMART else None,
                country=item.country,
                horizon=end,
            )
        if plan.at is None or plan.at > end:
            break
        if item.customer_at is not None and item.customer_at <= plan.at:
            break
        at = plan.at
        p = success_probability(params=params, item=item, at=at, timing=timing, never=never)
        day = min(int((at - item.first_failed_at) / DAY), len(item.uniforms) - 1)
        succeeded = item.uniforms[day] < p
        attempt = CardAttempt(
            at=at,
            amount_minor=item.amount_minor,
            merchant_initiated=True,
            reattempt=True,
            declined=not succeeded,
            succeeded=succeeded,
            never_again=never and not succeeded,
            wait=wait if not succeeded else dt.timedelta(0),
        )
        broken = {
            rule_
            for when, rule_ in recovery.rule_violations(history=[*history, attempt], brand=item.brand)
            if when == at
        }
        history.append(attempt)
        outcome.attempts += 1
        if broken:
            outcome.violations += 1
            outcome.fees += _fee(params, item, broken)
        if succeeded:
            outcome.recovered_minor = outcome.by_retries_minor = item.amount_minor
            outcome.recovered_day = (at - item.first_failed_at) / DAY
            return outcome
        now = at
    if item.customer_at is not None and item.customer_at <= end:
        outcome.recovered_minor = item.amount_minor
        outcome.recovered_day = (item.customer_at - item.first_failed_at) / DAY
    return outcome


def simulate(
    *,
    params: Mapping[str, Any],
    seed: int,
    entry_of: Callable[[str], DeclineEntry],
    timing: Timing,
    policies: Sequence[str] = POLICY_ORDER,
    progress: Callable[[int, int], None] | None = None,
) -> list[PolicyReport]:
    """Replay every policy over the same population; reports in the order of `policies`."""
    items = population(params=params, seed=seed, entry_of=entry_of)
    horizon = int(params["horizon_days"])
    reports = {p: PolicyReport(policy=p, cumulative_eur=[0.0] * (horizon + 1)) for p in policies}
    entries: dict[str, DeclineEntry] = {}
    total = len(items) * len(policies)
    done = 0
    for item in items:
        entry = entries.get(item.code) or entries.setdefault(item.code, entry_of(item.code))
        for name in policies:
            out = replay(item=item, policy=name, params=params, entry=entry, timing=timing)
            report = reports[name]
            report.failed_minor += item.amount_minor
            report.recovered_minor += out.recovered_minor
            report.by_retries_minor += out.by_retries_minor
            report.attempts += out.attempts
            report.fees_eur += out.fees
            report.violations += out.violations
            if out.recovered_day is not None:
                report.recovered += 1
                report.days.append(out.recovered_day)
                report.cumulative_eur[min(horizon, math.ceil(out.recovered_day))] += out.recovered_minor / 100
            done += 1
        if progress is not None and (item.index % 50 == 0 or item.index == len(items) - 1):
            progress(done, total)
    for report in reports.values():
        running = 0.0
        for d, value in enumerate(report.cumulative_eur):
            running += value
            report.cumulative_eur[d] = round(running, 2)
    return [reports[p] for p in policies]


def table_rows(reports: Sequence[PolicyReport]) -> Iterator[list[str]]:
    yield [
        "policy",
        "recovered €",
        "by retries €",
        "rate",
        "attempts",
        "€/attempt net",
        "fees €",
        "violations",
        "median days",
        "≤10 days",
    ]
    for r in reports:
        yield [
            r.policy,
            f"{r.recovered_minor / 100:,.2f}",
            f"{r.by_retries_minor / 100:,.2f}",
            f"{r.recovery_rate:.1%}",
            f"{r.attempts:,}",
            f"{r.euros_per_attempt:.3f}",
            f"{r.fees_eur:,.2f}",
            f"{r.violations:,}",
            f"{r.median_days:.1f}",
            f"{r.within_10_days:.0%}",
        ]


def format_table(reports: Sequence[PolicyReport]) -> str:
    rows = list(table_rows(reports))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


COLOURS = ("#BC4B09", "#8764B8", "#0E700E", "#0F6CBD")


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def svg_chart(reports: Sequence[PolicyReport], *, title: str, labels: Mapping[str, str]) -> str:
    """Cumulative euros recovered per day since the first failure, one line per policy (plain SVG)."""
    width, height, left, right, top_pad, bottom = 900, 420, 90, 20, 40, 90
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    days = max((len(r.cumulative_eur) for r in reports), default=1) - 1 or 1
    top = max((max(r.cumulative_eur, default=0) for r in reports), default=0) or 1.0

    def x(d: int) -> float:
        return left + plot_w * d / days

    def y(v: float) -> float:
        return top_pad + plot_h * (1 - v / top)

    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-labelledby="t d" font-family="Segoe UI, sans-serif">',
        f'<title id="t">{_esc(title)}</title>',
        '<desc id="d">'
        + _esc(
            "; ".join(f"{labels.get(r.policy, r.policy)}: €{r.recovered_minor / 100:,.0f}" for r in reports)
        )
        + "</desc>",
        f'<rect width="{width}" height="{height}" fill="#FFFFFF"/>',
        f'<text x="{left}" y="24" font-size="16" fill="#242424">{_esc(title)}</text>',
    ]
    for k in range(5):
        v = top * k / 4
        out.append(
            f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + plot_w}" y2="{y(v):.1f}" stroke="#E0E0E0"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="12" fill="#424242" text-anchor="end">'
            f"€{v:,.0f}</text>"
        )
    for d in range(0, days + 1, 10 if days > 20 else 1):
        out.append(
            f'<text x="{x(d):.1f}" y="{top_pad + plot_h + 18}" font-size="12" fill="#424242" '
            f'text-anchor="middle">{d}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{top_pad + plot_h + 36}" font-size="12" fill="#424242" '
        'text-anchor="middle">days since the first failed charge</text>'
    )
    for k, r in enumerate(reports):
        colour = COLOURS[k % len(COLOURS)]
        points = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in enumerate(r.cumulative_eur))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        lx = left + (plot_w / max(1, len(reports))) * k
        out.append(
            f'<rect x="{lx:.1f}" y="{height - 26}" width="14" height="4" fill="{colour}"/>'
            f'<text x="{lx + 20:.1f}" y="{height - 20}" font-size="13" fill="#242424">'
            f"{_esc(labels.get(r.policy, r.policy))}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
