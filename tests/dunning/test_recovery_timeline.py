"""The customer's dunning timeline with the recovery engine: plain-words reason, the next retry and
why, what happens when, postponed retries; English and Dutch; readers see no pay action."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Role
from dunning.models import RetryRefusal
from dunning.services import account_dunning_run
from subscriptions.models import Invoice
from tests.factories import MembershipFactory, UserFactory

from .helpers import INSUFFICIENT_FUNDS, renewal_invoice, renewing_subscription

pytestmark = pytest.mark.django_db
START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
MAC_03 = "5200000000000031"


def member(account, role):
    user = UserFactory()
    MembershipFactory(account=account, user=user, role=role)
    return user


def page(client, r):
    return client.get(f"/a/{r.account.pk}/products/{r.sub.pk}/timeline/").content.decode()


def test_admin_sees_the_reason_the_next_retry_with_why_and_the_pay_action(client):
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        client.force_login(member(r.account, Role.ADMIN))
        html = page(client, r)
    assert "Why the payment failed" in html
    assert "there are not enough funds on the card" in html
    assert "Chosen for this time because of the retry schedule for this kind of decline." in html
    assert "What happens when" in html
    assert "insufficient_funds" not in html  # never a raw code
    assert f'href="/a/{r.account.pk}/billing/settle/{r.method.pk}/"' in html


def test_reader_sees_everything_but_the_pay_action(client):
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        client.force_login(member(r.account, Role.READER))
        html = page(client, r)
    assert "Why the payment failed" in html
    assert 'data-action="settle"' not in html
    assert "/billing/settle/" not in html


def test_a_card_the_network_forbids_says_why_there_is_no_retry_and_shows_the_refusal(client):
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=MAC_03)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        invoice = renewal_invoice(r.sub)
        RetryRefusal.objects.create(account=r.account, invoice=invoice, source="retry", reason="never_retry")
        client.force_login(member(r.account, Role.ADMIN))
        html = page(client, r)
    assert "The card network does not allow this card to be charged again." in html
    assert "Retries postponed by the card networks" in html
    assert "Not with this card" in html


def test_the_timeline_in_dutch(client):
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS, language="nl")
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        client.force_login(member(r.account, Role.ADMIN))
        html = page(client, r)  # the account's language
    assert 'lang="nl"' in html
    assert "Waarom de betaling is mislukt" in html
    assert "Wat er wanneer gebeurt" in html
    assert "Why the payment failed" not in html


def test_timeline_queries_stay_flat_with_refusals_and_attempts(client, django_assert_max_num_queries):
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        client.force_login(member(r.account, Role.ADMIN))
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        url = f"/a/{r.account.pk}/products/{r.sub.pk}/timeline/"
        with django_assert_max_num_queries(14) as one:
            client.get(url)
        invoice = renewal_invoice(r.sub)
        for n in range(5):
            RetryRefusal.objects.create(account=r.account, invoice=invoice, source="retry", reason="mac_wait")
            Invoice.objects.filter(pk=invoice.pk).update(next_attempt_at=timezone.now())
            traveller.shift(dt.timedelta(days=1 + n))
            account_dunning_run(account_id=r.account.pk, now=timezone.now())
        with django_assert_max_num_queries(len(one.captured_queries)):
            client.get(url)
