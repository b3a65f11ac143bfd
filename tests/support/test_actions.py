"""Support's actions: each permission-checked, confirmed, with a reason, and audited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from gateway_sim.services import sim_card_register
from notifications.models import Notice
from payments.models import PaymentAllocation, PaymentAttempt
from subscriptions.models import Invoice, Subscription
from support.models import SupportNote
from support.services import (
    SupportActionError,
    bank_transfer_record,
    invoice_retry_now,
    subscription_grace_extend,
    support_note_add,
)
from tests.factories import BillingAccountFactory, PaymentMethodFactory

from .conftest import past_due_subscription

pytestmark = pytest.mark.django_db

TODAY = dt.date.today


def record(account, support_user, **overrides):
    args = {
        "account_id": account.pk,
        "amount": "1250.00",
        "currency": "USD",
        "received_on": timezone.localdate(),
        "reference": "INV-2026-300001",
        "actor": support_user,
        "reason": "Wire arrived at the bank, statement line 17",
    }
    return bank_transfer_record(**{**args, **overrides})


# -- notes ----------------------------------------------------------------------------------------


def test_note_is_stored_and_audited(northwind, support_user):
    account, _sub, _invoice = northwind
    note = support_note_add(account_id=account.pk, author=support_user, body="Called about the wire.")
    event = AuditEvent.objects.get(action="support.note_added")
    assert event.account == account
    assert event.actor == support_user
    assert event.target_id == str(note.pk)
    assert event.data["reason"] == "Called about the wire."


def test_empty_note_is_refused(northwind, support_user):
    account, _sub, _invoice = northwind
    with pytest.raises(SupportActionError):
        support_note_add(account_id=account.pk, author=support_user, body="   ")
    assert not SupportNote.objects.exists()


def test_note_view_asks_for_confirmation_first(support_client, northwind):
    account, _sub, _invoice = northwind
    url = reverse("support:note_add", args=[account.pk])
    review = support_client.post(url, {"body": "Customer will pay Friday."})
    assert review.status_code == 200
    assert b'name="confirm" value="yes"' in review.content
    assert not SupportNote.objects.exists()
    done = support_client.post(url, {"body": "Customer will pay Friday.", "confirm": "yes"})
    assert done.status_code == 302
    assert SupportNote.objects.get().body == "Customer will pay Friday."
    assert AuditEvent.objects.filter(action="support.note_added").count() == 1


# -- bank transfers -------------------------------------------------------------------------------


def test_bank_transfer_pays_invoice_and_reactivates_subscription(northwind, support_user):
    account, sub, invoice = northwind
    attempt = record(account, support_user)
    invoice.refresh_from_db()
    sub.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert invoice.amount_due_minor == 0
    assert sub.status == Subscription.Status.ACTIVE
    assert attempt.source == PaymentAttempt.Source.BANK_TRANSFER
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert attempt.payment_method is None
    assert attempt.amount_minor == 125000
    assert attempt.reference_note == "INV-2026-300001"
    assert PaymentAllocation.objects.get(attempt=attempt).invoice == invoice
    event = AuditEvent.objects.get(action="support.bank_transfer_recorded")
    assert event.actor == support_user
    assert event.data["reason"] == "Wire arrived at the bank, statement line 17"
    assert event.data["invoices"] == {"INV-2026-300001": 125000}
    assert AuditEvent.objects.filter(action="subscription.reactivated", account=account).exists()
    receipt = Notice.objects.get(account=account, kind=Notice.Kind.PAYMENT_RECEIVED)
    assert receipt.recipient == account.notification_email
    assert "$1,250.00" in receipt.subject


def test_same_transfer_cannot_be_recorded_twice(northwind, support_user):
    account, _sub, _invoice = northwind
    past_due_subscription(account, amount_minor=5000, days_ago=10, number="INV-2026-300002")
    record(account, support_user, amount="100.00", reference="BANKREF 778")
    with pytest.raises(SupportActionError, match="already recorded"):
        record(account, support_user, amount="100.00", reference="  bankref   778 ")
    assert PaymentAttempt.objects.filter(source=PaymentAttempt.Source.BANK_TRANSFER).count() == 1


def test_two_instalments_quoting_the_same_invoice_number_are_two_transfers(northwind, support_user):
    account, _sub, invoice = northwind
    record(account, support_user, amount="500.00", reference="INV-2026-300001")
    record(account, support_user, amount="750.00", reference="INV-2026-300001")
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert PaymentAttempt.objects.filter(source=PaymentAttempt.Source.BANK_TRANSFER).count() == 2


def test_a_reference_names_an_invoice_only_as_a_whole_number(northwind, support_user):
    account, _sub, invoice = northwind
    # INV-2026-30000 is a prefix of INV-2026-300001 but names no invoice: oldest first applies.
    newer = past_due_subscription(account, amount_minor=5000, days_ago=10, number="INV-2026-300002")
    record(account, support_user, amount="50.00", reference="INV-2026-30000")
    invoice.refresh_from_db()
    assert invoice.amount_due_minor == 125000 - 5000
    record(account, support_user, amount="50.00", reference="paid INV-2026-300002, thanks")
    paid = PaymentAttempt.objects.filter(source=PaymentAttempt.Source.BANK_TRANSFER).order_by("-pk").first()
    assert [a.invoice.number for a in paid.allocations.all()] == ["INV-2026-300002"]
    assert newer is not None


def test_over_payment_is_refused_and_changes_nothing(northwind, support_user):
    account, _sub, invoice = northwind
    with pytest.raises(SupportActionError, match="more than everything the account owes"):
        record(account, support_user, amount="1250.01")
    invoice.refresh_from_db()
    assert invoice.amount_due_minor == 125000
    assert not PaymentAttempt.objects.exists()
    assert not AuditEvent.objects.filter(action="support.bank_transfer_recorded").exists()


def test_partial_payment_pays_the_oldest_invoice_partly(northwind, support_user):
    account, sub, invoice = northwind
    _newer_sub, newer = past_due_subscription(
        account, amount_minor=20000, days_ago=5, number="INV-2026-300009"
    )
    record(account, support_user, amount="1000", reference="WIRE-1")
    invoice.refresh_from_db()
    newer.refresh_from_db()
    sub.refresh_from_db()
    assert invoice.amount_due_minor == 25000
    assert invoice.status == Invoice.Status.PAST_DUE
    assert newer.amount_due_minor == 20000
    assert sub.status == Subscription.Status.DISABLED


def test_reference_naming_an_invoice_pays_that_one_first(northwind, support_user):
    account, _sub, oldest = northwind
    named_sub, named = past_due_subscription(
        account, amount_minor=20000, days_ago=5, number="INV-2026-300009"
    )
    record(account, support_user, amount="200.00", reference="Payment INV-2026-300009 thanks")
    named.refresh_from_db()
    oldest.refresh_from_db()
    named_sub.refresh_from_db()
    assert named.status == Invoice.Status.PAID
    assert oldest.amount_due_minor == 125000
    assert named_sub.status == Subscription.Status.ACTIVE


def test_transfer_covering_two_invoices_pays_both(northwind, support_user):
    account, _sub, _invoice = northwind
    _sub2, _invoice2 = past_due_subscription(
        account, amount_minor=20000, days_ago=5, number="INV-2026-300009"
    )
    record(account, support_user, amount="1,450.00", reference="WIRE-2")
    assert Invoice.objects.filter(account=account, status=Invoice.Status.PAID).count() == 2
    assert Subscription.objects.filter(account=account, status=Subscription.Status.ACTIVE).count() == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"currency": "EUR"}, "billed in USD"),
        ({"amount": "twelve"}, "Enter the amount as a number"),
        ({"amount": "12.345"}, "Enter the amount as a number"),
        ({"amount": "0"}, "more than zero"),
        ({"amount": "-5"}, "more than zero"),
        ({"reference": "  "}, "reference"),
        ({"reason": ""}, "reason"),
        ({"received_on": TODAY() + dt.timedelta(days=3)}, "future"),
    ],
)
def test_bad_transfer_input_gets_a_clear_message_and_changes_nothing(
    northwind, support_user, overrides, message
):
    account, _sub, invoice = northwind
    if "received_on" in overrides:
        overrides["received_on"] = timezone.localdate() + dt.timedelta(days=3)
    with pytest.raises(SupportActionError, match=message):
        record(account, support_user, **overrides)
    invoice.refresh_from_db()
    assert invoice.amount_due_minor == 125000
    assert not PaymentAttempt.objects.exists()


def test_card_accounts_cannot_record_transfers(support_user):
    account = BillingAccountFactory(currency="USD")
    past_due_subscription(account, amount_minor=1000, days_ago=3, number="INV-X-1")
    with pytest.raises(SupportActionError, match="pays by card"):
        record(account, support_user, amount="10.00", reference="INV-X-1")


def test_bank_transfer_view_confirms_then_records(support_client, northwind):
    account, sub, _invoice = northwind
    url = reverse("support:bank_transfer", args=[account.pk])
    data = {
        "amount": "1250.00",
        "currency": "USD",
        "received_on": timezone.localdate().isoformat(),
        "reference": "INV-2026-300001",
        "reason": "Statement 24 Nov",
    }
    review = support_client.post(url, data)
    body = review.content.decode()
    assert review.status_code == 200
    assert "$1,250.00" in body
    assert "Pays INV-2026-300001" in body
    assert not PaymentAttempt.objects.exists()
    done = support_client.post(url, {**data, "confirm": "yes"})
    assert done.status_code == 302
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.ACTIVE
    again = support_client.post(url, {**data, "confirm": "yes"})
    assert again.status_code == 400
    assert "already recorded" in again.content.decode()


def test_bank_transfer_view_shows_bad_amount_message(support_client, northwind):
    account, _sub, _invoice = northwind
    url = reverse("support:bank_transfer", args=[account.pk])
    response = support_client.post(
        url,
        {
            "amount": "1.250,00",
            "currency": "USD",
            "received_on": timezone.localdate().isoformat(),
            "reference": "R",
            "reason": "x",
        },
    )
    assert response.status_code == 400
    assert "Enter the amount as a number" in response.content.decode()


# -- grace periods ---------------------------------------------------------------------------------


def test_grace_extension_pushes_dates_and_is_audited(support_user):
    account = BillingAccountFactory()
    sub, _invoice = past_due_subscription(account, amount_minor=1000, days_ago=5, number="INV-G-1")
    grace, lifecycle = sub.grace_ends_at, sub.next_lifecycle_at
    subscription_grace_extend(
        account_id=account.pk,
        subscription_id=sub.pk,
        days=7,
        actor=support_user,
        reason="Customer on holiday",
    )
    sub.refresh_from_db()
    assert sub.grace_ends_at == grace + dt.timedelta(days=7)
    assert sub.next_lifecycle_at == lifecycle + dt.timedelta(days=7)
    event = AuditEvent.objects.get(action="support.grace_extended")
    assert event.actor == support_user
    assert event.data["days"] == 7
    assert event.data["reason"] == "Customer on holiday"


@pytest.mark.parametrize("days", [0, 31, -1])
def test_grace_extension_is_1_to_30_days(support_user, days):
    account = BillingAccountFactory()
    sub, _invoice = past_due_subscription(account, amount_minor=1000, days_ago=5, number="INV-G-1")
    with pytest.raises(SupportActionError, match="1 to 30"):
        subscription_grace_extend(
            account_id=account.pk, subscription_id=sub.pk, days=days, actor=support_user, reason="r"
        )


def test_only_past_due_subscriptions_get_more_grace(northwind, support_user):
    account, sub, _invoice = northwind  # disabled
    with pytest.raises(SupportActionError, match="only a past-due subscription"):
        subscription_grace_extend(
            account_id=account.pk, subscription_id=sub.pk, days=5, actor=support_user, reason="r"
        )
    assert not AuditEvent.objects.filter(action="support.grace_extended").exists()


def test_grace_view_confirms_then_extends(support_client):
    account = BillingAccountFactory()
    sub, _invoice = past_due_subscription(account, amount_minor=1000, days_ago=5, number="INV-G-1")
    url = reverse("support:grace_extend", args=[account.pk, sub.pk])
    assert support_client.post(url, {"days": "10", "reason": "Promised payment"}).status_code == 200
    assert not AuditEvent.objects.filter(action="support.grace_extended").exists()
    assert (
        support_client.post(url, {"days": "10", "reason": "Promised payment", "confirm": "yes"}).status_code
        == 302
    )
    assert AuditEvent.objects.filter(action="support.grace_extended").count() == 1
    assert support_client.post(url, {"days": "45", "reason": "x", "confirm": "yes"}).status_code == 400


# -- retry now -------------------------------------------------------------------------------------


def card_account(number: str):
    account = BillingAccountFactory()
    token = sim_card_register(number=number, exp_month=12, exp_year=2030)
    method = PaymentMethodFactory(
        account=account, last4=number[-4:], gateway="simulated", gateway_token=token
    )
    sub, invoice = past_due_subscription(
        account, amount_minor=1400, days_ago=3, number=f"INV-R-{number[-4:]}"
    )
    sub.payment_method = method
    sub.save(update_fields=["payment_method"])
    return account, sub, invoice


def test_retry_now_charges_through_the_payment_engine(support_user):
    account, sub, invoice = card_account("4242424242424242")
    attempt = invoice_retry_now(
        account_id=account.pk,
        invoice_id=invoice.pk,
        actor=support_user,
        reason="Customer topped up",
        idempotency_key="k1",
    )
    assert attempt.source == PaymentAttempt.Source.SUPPORT_RETRY
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert attempt.off_session
    invoice.refresh_from_db()
    sub.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert sub.status == Subscription.Status.ACTIVE
    event = AuditEvent.objects.get(action="support.retry_requested")
    assert event.actor == support_user
    assert event.data["reason"] == "Customer topped up"


def test_retry_now_records_a_decline(support_user):
    account, _sub, invoice = card_account("4000000000009995")
    attempt = invoice_retry_now(
        account_id=account.pk, invoice_id=invoice.pk, actor=support_user, reason="asked", idempotency_key="k2"
    )
    assert attempt.status == PaymentAttempt.Status.FAILED
    assert attempt.decline_code == "insufficient_funds"


def test_retry_now_double_submit_charges_once(support_client):
    account, _sub, invoice = card_account("4242424242424242")
    url = reverse("support:invoice_retry", args=[account.pk, invoice.pk])
    data = {"reason": "asked", "token": "same-token", "confirm": "yes"}
    assert support_client.post(url, data).status_code == 302
    assert support_client.post(url, data).status_code == 302
    assert PaymentAttempt.objects.filter(account=account).count() == 1
    assert AuditEvent.objects.filter(action="support.retry_requested").count() == 1


def test_retry_now_refuses_invoice_that_is_not_past_due(support_user):
    account, _sub, invoice = card_account("4242424242424242")
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.OPEN)
    with pytest.raises(SupportActionError, match="not past due"):
        invoice_retry_now(
            account_id=account.pk, invoice_id=invoice.pk, actor=support_user, reason="r", idempotency_key="k3"
        )


def test_retry_now_needs_a_reason(support_user):
    account, _sub, invoice = card_account("4242424242424242")
    with pytest.raises(SupportActionError, match="reason"):
        invoice_retry_now(
            account_id=account.pk, invoice_id=invoice.pk, actor=support_user, reason=" ", idempotency_key="k4"
        )
    assert not PaymentAttempt.objects.exists()


def test_a_concurrent_duplicate_hits_the_unique_key(northwind, support_user, monkeypatch):
    """If two operators pass the check at once, the database's unique key refuses the second."""
    import support.services as services

    account, _sub, _invoice = northwind
    past_due_subscription(account, amount_minor=5000, days_ago=10, number="INV-2026-300002")
    record(account, support_user, amount="10.00", reference="RACE-1")
    real_preview = services.bank_transfer_preview

    def preview_that_misses_the_first(**kwargs):
        with monkeypatch.context() as m:
            m.setattr(PaymentAttempt.objects, "filter", lambda **kw: PaymentAttempt.objects.none())
            return real_preview(**kwargs)

    monkeypatch.setattr(services, "bank_transfer_preview", preview_that_misses_the_first)
    with pytest.raises(SupportActionError, match="already recorded"):
        record(account, support_user, amount="10.00", reference="race-1")
    assert PaymentAttempt.objects.filter(source=PaymentAttempt.Source.BANK_TRANSFER).count() == 1
