"""Support's side of money that comes back: refund pages, the overpayment refund, the simulated bank,
the account view, timeline and dashboard, and the Dutch bank-transfer receipt."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import BillingAccount, Role
from audit.models import AuditEvent
from gateway_sim.models import SimRefund
from notifications.models import Notice
from payments import services
from payments.ledger import bank_transfer_receive
from payments.models import CreditNote, Dispute, PaymentAttempt, Refund
from payments.simulator import sim_dispute_raise
from subscriptions.models import Invoice
from support.selectors import support_timeline
from support.services import SupportActionError, bank_transfer_record, support_payment_refund
from tests.factories import BillingAccountFactory, MembershipFactory, UserFactory
from tests.payments.money_back import assert_ledger_consistent, settle
from tests.payments.scenario import build_contoso
from tests.support.conftest import past_due_subscription, staff_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def contoso(db):
    return build_contoso()


def _post(client, url, **data):
    return client.post(url, data)


def _refund_url(contoso, attempt):
    return reverse("support:payment_refund", args=[contoso.account.pk, attempt.pk])


def _confirm_fields(body: str) -> dict[str, str]:
    """The hidden fields of the confirmation form, as the browser would post them back."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', body))


def test_refund_view_previews_then_refunds_once(support_client, contoso):
    attempt = settle(contoso)
    url = _refund_url(contoso, attempt)
    page = support_client.get(url)
    assert page.status_code == 200
    token = re.search(r'name="token" value="([^"]+)"', page.content.decode()).group(1)
    preview = _post(support_client, url, amount="10.00", reason="Goodwill for an outage", token=token)
    body = preview.content.decode()
    assert preview.status_code == 200
    assert "Credit note on" in body
    assert "€10.00" in body
    assert not Refund.objects.exists()
    fields = _confirm_fields(body)
    assert fields["confirm"] == "yes"
    assert fields["amount"] == "10.00"
    done = _post(support_client, url, **fields)
    assert done.status_code == 302
    again = _post(support_client, url, **fields)  # a double submit of the confirmation
    assert again.status_code == 302
    refund = Refund.objects.get()
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.amount_minor == 1000
    assert refund.source == Refund.Source.SUPPORT
    assert SimRefund.objects.count() == 1
    assert CreditNote.objects.count() == 1
    assert AuditEvent.objects.get(action="refund.requested").data["reason"] == "Goodwill for an outage"


def test_refund_confirmation_fixes_the_full_amount_it_showed(support_client, contoso):
    attempt = settle(contoso)
    url = _refund_url(contoso, attempt)
    preview = _post(support_client, url, amount="", reason="Cancelled", token="t1")
    fields = _confirm_fields(preview.content.decode())
    assert fields["amount"] == "390.50"
    # Someone else refunds part meanwhile: the confirmed full amount is no longer there.
    support_payment_refund(
        account_id=contoso.account.pk,
        attempt_id=attempt.pk,
        amount="1.00",
        actor=contoso.admin,
        reason="other",
        idempotency_key="other",
    )
    response = _post(support_client, url, **fields)
    assert response.status_code == 400
    assert "more than what is left" in response.content.decode()
    assert Refund.objects.count() == 1


@pytest.mark.parametrize(
    ("amount", "reason", "message"),
    [
        ("abc", "x", "Enter the amount as a number"),
        ("٣", "x", "Enter the amount as a number"),
        ("1e3", "x", "Enter the amount as a number"),
        ("1.234", "x", "Enter the amount as a number"),
        ("0", "x", "more than zero"),
        ("390.51", "x", "more than what is left"),
        ("10.00", "", "This field is required"),
    ],
)
def test_bad_refund_input_gets_a_message_and_changes_nothing(
    support_client, contoso, amount, reason, message
):
    attempt = settle(contoso)
    response = _post(support_client, _refund_url(contoso, attempt), amount=amount, reason=reason, token="t")
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Refund.objects.exists()


def test_refund_needs_its_own_permission_and_the_right_account(contoso, support_client):
    attempt = settle(contoso)
    client = Client()
    client.force_login(staff_with("view_support_console", "retry_payment"))
    assert client.get(_refund_url(contoso, attempt)).status_code == 403
    other = BillingAccountFactory()
    assert (
        support_client.get(reverse("support:payment_refund", args=[other.pk, attempt.pk])).status_code == 404
    )
    client.force_login(contoso.admin)  # a customer, even the owner
    assert client.get(_refund_url(contoso, attempt)).status_code == 404
    account_page = support_client.get(reverse("support:account", args=[contoso.account.pk])).content.decode()
    assert _refund_url(contoso, attempt) in account_page
    client.force_login(staff_with("view_support_console"))
    assert (
        _refund_url(contoso, attempt)
        not in client.get(reverse("support:account", args=[contoso.account.pk])).content.decode()
    )


