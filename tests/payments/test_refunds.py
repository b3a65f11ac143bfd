"""Refunds through the simulated gateway: credit notes, limits, idempotency, unknown answers, webhooks."""

import datetime as dt
import re
import uuid

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from gateway_sim.models import SimRefund
from notifications.models import Notice
from payments import services
from payments.gateways.base import GatewayEvent, GatewayEventKind, RefundInfo, RefundOutcome
from payments.ledger import bank_transfer_receive
from payments.models import CreditNote, PaymentAttempt, Refund
from payments.refunds import (
    RefundError,
    RefundInProgress,
    overpaid_minor,
    payment_refund,
    refund_event_apply,
    refund_reconcile,
    refundable_minor,
)
from payments.simulator import sim_refund_raise
from subscriptions.models import Invoice
from tests.payments.money_back import SETTLE_INVOICES, assert_ledger_consistent, settle

pytestmark = pytest.mark.django_db


def refund(attempt, amount, *, actor=None, key=None, reason="Customer cancelled within 14 days"):
    return payment_refund(
        attempt_id=attempt.pk,
        amount_minor=amount,
        reason=reason,
        actor=actor,
        idempotency_key=key or str(uuid.uuid4()),
    )


def test_full_refund_writes_a_credit_note_on_each_invoice_and_leaves_them_paid(
    contoso, django_capture_on_commit_callbacks
):
    attempt = settle(contoso)
    with django_capture_on_commit_callbacks(execute=True):
        done = refund(attempt, attempt.amount_minor, actor=contoso.admin)
    assert done.status == Refund.Status.SUCCEEDED
    assert done.gateway_reference.startswith("sim_re_")
    assert SimRefund.objects.get().amount_minor == 39050
    notes = list(CreditNote.objects.order_by("invoice_id"))
    assert [n.invoice_id for n in notes] == sorted(contoso.invoices[k].pk for k in SETTLE_INVOICES)
    assert sum(n.amount_minor for n in notes) == 39050
    assert all(re.fullmatch(r"CN-\d{8}", n.number) for n in notes)
    assert len({n.number for n in notes}) == 4
    for key in SETTLE_INVOICES:
        invoice = Invoice.objects.get(pk=contoso.invoices[key].pk)
        assert invoice.status == Invoice.Status.PAID
        assert invoice.amount_due_minor == 0
    assert_ledger_consistent(contoso.account.pk)
    assert refundable_minor(attempt=attempt) == 0
    audit = AuditEvent.objects.get(action="refund.succeeded")
    assert "CN-" in audit.message
    assert attempt.reference in audit.message
    notice = Notice.objects.get(kind="refund_issued")
    assert "€390.50" in notice.subject


def test_partial_refund_credits_the_oldest_invoice_first(contoso):
    attempt = settle(contoso)
    done = refund(attempt, 1000)
    assert done.status == Refund.Status.SUCCEEDED
    note = CreditNote.objects.get()
    assert note.amount_minor == 1000
    assert note.invoice_id == min(contoso.invoices[k].pk for k in SETTLE_INVOICES)
    assert refundable_minor(attempt=attempt) == 38050
    assert_ledger_consistent(contoso.account.pk)


def test_refund_of_more_than_remains_is_refused_and_changes_nothing(contoso):
    attempt = settle(contoso)
    refund(attempt, 30000)
    with pytest.raises(RefundError, match="more than what is left"):
        refund(attempt, 9051)
    assert Refund.objects.count() == 1
    assert SimRefund.objects.count() == 1
    refund(attempt, 9050)
    with pytest.raises(RefundError):
        refund(attempt, 1)
    assert sum(r.amount_minor for r in SimRefund.objects.all()) == 39050


@pytest.mark.parametrize("amount", [0, -5])
def test_refund_of_nothing_is_refused(contoso, amount):
    attempt = settle(contoso)
    with pytest.raises(RefundError):
        refund(attempt, amount)
    assert not Refund.objects.exists()


def test_refund_needs_a_reason(contoso):
    attempt = settle(contoso)
    with pytest.raises(RefundError, match="reason"):
        refund(attempt, 100, reason="   ")
    assert not Refund.objects.exists()


def test_same_key_refunds_once(contoso):
    attempt = settle(contoso)
    first = refund(attempt, 500, key="refund-key-1")
    again = refund(attempt, 500, key="refund-key-1")
    assert first.pk == again.pk
    assert SimRefund.objects.count() == 1
    assert CreditNote.objects.count() == 1


