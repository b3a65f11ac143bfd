"""The timeline page, the sent-notifications page and the two management commands."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.test import TestCase
from django.utils import timezone

from accounts.models import Role
from dunning.services import account_dunning_run
from gateway_sim.models import SimCharge
from notifications.models import Notice
from payments.models import PaymentAttempt
from subscriptions.models import Invoice
from tests.factories import MembershipFactory, PaymentMethodFactory, SubscriptionFactory, UserFactory

from .helpers import INSUFFICIENT_FUNDS, SUCCEEDS, renewal_invoice, renewing_subscription

pytestmark = pytest.mark.django_db
START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def member(account, role=Role.READER):
    user = UserFactory()
    MembershipFactory(account=account, user=user, role=role)
    return user


def test_a_reader_sees_the_dunning_timeline_with_every_date(client):
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        client.force_login(member(r.account))
        response = client.get(f"/a/{r.account.pk}/products/{r.sub.pk}/timeline/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Payment timeline" in html
    assert "2 Dec 2026" in html  # next retry: day 1
    assert "31 Dec 2026" in html  # disabled after 30 days
    assert "31 Mar 2027" in html  # cancelled 90 days later
    assert "29 Jun 2027" in html  # data deleted 90 days after that
    # Readers read; they get no pay action (issue 10: "Readers see no pay action there").
    assert f"/a/{r.account.pk}/billing/settle/{r.method.pk}/" not in html
    assert "not enough funds" in html


def test_the_timeline_fragment_for_htmx(client):
    r = renewing_subscription(number=INSUFFICIENT_FUNDS)
    client.force_login(member(r.account))
    response = client.get(f"/a/{r.account.pk}/products/{r.sub.pk}/timeline/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b'id="dunning-timeline"' in response.content
    assert b"<html" not in response.content


def test_outsiders_and_other_accounts_subscriptions_get_404(client):
    r = renewing_subscription(number=INSUFFICIENT_FUNDS)
    other = renewing_subscription(number=INSUFFICIENT_FUNDS)
    client.force_login(member(other.account, Role.ADMIN))
    assert client.get(f"/a/{r.account.pk}/products/{r.sub.pk}/timeline/").status_code == 404
    assert client.get(f"/a/{other.account.pk}/products/{r.sub.pk}/timeline/").status_code == 404
    assert client.get(f"/a/{r.account.pk}/billing/notifications/sent/").status_code == 404


def test_timeline_queries_do_not_grow_with_attempts(client, django_assert_max_num_queries):
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        client.force_login(member(r.account))
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        url = f"/a/{r.account.pk}/products/{r.sub.pk}/timeline/"
        with django_assert_max_num_queries(12) as one:
            client.get(url)
        for day in (1, 3, 5, 7):
            traveller.move_to(START + dt.timedelta(days=day))
            account_dunning_run(account_id=r.account.pk, now=timezone.now())
        with django_assert_max_num_queries(len(one.captured_queries)):
            client.get(url)


def test_sent_notifications_lists_each_mail(client, django_assert_max_num_queries):
    r = renewing_subscription(number=INSUFFICIENT_FUNDS)
    with TestCase.captureOnCommitCallbacks(execute=True):
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
    client.force_login(member(r.account))
    with django_assert_max_num_queries(8):
        response = client.get(f"/a/{r.account.pk}/billing/notifications/sent/")
    html = response.content.decode()
    assert response.status_code == 200
    assert r.account.notification_email in html
    assert Notice.objects.get(account=r.account).subject in html
    assert "Sent" in html


def test_run_dunning_dry_run_lists_actions_and_changes_nothing():
    r = renewing_subscription(number=SUCCEEDS)
    account = r.account
    sub = SubscriptionFactory(account=account, payment_method=PaymentMethodFactory(account=account))
    out, err = StringIO(), StringIO()
    call_command("run_dunning", "--dry-run", stdout=out, stderr=err)
    assert "renew" in out.getvalue()
    assert f"subscription {r.sub.pk}" in out.getvalue()
    assert "nothing changed" in out.getvalue()
    assert "1/1 accounts" in err.getvalue()  # the progress bar
    assert not Invoice.objects.filter(subscription__in=[r.sub, sub]).exists()
    assert PaymentAttempt.objects.count() == 0


def test_run_dunning_runs_the_sweep_inline_and_dunning_status_summarises():
    r = renewing_subscription(number=SUCCEEDS)
    out = StringIO()
    call_command("run_dunning", "--no-progress", stdout=out)
    assert "1 account(s) processed; 1 invoice(s) paid" in out.getvalue()
    assert renewal_invoice(r.sub).status == Invoice.Status.PAID
    assert SimCharge.objects.count() == 1
    out = StringIO()
    call_command("dunning_status", stdout=out)
    assert "invoices due now" in out.getvalue()
    assert "accounts due" in out.getvalue()


def test_your_products_links_each_unpaid_subscription_to_its_timeline(client):
    call_command("seed_demo", stdout=StringIO())
    from accounts.models import User

    user = User.objects.get(email="reader@contoso.example")
    account = user.memberships.get().account
    client.force_login(user)
    html = client.get(f"/a/{account.pk}/products/").content.decode()
    unpaid = account.subscriptions.filter(status__in=["past_due", "disabled"])
    assert unpaid.count() == 4
    for sub in unpaid:
        assert f'href="/a/{account.pk}/products/{sub.pk}/timeline/"' in html
    active = account.subscriptions.get(status="active")
    assert f"/products/{active.pk}/timeline/" not in html


def test_billing_notifications_links_to_the_mails_sent(client):
    call_command("seed_demo", stdout=StringIO())
    from accounts.models import User

    user = User.objects.get(email="reader@contoso.example")
    account = user.memberships.get().account
    client.force_login(user)
    html = client.get(f"/a/{account.pk}/billing/notifications/").content.decode()
    assert f'href="/a/{account.pk}/billing/notifications/sent/"' in html


def test_the_timeline_and_sent_mails_read_in_the_accounts_language(client):
    call_command("seed_demo", stdout=StringIO())
    from accounts.models import User

    user = User.objects.get(email="admin@fabrikam.example")
    account = user.memberships.get().account
    sub = account.subscriptions.get()
    client.force_login(user)
    timeline = client.get(f"/a/{account.pk}/products/{sub.pk}/timeline/").content.decode()
    sent = client.get(f"/a/{account.pk}/billing/notifications/sent/").content.decode()
    assert '<html lang="nl"' in timeline
    assert '<html lang="nl"' in sent
