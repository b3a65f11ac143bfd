"""The card networks' retry rules and the retry policies, as pure functions (dunning.recovery)."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dunning import recovery
from dunning.recovery import (
    CardAttempt,
    Refusal,
    RetryContext,
    RetryPlan,
    RetryRule,
    Timing,
    plan_within_budget,
    retry_budget_decide,
    rule_violations,
)

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def decline(at, *, amount=1000, mit=True, reattempt=True, never=False, wait=dt.timedelta(0)):
    return CardAttempt(
        at=at,
        amount_minor=amount,
        merchant_initiated=mit,
        reattempt=reattempt,
        declined=True,
        never_again=never,
        wait=wait,
    )


def decide(history, *, at, brand="visa", amount=1000, mit=True, reattempt=True):
    return retry_budget_decide(
        history=history, brand=brand, amount_minor=amount, merchant_initiated=mit, reattempt=reattempt, at=at
    )


def test_category_1_and_mac_03_21_are_never_retried_until_the_card_succeeds():
    for codes in (
        {"network_decline_code": "43"},
        {"network_advice_code": "03"},
        {"network_advice_code": "21"},
    ):
        never = recovery.never_retry_codes(
            network_advice_code=codes.get("network_advice_code", ""),
            network_decline_code=codes.get("network_decline_code", ""),
            visa_category=0,
        )
        assert never
    assert recovery.never_retry_codes(network_advice_code="", network_decline_code="", visa_category=1)
    assert not recovery.never_retry_codes(
        network_advice_code="24", network_decline_code="51", visa_category=2
    )
    history = [decline(T0, never=True)]
    result = decide(history, at=T0 + 40 * DAY)
    assert (result.allowed, result.not_before, result.reason) == (False, None, Refusal.NEVER_RETRY)
    paid = CardAttempt(
        at=T0 + DAY, amount_minor=1000, merchant_initiated=False, reattempt=True, succeeded=True
    )
    assert decide([*history, paid], at=T0 + 2 * DAY).allowed


def test_mac_24_to_30_waits():
    expected = {
        "24": HOUR,
        "25": DAY,
        "26": 2 * DAY,
        "27": 4 * DAY,
        "28": 6 * DAY,
        "29": 8 * DAY,
        "30": 10 * DAY,
    }
    for code, wait in expected.items():
        history = [decline(T0, wait=recovery.mac_wait(code))]
        early = decide(history, at=T0 + wait - dt.timedelta(minutes=1), brand="mastercard")
        assert (early.allowed, early.not_before, early.reason) == (False, T0 + wait, Refusal.MAC_WAIT)
        assert decide(history, at=T0 + wait, brand="mastercard").allowed


def test_visa_20_reattempts_in_30_days_counted_apart_for_mit_and_cit():
    mit = [decline(T0 + i * HOUR) for i in range(20)]
    cit = [decline(T0 + i * HOUR, mit=False) for i in range(20)]
    at = T0 + DAY
    refused = decide(mit, at=at)
    assert (refused.allowed, refused.reason) == (False, Refusal.VISA_LIMIT)
    assert refused.not_before == T0 + 30 * DAY  # when the oldest of the 20 leaves the window
    assert decide(mit[:19], at=at).allowed
    # Customer-initiated reattempts do not use up the merchant's 20, and the other way round.
    assert decide(cit, at=at).allowed
    assert not decide(cit, at=at, mit=False).allowed
    # A renewal (a first charge, not a reattempt) is not counted as a reattempt.
    assert decide(mit, at=at, reattempt=False).allowed


def test_mastercard_10_declines_a_day_and_35_per_amount_a_month():
    day = [decline(T0 + i * dt.timedelta(minutes=10), amount=1000 + i) for i in range(10)]
    refused = decide(day, at=T0 + 5 * HOUR, brand="mastercard")
    assert (refused.allowed, refused.reason) == (False, Refusal.MC_DAY_LIMIT)
    assert refused.not_before == T0 + DAY
    assert decide(day, at=T0 + DAY, brand="mastercard").allowed
    # Visa cards do not have Mastercard's daily rule.
    assert decide(day, at=T0 + 5 * HOUR, brand="visa", reattempt=False).allowed
    month = [decline(T0 + i * 20 * HOUR, amount=500, reattempt=False) for i in range(35)]
    at = month[-1].at + DAY
    same = decide(month, at=at, brand="mastercard", amount=500, reattempt=False)
    assert (same.allowed, same.reason) == (False, Refusal.MC_AMOUNT_LIMIT)
    assert same.not_before == month[0].at + 30 * DAY
    assert decide(month, at=at, brand="mastercard", amount=501, reattempt=False).allowed


def test_cards_of_other_brands_keep_both_networks_rules():
    day = [decline(T0 + i * dt.timedelta(minutes=10)) for i in range(10)]
    assert not decide(day, at=T0 + 2 * HOUR, brand="amex", reattempt=False).allowed


# --- The property: whatever the history, a schedule that asks the budget never breaks a rule ---

codes = st.sampled_from(["", "", "", "03", "21", "24", "25", "26", "27", "28", "29", "30"])
events = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=36 * 60),  # minutes since the previous event
        st.booleans(),  # merchant-initiated?
        st.booleans(),  # declined? (else succeeded)
        codes,  # the network's advice on a decline
        st.booleans(),  # a Visa Category 1 decline?
        st.sampled_from([500, 1000, 2500]),
    ),
    max_size=60,
)
proposals = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5 * 24 * 60),  # when the policy would like to retry, minutes ahead
        st.booleans(),  # does that retry fail?
        codes,
        st.booleans(),
        st.sampled_from([500, 1000, 2500]),
        st.integers(min_value=0, max_value=3),  # customer-initiated declines that happen meanwhile
    ),
    min_size=1,
    max_size=40,
)


def _attempt(at, *, mit, declined, advice, category_1, amount, reattempt=True):
    return CardAttempt(
        at=at,
        amount_minor=amount,
        merchant_initiated=mit,
        reattempt=reattempt,
        declined=declined,
        succeeded=not declined,
        never_again=declined
        and recovery.never_retry_codes(
            network_advice_code=advice, network_decline_code="", visa_category=1 if category_1 else 0
        ),
        wait=recovery.mac_wait(advice) if declined else dt.timedelta(0),
    )


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    past=events,
    plans=proposals,
    brand=st.sampled_from(["visa", "mastercard", "amex"]),
    smart=st.booleans(),
)
def test_no_schedule_that_asks_the_budget_ever_breaks_a_network_rule(past, plans, brand, smart):
    history: list[CardAttempt] = []
    at = T0
    for gap, mit, declined, advice, category_1, amount in past:
        at += dt.timedelta(minutes=gap)
        history.append(
            _attempt(at, mit=mit, declined=declined, advice=advice, category_1=category_1, amount=amount)
        )
    before = {(when, rule) for when, rule in rule_violations(history=history, brand=brand)}
    now = at
    timing = Timing(timezones={"NL": "Europe/Amsterdam"}) if smart else None
    scheduled: list[dt.datetime] = []
    for ahead, fails, advice, category_1, amount, customer_declines in plans:
        for _k in range(customer_declines):  # the customer tries on their own meanwhile
            now += dt.timedelta(minutes=7)
            history.append(
                _attempt(now, mit=False, declined=True, advice="", category_1=False, amount=amount)
            )
        wish_at = now + dt.timedelta(minutes=ahead)
        if timing is not None:  # as smart_plan() hands it over: already at a good hour
            wish_at = recovery.timed(at=wish_at, timing=timing, country="NL")
        wish = RetryPlan(wish_at, "test", "schedule")
        plan, _refusal = plan_within_budget(
            plan=wish,
            decide=lambda candidate, amount=amount: retry_budget_decide(
                history=history,
                brand=brand,
                amount_minor=amount,
                merchant_initiated=True,
                reattempt=True,
                at=candidate,
            ),
            timing=timing,
            country="NL",
            horizon=now + 90 * DAY,
        )
        if plan.at is None:
            continue
        assert wish.at is not None
        assert plan.at >= wish.at  # the budget only ever delays
        if timing is not None:
            local = plan.at.astimezone(recovery.ZoneInfo("Europe/Amsterdam"))
            assert not (timing.quiet_start <= local.hour < timing.quiet_end)
        history.append(
            _attempt(plan.at, mit=True, declined=fails, advice=advice, category_1=category_1, amount=amount)
        )
        scheduled.append(plan.at)
        now = plan.at
    after = {(when, rule) for when, rule in rule_violations(history=history, brand=brand)}
    assert not {(when, rule) for when, rule in after - before if when in scheduled}


# --- Policies ---

SOFT = RetryRule(code="card_declined", category="soft", visa_category=4, retry=True, retry_days=(1, 3, 6, 10))
FUNDS = RetryRule(
    code="insufficient_funds",
    category="soft",
    visa_category=2,
    retry=True,
    retry_days=(1, 4),
    waits_for_payday=True,
)
HARD = RetryRule(
    code="stolen_card", category="hard", visa_category=1, retry=False, customer_action="new_card"
)
TIMING = Timing(timezones={"NL": "Europe/Amsterdam", "US": "America/New_York"}, paydays={"": (-1, 1)})


def ctx(rule, *, now=T0, attempts=1, first=T0, country="NL"):
    return RetryContext(first_failed_at=first, now=now, attempts=attempts, rule=rule, country=country)


def test_per_code_days_and_no_retry_for_hard_codes():
    plan = recovery.per_code_plan(ctx=ctx(SOFT))
    assert (plan.at, plan.policy, plan.why) == (T0 + DAY, "per_code", "code_schedule")
    # The third charge (two done) takes the third day, even when asked early.
    assert recovery.per_code_plan(ctx=ctx(SOFT, now=T0 + DAY, attempts=3)).at == T0 + 6 * DAY
    assert recovery.per_code_plan(ctx=ctx(SOFT, now=T0 + 10 * DAY, attempts=5)).at is None
    hard = recovery.per_code_plan(ctx=ctx(HARD))
    assert (hard.at, hard.why) == (None, "no_retry_new_card")


def test_smart_timing_avoids_the_night_in_the_cards_country():
    late = dt.datetime(2026, 3, 2, 23, 30, tzinfo=dt.UTC)  # 00:30 in Amsterdam
    plan = recovery.smart_plan(ctx=ctx(SOFT, now=late, first=late), timing=TIMING)
    assert plan.policy == "smart"
    assert plan.at is not None
    local = plan.at.astimezone(recovery.ZoneInfo("Europe/Amsterdam"))
    assert local.hour == 10
    assert plan.at - late >= recovery.MIN_SPACING
    # 23:30 UTC is 18:30 in New York: daytime there, so the retry keeps its time.
    us = recovery.smart_plan(ctx=ctx(SOFT, now=late, first=late, country="US"), timing=TIMING)
    assert us.at == late + dt.timedelta(days=1)
    night_ny = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)  # 01:00 in New York
    us = recovery.smart_plan(ctx=ctx(SOFT, now=night_ny, first=night_ny, country="US"), timing=TIMING)
    assert us.at is not None
    assert us.at.astimezone(recovery.ZoneInfo("America/New_York")).hour == 10


def test_smart_timing_waits_for_payday_for_insufficient_funds():
    # First failure on 28 March: day 1 is 29 March, two days before the payday on the 31st.
    first = dt.datetime(2026, 3, 28, 9, 0, tzinfo=dt.UTC)
    plan = recovery.smart_plan(ctx=ctx(FUNDS, now=first, first=first), timing=TIMING)
    assert plan.why == "payday"
    assert plan.at.astimezone(recovery.ZoneInfo("Europe/Amsterdam")).date() == dt.date(2026, 4, 1)
    # A generic decline does not wait for payday.
    assert recovery.smart_plan(ctx=ctx(SOFT, now=first, first=first), timing=TIMING).why == "code_schedule"
    # US salaries on the 1st and 15th (per-country setting).
    us = Timing(paydays={"": (-1, 1), "US": (1, 15)}, timezones={"US": "America/New_York"})
    assert recovery.next_payday(timing=us, country="US", after=dt.date(2026, 3, 2)) == dt.date(2026, 3, 15)


def test_budget_moves_a_plan_and_says_why():
    history = [decline(T0, wait=recovery.mac_wait("28"))]  # Mastercard: wait 6 days
    plan, refusal = plan_within_budget(
        plan=RetryPlan(T0 + DAY, "per_code", "code_schedule"),
        decide=lambda at: decide(history, at=at, brand="mastercard"),
        timing=None,
        country="",
        horizon=T0 + 60 * DAY,
    )
    assert plan.at == T0 + 6 * DAY
    assert plan.why == "budget_mac_wait"
    assert refusal is not None
    assert refusal.reason == Refusal.MAC_WAIT
    never, _ = plan_within_budget(
        plan=RetryPlan(T0 + DAY, "per_code", "code_schedule"),
        decide=lambda at: decide([decline(T0, never=True)], at=at),
        timing=None,
        country="",
        horizon=T0 + 60 * DAY,
    )
    assert (never.at, never.why) == (None, "budget_never_retry")