def test_a_bank_transfer_is_not_refunded_through_a_gateway(contoso):
    invoice = contoso.invoices["teams"]
    attempt = bank_transfer_receive(
        account_id=contoso.account.pk,
        amount_minor=invoice.amount_due_minor,
        received_on=timezone.localdate(),
        reference=invoice.number,
        allocations=[(invoice.pk, invoice.amount_due_minor)],
        idempotency_key="bt-1",
        actor=None,
    )
    with pytest.raises(RefundError, match="bank transfer"):
        refund(attempt, 100)


def test_a_failed_payment_has_nothing_to_refund(contoso):
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["m365"].pk,
        payment_method_id=contoso.visa.pk,
        actor=contoso.admin,
        idempotency_key="declines",
    )
    assert attempt.status == PaymentAttempt.Status.FAILED
    with pytest.raises(RefundError, match="did not succeed"):
        refund(attempt, 100)


def test_unanswered_refund_stays_pending_and_is_finished_with_the_same_key(contoso, settings):
    attempt = settle(contoso)
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = ["5555555555554444"]
    pending = refund(attempt, 2000)
    assert pending.status == Refund.Status.PENDING
    assert pending.reconcile_after is not None
    assert SimRefund.objects.count() == 1  # the bank did it; we did not hear
    assert not CreditNote.objects.exists()
    # While it is open no second refund of the payment starts (it could give back twice).
    with pytest.raises(RefundInProgress):
        refund(attempt, 100)
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = []
    done = refund_reconcile(refund_id=pending.pk)
    assert done.status == Refund.Status.SUCCEEDED
    assert SimRefund.objects.count() == 1  # same key: the same refund, not a second one
    assert CreditNote.objects.count() == 1
    assert_ledger_consistent(contoso.account.pk)


def test_refund_racing_its_webhook_counts_once(contoso, settings):
    """Our call has not answered yet when the gateway's webhook for the same refund arrives."""
    attempt = settle(contoso)
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = ["5555555555554444"]
    pending = refund(attempt, 2500)
    sim = SimRefund.objects.get()
    event = GatewayEvent(
        id="evt_refund_1",
        kind=GatewayEventKind.REFUND_UPDATED,
        raw_type="refund.updated",
        created=timezone.now(),
        refund=RefundInfo(
            reference=sim.reference,
            charge_reference=attempt.gateway_reference,
            amount_minor=2500,
            currency="EUR",
            status=RefundOutcome.SUCCEEDED,
        ),
    )
    note = refund_event_apply(event=event)
    assert "matched to our pending refund" in note
    assert Refund.objects.count() == 1
    pending.refresh_from_db()
    assert pending.status == Refund.Status.SUCCEEDED
    assert pending.gateway_reference == sim.reference
    # Then our own answer arrives (reconciliation), and the webhook is delivered again.
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = []
    refund_reconcile(refund_id=pending.pk)
    assert "nothing changed" in refund_event_apply(event=event)
    assert Refund.objects.count() == 1
    assert CreditNote.objects.count() == 1
    assert SimRefund.objects.count() == 1
    assert refundable_minor(attempt=attempt) == 39050 - 2500
    assert_ledger_consistent(contoso.account.pk)


def test_our_answer_first_then_the_webhook_counts_once(contoso):
    attempt = settle(contoso)
    done = refund(attempt, 700)
    sim = SimRefund.objects.get()
    event = GatewayEvent(
        id="evt_refund_2",
        kind=GatewayEventKind.REFUND_UPDATED,
        raw_type="refund.updated",
        created=timezone.now(),
        refund=RefundInfo(
            reference=sim.reference,
            charge_reference=attempt.gateway_reference,
            amount_minor=700,
            currency="EUR",
            status=RefundOutcome.SUCCEEDED,
        ),
    )
    assert "nothing changed" in refund_event_apply(event=event)
    assert Refund.objects.get().pk == done.pk
    assert CreditNote.objects.count() == 1


def test_refund_made_at_the_gateway_arrives_by_webhook_and_is_applied_once(contoso):
    attempt = settle(contoso)
    raised = sim_refund_raise(attempt_id=attempt.pk, amount_minor=1400, reason="requested_by_customer")
    made = Refund.objects.get()
    assert made.source == Refund.Source.GATEWAY
    assert made.status == Refund.Status.SUCCEEDED
    assert made.gateway_reference == raised.gateway_reference
    assert CreditNote.objects.get().refund_id == made.pk
    # Replays of the same event change nothing.
    from gateway_sim.models import SimRefund as Sim
    from payments.gateways.simulated import refund_event

    for _ in range(3):
        refund_event_apply(event=refund_event(Sim.objects.get()))
    assert Refund.objects.count() == 1
    assert CreditNote.objects.count() == 1
    assert_ledger_consistent(contoso.account.pk)