def _overpaid(contoso, settings) -> PaymentAttempt:
    """A card payment whose answer was lost while a transfer paid the same invoice."""
    invoice = contoso.invoices["teams"]
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = ["5555555555554444"]
    unknown = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=invoice.pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.admin,
        idempotency_key="lost",
    )
    PaymentAttempt.objects.filter(pk=unknown.pk).update(status=PaymentAttempt.Status.CANCELED)
    bank_transfer_receive(
        account_id=contoso.account.pk,
        amount_minor=invoice.amount_due_minor,
        received_on=timezone.localdate(),
        reference=invoice.number,
        allocations=[(invoice.pk, invoice.amount_due_minor)],
        idempotency_key="bt",
        actor=None,
    )
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = []
    PaymentAttempt.objects.filter(pk=unknown.pk).update(
        status=PaymentAttempt.Status.UNKNOWN, created_at=timezone.now() - dt.timedelta(hours=1)
    )
    return services.attempt_reconcile(attempt_id=unknown.pk)


def test_overpayment_is_refunded_in_one_click_for_exactly_what_was_overpaid(
    support_client, contoso, settings
):
    attempt = _overpaid(contoso, settings)
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    page = support_client.get(reverse("support:account", args=[contoso.account.pk])).content.decode()
    assert "Refund overpayment (€36.00)" in page
    url = reverse("support:overpayment_refund", args=[contoso.account.pk, attempt.pk])
    form = support_client.get(url).content.decode()
    assert "took money for invoices that were already paid" in form  # the reason is filled in
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))
    reason = re.search(r"<textarea[^>]*>\s*([^<]+)</textarea>", form).group(1).strip()
    preview = _post(support_client, url, reason=reason, token=fields["token"])
    body = preview.content.decode()
    assert "Overpaid part (no credit note)" in body
    done = _post(support_client, url, **_confirm_fields(body))
    assert done.status_code == 302
    refund = Refund.objects.get()
    assert refund.source == Refund.Source.OVERPAYMENT
    assert refund.amount_minor == 3600
    assert refund.unapplied_minor == 3600
    assert not CreditNote.objects.exists()
    page = support_client.get(reverse("support:account", args=[contoso.account.pk])).content.decode()
    assert "Refund overpayment" not in page
    assert_ledger_consistent(contoso.account.pk)


def test_simulated_bank_page_raises_a_dispute_support_sees_it_and_a_loss_makes_it_due(
    support_client, contoso
):
    attempt = settle(contoso)
    url = reverse("support:simulated_bank", args=[contoso.account.pk, attempt.pk])
    assert support_client.get(url).status_code == 200
    assert support_client.post(url, {"action": "dispute", "reason": "fraudulent"}).status_code == 302
    dispute = Dispute.objects.get()
    account_page = support_client.get(reverse("support:account", args=[contoso.account.pk])).content.decode()
    assert f"Chargeback {dispute.reference}" in account_page
    assert "Evidence is due by" in account_page
    dashboard = support_client.get(reverse("support:dashboard")).content.decode()
    assert "1 chargeback is waiting for evidence." in dashboard
    assert contoso.account.name in dashboard
    support_client.post(url, {"action": "lost", "dispute": dispute.pk})
    dispute.refresh_from_db()
    assert dispute.outcome == Dispute.Outcome.LOST
    assert Invoice.objects.get(pk=contoso.invoices["m365"].pk).status == Invoice.Status.PAST_DUE
    entries = support_timeline(account=contoso.account).entries
    chargeback = next(e for e in entries if e.kind == "dispute")
    assert "fraudulent" in chargeback.detail
    assert "due again" in chargeback.detail
    assert any(
        e.kind == "audit" and e.title == "Chargeback lost" for e in entries
    )  # plain words, not dispute.lost


def test_simulated_bank_refund_arrives_like_a_dashboard_refund(support_client, contoso):
    attempt = settle(contoso)
    url = reverse("support:simulated_bank", args=[contoso.account.pk, attempt.pk])
    support_client.post(url, {"action": "refund", "amount": "14.00"})
    refund = Refund.objects.get()
    assert refund.source == Refund.Source.GATEWAY
    assert refund.amount_minor == 1400
    kinds = {e.kind for e in support_timeline(account=contoso.account).entries}
    assert {"refund", "credit_note"} <= kinds


def test_simulated_bank_page_is_only_for_simulated_charges(support_client, contoso):
    attempt = settle(contoso)
    PaymentAttempt.objects.filter(pk=attempt.pk).update(gateway="stripe")
    url = reverse("support:simulated_bank", args=[contoso.account.pk, attempt.pk])
    assert support_client.get(url).status_code == 404


