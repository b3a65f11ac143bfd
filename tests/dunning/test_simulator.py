"""The recovery simulator: same population for every policy, the engine's own decisions, a report."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from dunning.models import DeclineCode, RetryPolicy
from dunning.policy import decline_entry, timing_from_settings
from dunning.simulation import parameters, population, simulate

pytestmark = pytest.mark.django_db


def entry_of():
    policies = {p.category: p for p in RetryPolicy.objects.all()}
    return lambda code: decline_entry(code, policies=policies)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_per_code_with_timing_beats_both_fixed_schedules_per_attempt_with_no_violations(seed):
    reports = {
        r.policy: r
        for r in simulate(
            params=parameters({"size": 600}), seed=seed, entry_of=entry_of(), timing=timing_from_settings()
        )
    }
    smart, kill_bill, stripe = reports["smart"], reports["kill_bill"], reports["stripe_8_in_14"]
    assert smart.violations == 0
    assert reports["per_code"].violations == 0
    assert smart.euros_per_attempt > kill_bill.euros_per_attempt
    assert smart.euros_per_attempt > stripe.euros_per_attempt
    # The fixed schedules retry stolen cards and MAC 03: the networks' rules catch them.
    assert kill_bill.violations > 0
    assert stripe.violations > 0
    assert stripe.fees_eur > 0
    assert all(r.failed_minor == smart.failed_minor for r in reports.values())  # one population


def test_population_follows_the_seed_and_the_overrides():
    params = parameters({"size": 300, "decline_mix": {"card_declined": 0, "do_not_honor": 0}})
    first = population(params=params, seed=7, entry_of=entry_of())
    assert first == population(params=params, seed=7, entry_of=entry_of())
    assert first != population(params=params, seed=8, entry_of=entry_of())
    assert {i.code for i in first}.isdisjoint({"card_declined", "do_not_honor"})
    assert parameters({"fees": {"visa": 2}})["fees"] == {
        "visa": 2,
        "visa_stop_payment": 1.0,
        "mastercard": 0.5,
    }


def test_the_simulator_reads_the_operators_decline_table():
    row = DeclineCode.objects.get(code="insufficient_funds")
    row.retry, row.retry_days = False, []
    row.save()  # as the admin does: the engine's cached table is refreshed
    params = parameters({"size": 200, "decline_mix": {k: 0 for k in parameters()["decline_mix"]}})
    params["decline_mix"]["insufficient_funds"] = 1
    reports = {
        r.policy: r
        for r in simulate(params=params, seed=1, entry_of=entry_of(), timing=timing_from_settings())
    }
    assert reports["per_code"].attempts == 0
    assert reports["kill_bill"].attempts > 0


def test_command_prints_the_table_and_writes_the_chart(tmp_path, capsys):
    overrides = tmp_path / "population.json"
    overrides.write_text(json.dumps({"size": 120}))
    svg = tmp_path / "chart.svg"
    call_command("simulate_recovery", "--params", str(overrides), "--svg", str(svg), "--seed", "4")
    out = capsys.readouterr()
    assert "Seed 4: 120 failed renewals" in out.out
    for name in ("kill_bill", "stripe_8_in_14", "per_code", "smart", "€/attempt net", "violations"):
        assert name in out.out
    assert "480/480" in out.err
    assert "[####" in out.err  # the progress bar (120 renewals × 4 policies)
    chart = svg.read_text()
    assert chart.startswith("<?xml")
    assert chart.count("<polyline") == 4
    assert "Per code + timing" in chart


def test_command_reads_toml_and_refuses_a_bad_file(tmp_path):
    from django.core.management.base import CommandError

    good = tmp_path / "p.toml"
    good.write_text("size = 50\n[fees]\nvisa = 0.1\n")
    call_command(
        "simulate_recovery", "--params", str(good), "--svg", str(tmp_path / "c.svg"), "--no-progress"
    )
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(CommandError):
        call_command("simulate_recovery", "--params", str(bad), "--no-progress")
