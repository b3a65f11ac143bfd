"""The recovery engine's decisions, as pure functions: no database, no clock, no settings.

The live engine (dunning.services) and the simulator (manage.py simulate_recovery) call exactly this
code: the engine feeds it rows read in one set-based query per account run, the simulator feeds it
an in-memory history. Sources for every network figure are in docs/RECOVERY.md and
../shared/RECOVERY-DATA.md.

- retry_budget_decide(): may this card be charged automatically at `at`, and if not, from when?
- RetryRule / policies: when to retry a declined invoice (fixed days, per decline code, per code +
  timing), each answer saying which policy chose it and why.
- rule_violations(): counts network-rule breaches in a finished history, written independently of
  the budget (a sliding scan, not a forward check) so tests and the simulator can audit schedules.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

# --- Card-network rules ---------------------------------------------------------------------------
# Visa Category 1 ("issuer will never approve") response codes: never reattempted.
# Source: Checkout.com Visa response-code categories; Evolve; bill1st (RECOVERY-DATA.md).
VISA_CATEGORY_1 = frozenset({"04", "07", "12", "14", "15", "41", "43", "46", "57", "R0", "R1", "R3"})
# Mastercard Merchant Advice Codes 03 (do not try again) and 21 (payment cancellation): never retry;
# retrying within 30 days is charged per item. Source: Mastercard via Braintree, Maast; TabaPay.
MAC_NEVER = frozenset({"03", "21"})
# MAC 24–30: retry after 1 h / 24 h / 2 / 4 / 6 / 8 / 10 days. Source: Mastercard via Braintree, Maast.
MAC_WAIT: Mapping[str, dt.timedelta] = {
    "24": dt.timedelta(hours=1),
    "25": dt.timedelta(hours=24),
    "26": dt.timedelta(days=2),
    "27": dt.timedelta(days=4),
    "28": dt.timedelta(days=6),
    "29": dt.timedelta(days=8),
    "30": dt.timedelta(days=10),
}
# Visa, since 19 May 2025: at most 20 reattempts of one card in a rolling 30 days, CIT and MIT
# counted apart; a fee from the 21st. Source: Checkout.com support article 25482040901394.
VISA_MAX_REATTEMPTS = 20
VISA_WINDOW = dt.timedelta(days=30)
# Mastercard excessive attempts: fees beyond 10 declines of one card in 24 h, or beyond 35 declines
# of the same card and amount in 30 days. Source: Braintree (Mastercard program notices).
MC_MAX_DECLINES_DAY = 10
MC_DAY = dt.timedelta(hours=24)
MC_MAX_SAME_AMOUNT = 35
MC_WINDOW = dt.timedelta(days=30)

VISA, MASTERCARD = "visa", "mastercard"


class Refusal(enum.StrEnum):
    """Why the budget refused a charge. Stored on RetryRefusal; shown in plain words by the timeline."""

    NEVER_RETRY = "never_retry"  # Visa Category 1 or Mastercard MAC 03/21 on this card
    MAC_WAIT = "mac_wait"  # Mastercard asked us to wait (MAC 24–30)
    VISA_LIMIT = "visa_limit"  # 20 reattempts in 30 days reached
    MC_DAY_LIMIT = "mc_day_limit"  # 10 declines in 24 hours reached
    MC_AMOUNT_LIMIT = "mc_amount_limit"  # 35 declines of this amount in 30 days reached


@dataclass(frozen=True, slots=True)
class CardAttempt:
    """One charge of a card, as the budget needs it."""

    at: dt.datetime
    amount_minor: int
    merchant_initiated: bool  # MIT (off-session: renewals, retries, support) vs CIT (customer present)
    reattempt: bool  # a retry of a declined charge, not an invoice's first charge
    declined: bool = False
    succeeded: bool = False
    never_again: bool = False  # this decline forbids retrying the card (Category 1, MAC 03/21)
    wait: dt.timedelta = dt.timedelta(0)  # MAC 24–30: no charge of the card before at + wait


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    allowed: bool
    not_before: dt.datetime | None = None  # None with allowed=False: never (until the card changes)
    reason: str = ""  # a Refusal value, "" when allowed


def never_retry_codes(*, network_advice_code: str, network_decline_code: str, visa_category: int) -> bool:
    """Whether a decline forbids retrying the card: Visa Category 1 (by the network's own code, or the
    decline code's Visa category from the policy table) or Mastercard MAC 03/21."""
    return (
        network_advice_code.strip() in MAC_NEVER
        or network_decline_code.strip().upper() in VISA_CATEGORY_1
        or visa_category == 1
    )


def mac_wait(network_advice_code: str) -> dt.timedelta:
    return MAC_WAIT.get(network_advice_code.strip(), dt.timedelta(0))


def _applies(brand: str, network: str) -> bool:
    # A card of another brand (Amex, unknown) keeps both networks' rules: the stricter reading.
    return brand == network or brand not in (VISA, MASTERCARD)


def _window_free_at(times: list[dt.datetime], limit: int, window: dt.timedelta) -> dt.datetime:
    """When the count of `times` inside a rolling window drops below `limit` (times sorted, len ≥ limit)."""
    return times[len(times) - limit] + window


def retry_budget_decide(
    *,
    history: Iterable[CardAttempt],
    brand: str,
    amount_minor: int,
    merchant_initiated: bool,
    reattempt: bool,
    at: dt.datetime,
) -> BudgetDecision:
    """May this card be charged at `at`? `history` is every earlier attempt on the same card (any
    amount, any initiator; older than 30 days may be left out; one at the same instant counts). Refusals name the rule and, unless
    the card may never be retried, the first moment the charge would be allowed."""
    past = sorted((a for a in history if a.at <= at), key=lambda a: a.at)
    last_success = max((a.at for a in past if a.succeeded), default=None)
    if any(a.never_again and (last_success is None or a.at > last_success) for a in past):
        return BudgetDecision(False, None, Refusal.NEVER_RETRY)
    refusals: list[tuple[dt.datetime, str]] = []
    waits = [a.at + a.wait for a in past if a.declined and a.wait and a.at + a.wait > at]
    if waits:
        refusals.append((max(waits), Refusal.MAC_WAIT))
    if reattempt and _applies(brand, VISA):
        counted = [
            a.at
            for a in past
            if a.reattempt and a.merchant_initiated == merchant_initiated and a.at > at - VISA_WINDOW
        ]
        if len(counted) >= VISA_MAX_REATTEMPTS:
            refusals.append((_window_free_at(counted, VISA_MAX_REATTEMPTS, VISA_WINDOW), Refusal.VISA_LIMIT))
    if _applies(brand, MASTERCARD):
        day = [a.at for a in past if a.declined and a.at > at - MC_DAY]
        if len(day) >= MC_MAX_DECLINES_DAY:
            refusals.append((_window_free_at(day, MC_MAX_DECLINES_DAY, MC_DAY), Refusal.MC_DAY_LIMIT))
        same = [a.at for a in past if a.declined and a.amount_minor == amount_minor and a.at > at - MC_WINDOW]
        if len(same) >= MC_MAX_SAME_AMOUNT:
            refusals.append((_window_free_at(same, MC_MAX_SAME_AMOUNT, MC_WINDOW), Refusal.MC_AMOUNT_LIMIT))
    if not refusals:
        return BudgetDecision(True)
    not_before, reason = max(refusals)
    return BudgetDecision(False, not_before, reason)


def rule_violations(*, history: Sequence[CardAttempt], brand: str) -> list[tuple[dt.datetime, str]]:
    """Every merchant-initiated attempt in a card's finished history that broke a network rule.

    Written as a plain scan over the whole history, separately from retry_budget_decide(), so that
    a bug in one does not hide in the other. Returns (time, rule) pairs.
    """
    attempts = sorted(history, key=lambda a: a.at)
    found: list[tuple[dt.datetime, str]] = []
    for i, a in enumerate(attempts):
        if not a.merchant_initiated:
            continue
        before = attempts[:i]
        blocked = False
        for b in reversed(before):
            if b.succeeded:
                break
            if b.never_again:
                blocked = True
                break
        if blocked:
            found.append((a.at, Refusal.NEVER_RETRY))
        if any(b.declined and b.wait and a.at < b.at + b.wait for b in before):
            found.append((a.at, Refusal.MAC_WAIT))
        if a.reattempt and _applies(brand, VISA):
            n = sum(1 for b in before if b.reattempt and b.merchant_initiated and a.at - b.at < VISA_WINDOW)
            if n + 1 > VISA_MAX_REATTEMPTS:
                found.append((a.at, Refusal.VISA_LIMIT))
        if _applies(brand, MASTERCARD):
            if sum(1 for b in before if b.declined and a.at - b.at < MC_DAY) + 1 > MC_MAX_DECLINES_DAY:
                found.append((a.at, Refusal.MC_DAY_LIMIT))
            same = sum(
                1
                for b in before
                if b.declined and b.amount_minor == a.amount_minor and a.at - b.at < MC_WINDOW
            )
            if same + 1 > MC_MAX_SAME_AMOUNT:
                found.append((a.at, Refusal.MC_AMOUNT_LIMIT))
    return found


# --- Decline-code policy --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryRule:
    """One row of the decline-code policy table (dunning.models.DeclineCode), as the policies read it."""

    code: str
    category: str  # soft / hard / authentication_required / unknown
    visa_category: int = 0  # 1–4; 0 when the code has no Visa equivalent
    retry: bool = True
    retry_days: tuple[int, ...] = ()
    customer_action: str = "none"
    waits_for_payday: bool = False


# --- Policies: when to retry ----------------------------------------------------------------------


class PolicyName(enum.StrEnum):
    FIXED = "fixed"  # days per decline category (the engine's original behaviour)
    KILL_BILL = "kill_bill"  # fixed days 8, 8, 8 (Kill Bill's default)
    STRIPE_8_IN_14 = "stripe_8_in_14"  # 8 tries within 2 weeks (Stripe's recommended default)
    PER_CODE = "per_code"  # days per decline code from the policy table
    SMART = "smart"  # per code, plus timing: hour of day, payday, network waits
    SUPPORT = "support"  # support's "retry now"


@dataclass(frozen=True, slots=True)
class Timing:
    """Settings of the timing policy (dunning settings: DUNNING_QUIET_HOURS, DUNNING_RETRY_HOUR,
    DUNNING_PAYDAYS, DUNNING_COUNTRY_TIMEZONES)."""

    quiet_start: int = 0  # no retries from 00:00 …
    quiet_end: int = 5  # … to 05:00 local time: declines are likelier then (Recurly, "time of day")
    retry_hour: int = 10  # business hours: about 18 % declines vs 25–28 % at night (Recurly)
    # Days of the month salaries land; -1 is the last day. Default end / start of month (assumption,
    # RECOVERY-DATA.md: "most European salaries land on the last working day of the month or the 1st").
    paydays: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: {"": (-1, 1)})
    timezones: Mapping[str, str] = field(default_factory=dict)
    default_timezone: str = "UTC"
    payday_lookahead_days: int = 2  # a retry due this close before a payday waits for it