def test_account_view_with_refunds_and_disputes_costs_the_same_queries(support_client, contoso):
    first = settle(contoso)
    url = reverse("support:account", args=[contoso.account.pk])
    support_client.get(url)
    with CaptureQueriesContext(connection) as few:
        support_client.get(url)
    for i in range(5):
        support_payment_refund(
            account_id=contoso.account.pk,
            attempt_id=first.pk,
            amount="1.00",
            actor=contoso.admin,
            reason=f"r{i}",
            idempotency_key=f"r{i}",
        )
    sim_dispute_raise(attempt_id=first.pk, reason="duplicate")
    with CaptureQueriesContext(connection) as many:
        response = support_client.get(url + "?page=2")
        response = support_client.get(url)
    assert response.status_code == 200
    assert len(many) // 2 <= len(few) + 3  # the timeline's three new kinds, once each


def test_refund_of_a_transfer_is_refused_in_words(support_user, northwind):
    account, _sub, invoice = northwind
    attempt = bank_transfer_record(
        account_id=account.pk,
        amount="1250.00",
        currency="USD",
        received_on=timezone.localdate(),
        reference=invoice.number,
        actor=support_user,
        reason="wire",
    )
    with pytest.raises(SupportActionError, match="bank transfer"):
        support_payment_refund(
            account_id=account.pk,
            attempt_id=attempt.pk,
            amount="",
            actor=support_user,
            reason="x",
            idempotency_key="x",
        )


def test_dutch_bank_transfer_receipt_is_dutch_with_a_dutch_date(
    support_user, django_capture_on_commit_callbacks
):
    """One service writes every receipt: a Dutch account's transfer receipt is Dutch, date and all."""
    account = BillingAccountFactory(
        name="Fabrikam BV",
        language="nl",
        currency="EUR",
        payment_mode=BillingAccount.PaymentMode.BANK_TRANSFER,
        remittance_bank_name="Woodgrove Bank",
        remittance_iban="NL91ABNA0417164300",
    )
    MembershipFactory(account=account, user=UserFactory(email="admin@fabrikam.example"), role=Role.OWNER)
    _sub, invoice = past_due_subscription(account, amount_minor=7200, days_ago=20, number="INV-NL-1")
    with django_capture_on_commit_callbacks(execute=True):
        bank_transfer_record(
            account_id=account.pk,
            amount="72.00",
            currency="EUR",
            received_on=dt.date(2026, 11, 24),
            reference="INV-NL-1",
            actor=support_user,
            reason="Afschrift regel 4",
        )
    notice = Notice.objects.get(account=account, kind=Notice.Kind.PAYMENT_RECEIVED)
    assert notice.context["paid_on"] == "24 nov 2026"
    assert notice.context["method"] == "Bankoverschrijving (ref. INV-NL-1)"
    [message] = mail.outbox
    assert "Betaling ontvangen" in message.subject
    assert "24 nov 2026" in message.body
    assert "2026-11-24" not in message.body
    assert "Bankoverschrijving (ref. INV-NL-1)" in message.body
    assert "We received" not in message.body
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID


def test_disputed_card_shows_in_the_account_view(support_client, contoso):
    attempt = settle(contoso)
    sim_dispute_raise(attempt_id=attempt.pk, reason="fraudulent")
    page = support_client.get(reverse("support:account", args=[contoso.account.pk])).content.decode()
    assert "Chargeback: no automatic charges" in page
    assert f"on payment {attempt.reference} (fraudulent)" in page


@pytest.mark.parametrize(
    "data",
    [
        {"action": "refund", "amount": "lots"},
        {"action": "refund", "amount": "999999.00"},
        {"action": "won", "dispute": "12345"},
        {"action": "explode"},
        {"action": "lost", "dispute": "²"},
    ],
)
def test_simulated_bank_bad_input_changes_nothing_and_never_500s(support_client, contoso, data):
    attempt = settle(contoso)
    url = reverse("support:simulated_bank", args=[contoso.account.pk, attempt.pk])
    response = support_client.post(url, data)
    assert response.status_code in (302, 400, 404)
    assert not Refund.objects.exists()
    assert not Dispute.objects.exists()


def test_refund_page_of_a_failed_payment_says_why(support_client, contoso):
    failed = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["m365"].pk,
        payment_method_id=contoso.visa.pk,
        actor=contoso.admin,
        idempotency_key="declined",
    )
    response = _post(support_client, _refund_url(contoso, failed), amount="", reason="x", token="t")
    assert response.status_code == 400
    assert "did not succeed" in response.content.decode()
