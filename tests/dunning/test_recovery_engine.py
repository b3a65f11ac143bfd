"""The recovery engine in the live sweep: the decline-code table, network codes from the simulated
bank, the retry budget before every automatic charge, the policy that chose each retry."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.test import TestCase
from django.utils import timezone

from audit.models import AuditEvent
from dunning import services
from dunning.models import DeclineCode, InvoiceDunning, RetryRefusal
from dunning.services import dunning_run_inline, invoice_charge_due
from payments.gateways.base import DeclineCategory, classify_decline, decline_message
from payments.models import PaymentAttempt
from subscriptions.models import Invoice
from support.services import SupportActionError, invoice_retry_now

from .helpers import INSUFFICIENT_FUNDS, bank_charges, renewal_invoice, renewing_subscription

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
MAC_03 = "5200000000000031"
MAC_25 = "5200000000000254"
VISA_46 = "4000000000001463"  # card_declined, with Visa Category 1 response code 46


def run_now() -> None:
    with TestCase.captureOnCommitCallbacks(execute=True):
        dunning_run_inline(now=timezone.now())


def walk(traveller, *, days: int) -> None:
    for _ in range(days * 4):
        run_now()
        traveller.shift(dt.timedelta(hours=6))


def test_the_table_backs_classify_decline_and_the_customer_message():
    assert classify_decline("insufficient_funds") == DeclineCategory.SOFT
    assert classify_decline("authentication_required") == DeclineCategory.AUTHENTICATION_REQUIRED
    row = DeclineCode.objects.get(code="do_not_honor")
    row.category, row.retry, row.retry_days, row.customer_message = "hard", False, [], "contact_bank"
    row.save()
    assert classify_decline("do_not_honor") == DeclineCategory.HARD
    assert (
        decline_message("do_not_honor")
        == "Your bank declined the payment. Contact your bank, or choose another card."
    )
    # No row: the gateway module's own category, else unknown.
    DeclineCode.objects.filter(code="card_declined").delete()
    assert classify_decline("card_declined") == DeclineCategory.SOFT
    assert classify_decline("brand_new_code") == DeclineCategory.UNKNOWN
    assert "brand_new_code" not in decline_message("brand_new_code")


def test_defaults_follow_the_networks_and_the_admin_validates():
    stolen = DeclineCode.objects.get(code="stolen_card")
    assert (stolen.visa_category, stolen.retry, stolen.customer_action) == (1, False, "new_card")
    assert DeclineCode.objects.get(code="insufficient_funds").waits_for_payday
    assert "Checkout.com" in stolen.source
    stolen.retry, stolen.retry_days = True, [1, 3]
    with pytest.raises(ValidationError) as caught:
        stolen.full_clean()
    assert "retry" in caught.value.message_dict
    bad = DeclineCode(code="New Code!", category="soft", retry=True, retry_days=[5, 2])
    with pytest.raises(ValidationError) as caught:
        bad.full_clean()
    assert {"code", "retry_days"} <= set(caught.value.message_dict)
    DeclineCode(code="new_code", category="soft", retry=True, retry_days=[2, 5]).full_clean()


def test_admin_edits_the_table(admin_client):
    response = admin_client.get("/django-admin/dunning/declinecode/")
    assert response.status_code == 200
    assert "insufficient_funds" in response.content.decode()


def test_mac_03_stops_retries_and_the_timeline_says_why():
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=MAC_03)
        run_now()
        invoice = renewal_invoice(r.sub)
        attempt = PaymentAttempt.objects.get(allocations__invoice=invoice)
        assert (attempt.decline_code, attempt.network_advice_code) == ("card_declined", "03")
        assert invoice.next_attempt_at is None
        note = InvoiceDunning.objects.get(invoice=invoice)
        assert (note.reason, note.first_decline_code) == ("budget_never_retry", "card_declined")
        walk(traveller, days=12)
        assert len(bank_charges(r.method)) == 1


def test_visa_category_1_network_code_stops_a_generic_decline():
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=VISA_46)
        run_now()
        attempt = PaymentAttempt.objects.get(allocations__invoice=renewal_invoice(r.sub))
        assert attempt.network_decline_code == "46"
        walk(traveller, days=12)
        assert len(bank_charges(r.method)) == 1


def test_mac_25_waits_a_day_then_retries_with_the_smart_policy():
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=MAC_25)
        run_now()
        invoice = renewal_invoice(r.sub)
        assert invoice.next_attempt_at is not None
        assert invoice.next_attempt_at >= START + dt.timedelta(hours=24)
        walk(traveller, days=4)
        attempts = list(PaymentAttempt.objects.filter(allocations__invoice=invoice).order_by("pk"))
        assert len(attempts) >= 2
        assert attempts[1].created_at - attempts[0].created_at >= dt.timedelta(hours=24)
        assert attempts[0].retry_policy == ""
        assert attempts[1].retry_policy == "smart"


def test_smart_retries_land_at_ten_in_the_cards_country():
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        r.account.country = "US"
        r.account.save(update_fields=["country"])
        run_now()
        invoice = renewal_invoice(r.sub)
        local = invoice.next_attempt_at.astimezone(dt.timezone(dt.timedelta(hours=-5)))  # New York, December
        assert local.hour == 10
        assert InvoiceDunning.objects.get(invoice=invoice).policy == "smart"


def test_a_refused_charge_is_recorded_audited_and_not_sent_to_the_bank():
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=MAC_03)
        run_now()
        invoice = renewal_invoice(r.sub)
        # Someone scheduled it anyway (e.g. an older schedule): the budget still says no.
        Invoice.objects.filter(pk=invoice.pk).update(next_attempt_at=timezone.now())
        assert invoice_charge_due(invoice_id=invoice.pk, now=timezone.now()) == "refused"
        refusal = RetryRefusal.objects.get(invoice=invoice)
        assert (refusal.reason, refusal.not_before, refusal.overridden) == ("never_retry", None, False)
        assert AuditEvent.objects.filter(action="dunning.retry_refused", account=r.account).exists()
        assert renewal_invoice(r.sub).next_attempt_at is None
        assert len(bank_charges(r.method)) == 1


def test_one_history_read_per_account_run():
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        run_now()
        invoice = renewal_invoice(r.sub)
        for n in range(2):
            Invoice.objects.create(
                account=r.account,
                subscription=r.sub,
                number=f"EXTRA-{n}",
                status=Invoice.Status.PAST_DUE,
                currency=invoice.currency,
                total_minor=500,
                amount_due_minor=500,
                issued_on=invoice.issued_on,
                due_on=invoice.due_on,
                next_attempt_at=timezone.now(),
            )
        Invoice.objects.filter(pk=invoice.pk).update(next_attempt_at=timezone.now())
        with mock.patch.object(services, "card_history_load", wraps=services.card_history_load) as loads:
            report = services.account_dunning_run(account_id=r.account.pk, now=timezone.now())
        assert len(report.charged) == 3
        assert loads.call_count == 1


def test_support_retry_now_asks_the_budget_and_may_override_with_a_reason(django_user_model):
    from support.services import support_staff_group
    from tests.factories import UserFactory

    agent = UserFactory(email="agent@billing.example", is_staff=True)
    agent.groups.add(support_staff_group())
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=MAC_03)
        run_now()
        invoice = renewal_invoice(r.sub)
        with pytest.raises(SupportActionError, match="may not be charged again"):
            invoice_retry_now(
                account_id=r.account.pk,
                invoice_id=invoice.pk,
                actor=agent,
                reason="asked",
                idempotency_key="s1",
            )
        assert len(bank_charges(r.method)) == 1
        attempt = invoice_retry_now(
            account_id=r.account.pk,
            invoice_id=invoice.pk,
            actor=agent,
            reason="Customer says the bank lifted the block",
            idempotency_key="s2",
            override_budget=True,
        )
        assert attempt.retry_policy == "support"
        assert len(bank_charges(r.method)) == 2
        assert list(
            RetryRefusal.objects.filter(invoice=invoice).values_list("overridden", flat=True).order_by("pk")
        ) == [
            False,
            True,
        ]
        event = AuditEvent.objects.get(action="dunning.budget_overridden")
        assert event.actor == agent
        assert "bank lifted the block" in event.message


def test_support_override_goes_through_the_confirmation_page(client):
    from support.services import support_staff_group
    from tests.factories import UserFactory

    agent = UserFactory(email="agent2@billing.example", is_staff=True)
    agent.groups.add(support_staff_group())
    client.force_login(agent)
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=MAC_03)
        run_now()
        invoice = renewal_invoice(r.sub)
        url = f"/support/accounts/{r.account.pk}/invoices/{invoice.pk}/retry/"
        refused = client.post(url, {"reason": "asked", "token": "t1", "confirm": "yes"})
        assert refused.status_code == 400  # the form again, with the refusal
        assert "retry rules do not allow" in refused.content.decode()
        assert len(bank_charges(r.method)) == 1
        review = client.post(url, {"reason": "asked", "token": "t2", "override_budget": "on"})
        assert "Overridden" in review.content.decode()
        done = client.post(
            url, {"reason": "asked", "token": "t2", "override_budget": "True", "confirm": "yes"}
        )
        assert done.status_code == 302
        assert len(bank_charges(r.method)) == 2