@dataclass(frozen=True, slots=True)
class RetryContext:
    first_failed_at: dt.datetime
    now: dt.datetime  # when the decline was answered
    attempts: int  # charges of this invoice so far, the first included
    rule: RetryRule
    country: str = ""


@dataclass(frozen=True, slots=True)
class RetryPlan:
    at: dt.datetime | None  # None: no automatic retry
    policy: str
    why: str  # a key of dunning.messages.PLAN_REASONS


def _first_day_after(
    first_failed_at: dt.datetime, days: Iterable[int], now: dt.datetime
) -> dt.datetime | None:
    for day in sorted(days):
        at = first_failed_at + dt.timedelta(days=day)
        if at > now:
            return at
    return None


def fixed_plan(*, ctx: RetryContext, days: Sequence[int], policy: str) -> RetryPlan:
    """A fixed schedule: days after the first failure, whatever the code."""
    at = _first_day_after(ctx.first_failed_at, days, ctx.now)
    return RetryPlan(at, policy, "schedule" if at else "schedule_used")


def per_code_plan(
    *, ctx: RetryContext, policy: str = PolicyName.PER_CODE, gap: dt.timedelta = dt.timedelta(0)
) -> RetryPlan:
    """The decline code's own days; none for codes the table does not retry. With `gap`, a day that
    comes sooner than that after the previous attempt is skipped."""
    rule = ctx.rule
    if not rule.retry:
        return RetryPlan(None, policy, f"no_retry_{rule.customer_action}")
    # The n-th retry takes the n-th day at the earliest (timing may have moved a retry earlier in its
    # day), and a day already past is skipped rather than fired late in a burst.
    remaining = sorted(rule.retry_days)[max(ctx.attempts - 1, 0) :]
    at = _first_day_after(ctx.first_failed_at, remaining, ctx.now + gap)
    return RetryPlan(at, policy, "code_schedule" if at else "schedule_used")


