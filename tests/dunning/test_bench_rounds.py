"""The dunning benchmark's rounds (bench/dunning_sweep.py): it holds back the later rounds' accounts with the
product's own lease, so each round's one dunning_sweep() call hands out that round's accounts and no other."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import TestCase
from django.utils import timezone

from bench.dunning_sweep import _hold
from dunning.models import AccountSweep
from dunning.services import dunning_sweep
from subscriptions.models import Invoice

from .helpers import SUCCEEDS, bank_charges, renewal_invoice, renewing_subscription

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def test_each_round_sweeps_its_own_accounts_and_holds_the_later_ones():
    with time_machine.travel(START, tick=False) as traveller:
        subs = [renewing_subscription(number=SUCCEEDS) for _ in range(3)]
        slices = [[r.account.pk] for r in subs]
        for n, mine in enumerate(slices):
            later = [a for s in slices[n + 1 :] for a in s]
            _hold(later=later, now=mine)
            with TestCase.captureOnCommitCallbacks(execute=True):
                result = dunning_sweep(now=timezone.now())
            # Only this round's account is handed out; the later ones are still due but leased.
            assert (result.enqueued, result.leased) == (1, len(later))
            # The round's account was renewed and charged; the later ones are untouched.
            assert [len(bank_charges(r.method)) for r in subs] == [1] * (n + 1) + [0] * len(later)
            assert renewal_invoice(subs[n].sub).status == Invoice.Status.PAID
            traveller.shift(dt.timedelta(seconds=5))
        assert not AccountSweep.objects.exclude(enqueued_at=None).exists()  # every lease given back