def test_shuffled_and_replayed_refund_story_ends_in_the_same_state(contoso):
    """created (pending) → succeeded, delivered in every order and twice, ends as in order."""
    import itertools

    attempt = settle(contoso)
    sim = SimRefund.objects.create(
        reference="sim_re_story",
        idempotency_key="story",
        charge_id=__import__("gateway_sim").models.SimCharge.objects.get().pk,
        amount_minor=3000,
        currency="EUR",
        status="succeeded",
    )

    def event(status, i):
        return GatewayEvent(
            id=f"evt_{i}",
            kind=GatewayEventKind.REFUND_UPDATED,
            raw_type="refund.updated",
            created=timezone.now() + dt.timedelta(seconds=i),
            refund=RefundInfo(
                reference=sim.reference,
                charge_reference=attempt.gateway_reference,
                amount_minor=3000,
                currency="EUR",
                status=status,
            ),
        )

    story = [event(RefundOutcome.PENDING, 0), event(RefundOutcome.SUCCEEDED, 1)]
    for order in itertools.permutations(story + story[:1]):
        for e in order:
            refund_event_apply(event=e)
        made = Refund.objects.get()
        assert made.status == Refund.Status.SUCCEEDED
        assert CreditNote.objects.count() == 1
        assert CreditNote.objects.get().amount_minor == 3000
        assert_ledger_consistent(contoso.account.pk)


def test_overpayment_gets_a_refund_of_exactly_what_was_overpaid(contoso, settings):
    """A card payment without an answer; meanwhile the invoice is paid by transfer; then the card
    payment turns out to have succeeded: its money is overpaid and can be given back, without a
    credit note (the invoice was never paid twice)."""
    invoice = contoso.invoices["teams"]
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = ["5555555555554444"]
    unknown = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=invoice.pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.admin,
        idempotency_key="lost-answer",
    )
    assert unknown.status == PaymentAttempt.Status.UNKNOWN
    # Support records a transfer for the same invoice (the in-flight card payment is not applied yet).
    PaymentAttempt.objects.filter(pk=unknown.pk).update(status=PaymentAttempt.Status.CANCELED)
    bank_transfer_receive(
        account_id=contoso.account.pk,
        amount_minor=3600,
        received_on=timezone.localdate(),
        reference=invoice.number,
        allocations=[(invoice.pk, 3600)],
        idempotency_key="bt-overpaid",
        actor=None,
    )
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = []
    PaymentAttempt.objects.filter(pk=unknown.pk).update(status=PaymentAttempt.Status.UNKNOWN)
    PaymentAttempt.objects.filter(pk=unknown.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    late = services.attempt_reconcile(attempt_id=unknown.pk)
    assert late.status == PaymentAttempt.Status.SUCCEEDED
    assert AuditEvent.objects.filter(action="payment.overpaid", target_id=str(late.pk)).exists()
    assert overpaid_minor(attempt=late) == 3600
    done = payment_refund(
        attempt_id=late.pk,
        amount_minor=overpaid_minor(attempt=late),
        reason="Overpaid",
        actor=None,
        idempotency_key=f"overpaid:{late.pk}",
        source=Refund.Source.OVERPAYMENT,
    )
    assert done.status == Refund.Status.SUCCEEDED
    assert done.unapplied_minor == 3600
    assert not CreditNote.objects.exists()
    assert overpaid_minor(attempt=late) == 0
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID
    assert_ledger_consistent(contoso.account.pk)


def test_refund_sweep_finishes_a_refund_whose_process_died(contoso, settings):
    """Phase 1 committed, then the process died before asking the gateway: the sweep asks, once."""
    from payments.tasks import refunds_reconcile_due

    attempt = settle(contoso)
    settings.SIMULATED_GATEWAY_UNREACHABLE_CARDS = ["5555555555554444"]
    pending = refund(attempt, 1200)
    assert pending.status == Refund.Status.PENDING
    assert not SimRefund.objects.exists()  # the request never reached the bank
    settings.SIMULATED_GATEWAY_UNREACHABLE_CARDS = []
    Refund.objects.filter(pk=pending.pk).update(reconcile_after=timezone.now() - dt.timedelta(seconds=1))
    assert refunds_reconcile_due() == 1
    pending.refresh_from_db()
    assert pending.status == Refund.Status.SUCCEEDED
    assert SimRefund.objects.count() == 1
    assert refunds_reconcile_due() == 0