def _zone(timing: Timing, country: str) -> ZoneInfo:
    return ZoneInfo(timing.timezones.get(country.upper(), timing.default_timezone))


def _paydays_of_month(timing: Timing, country: str, year: int, month: int) -> list[dt.date]:
    days = timing.paydays.get(country.upper()) or timing.paydays.get("") or ()
    last = calendar.monthrange(year, month)[1]
    return sorted({dt.date(year, month, last if d == -1 else min(d, last)) for d in days})


def next_payday(*, timing: Timing, country: str, after: dt.date) -> dt.date | None:
    """The first payday strictly after `after` (within two months)."""
    year, month = after.year, after.month
    for _ in range(3):
        for day in _paydays_of_month(timing, country, year, month):
            if day > after:
                return day
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


# A retry moved to a better hour stays at least this long after the previous attempt.
MIN_SPACING = dt.timedelta(hours=6)
# Spacing: timing may have moved the last retry later in its day; the next one keeps this distance.
SMART_GAP = dt.timedelta(hours=12)


def timed(
    *, at: dt.datetime, timing: Timing, country: str, earliest: dt.datetime | None = None
) -> dt.datetime:
    """`at` kept out of the quiet hours of the card's country (00:00–05:00: Recurly measured 25–28 %
    declines at night against about 18 % in business hours): a time in them moves to the retry hour
    (10:00) of that local day. Other hours stay, since no published figure says they differ. Never
    before `earliest` (default: `at`)."""
    earliest = at if earliest is None else earliest
    zone = _zone(timing, country)
    at = max(at, earliest)
    local = at.astimezone(zone)
    if not (timing.quiet_start <= local.hour < timing.quiet_end):
        return at  # outside the quiet hours: the published data gives no reason to move it
    candidate = local.replace(hour=timing.retry_hour, minute=0, second=0, microsecond=0)
    while candidate < earliest:
        candidate += dt.timedelta(days=1)
    return candidate.astimezone(dt.UTC)


def smart_plan(*, ctx: RetryContext, timing: Timing) -> RetryPlan:
    """Per code, then timing: insufficient funds waits for the day after payday when one is near,
    and every retry lands at a good hour in the card's country."""
    base = per_code_plan(ctx=ctx, policy=PolicyName.SMART, gap=SMART_GAP)
    if base.at is None:
        return base
    at, why = base.at, "code_schedule"
    if ctx.rule.waits_for_payday:
        local_day = at.astimezone(_zone(timing, ctx.country)).date()
        payday = next_payday(timing=timing, country=ctx.country, after=local_day - dt.timedelta(days=1))
        just_paid = next_payday(timing=timing, country=ctx.country, after=local_day - dt.timedelta(days=3))
        already_after = just_paid is not None and just_paid < local_day
        if (
            not already_after
            and payday is not None
            and (payday - local_day).days <= timing.payday_lookahead_days
        ):
            day_after = payday + dt.timedelta(days=1)
            if day_after > local_day:
                zone = _zone(timing, ctx.country)
                at = dt.datetime.combine(day_after, dt.time(timing.retry_hour), tzinfo=zone).astimezone(
                    dt.UTC
                )
                why = "payday"
    at = timed(at=at, timing=timing, country=ctx.country, earliest=max(ctx.now + MIN_SPACING, ctx.now))
    return RetryPlan(at, PolicyName.SMART, why)


def plan_within_budget(
    *,
    plan: RetryPlan,
    decide: Callable[[dt.datetime], BudgetDecision],
    timing: Timing | None,
    country: str,
    horizon: dt.datetime,
) -> tuple[RetryPlan, BudgetDecision | None]:
    """Move a plan forward until the budget allows it (or give up past `horizon`). With timing, each
    moved time is put at a good hour again. Returns the plan and the last refusal (None if none)."""
    if plan.at is None:
        return plan, None
    at = plan.at
    refusal: BudgetDecision | None = None
    for _ in range(8):
        decision = decide(at)
        if decision.allowed:
            if refusal is None:
                return plan, None
            return RetryPlan(at, plan.policy, f"budget_{refusal.reason}"), refusal
        refusal = decision
        if decision.not_before is None or decision.not_before > horizon:
            return RetryPlan(None, plan.policy, f"budget_{decision.reason}"), decision
        at = decision.not_before
        if timing is not None:
            at = timed(at=at, timing=timing, country=country, earliest=decision.not_before)
    return RetryPlan(None, plan.policy, f"budget_{refusal.reason if refusal else ''}"), refusal
