"""Chargebacks: recorded, card blocked for automatic charges, lost → due again, won → nothing; any order."""

import datetime as dt
import itertools

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from dunning.services import account_dunning_run, invoice_charge_due
from gateway_sim.models import SimCharge
from payments import services
from payments.disputes import dispute_event_apply
from payments.gateways.base import DisputeInfo, GatewayEvent, GatewayEventKind
from payments.models import Dispute, DisputeReversal, PaymentMethod
from payments.refunds import RefundError, payment_refund, refundable_minor
from payments.simulator import sim_dispute_decide, sim_dispute_raise
from subscriptions.models import Invoice, Subscription
from tests.payments.money_back import SETTLE_INVOICES, assert_ledger_consistent, settle
from tests.payments.scenario import build_contoso

pytestmark = pytest.mark.django_db

EVIDENCE_DUE = dt.datetime(2026, 12, 20, 23, 59, tzinfo=dt.UTC)


def dispute_event(attempt, kind, status, *, i, amount=None, reference="dp_1", evidence=EVIDENCE_DUE):
    return GatewayEvent(
        id=f"evt_dp_{reference}_{i}",
        kind=kind,
        raw_type=f"charge.dispute.{kind}",
        created=timezone.now() + dt.timedelta(seconds=i),
        dispute=DisputeInfo(
            reference=reference,
            charge_reference=attempt.gateway_reference,
            amount_minor=amount or attempt.amount_minor,
            currency="eur",
            reason="fraudulent",
            status=status,
            evidence_due_by=evidence,
        ),
    )


def opened(attempt, **kw):
    return dispute_event(attempt, GatewayEventKind.DISPUTE_OPENED, "needs_response", i=0, **kw)


def updated(attempt, **kw):
    return dispute_event(attempt, GatewayEventKind.DISPUTE_UPDATED, "under_review", i=1, **kw)


def closed(attempt, outcome, **kw):
    return dispute_event(attempt, GatewayEventKind.DISPUTE_CLOSED, outcome, i=2, **kw)


def test_opened_dispute_is_recorded_blocks_the_card_and_tells_support(contoso):
    attempt = settle(contoso)
    note = dispute_event_apply(event=opened(attempt))
    dispute = Dispute.objects.get()
    assert "recorded" in note
    assert dispute.status == Dispute.Status.OPEN
    assert dispute.outcome == ""
    assert dispute.amount_minor == 39050
    assert dispute.reason == "fraudulent"
    assert dispute.evidence_due_by == EVIDENCE_DUE
    card = PaymentMethod.objects.get(pk=contoso.mastercard.pk)
    assert card.disputed_at is not None
    assert dispute.reference in card.blocked_reason
    audit = AuditEvent.objects.get(action="dispute.opened")
    assert "fraudulent" in audit.message
    assert "20 Dec 2026" in audit.message
    # Nothing of an open chargeback may be refunded on top (the bank may take it back itself).
    assert refundable_minor(attempt=attempt) == 0
    with pytest.raises(RefundError):
        payment_refund(attempt_id=attempt.pk, amount_minor=100, reason="x", actor=None, idempotency_key="k")


def test_disputed_card_is_not_charged_automatically(contoso):
    attempt = settle(contoso)
    dispute_event_apply(event=opened(attempt))
    teams = Invoice.objects.get(pk=contoso.invoices["teams"].pk)
    Invoice.objects.filter(pk=teams.pk).update(next_attempt_at=timezone.now() - dt.timedelta(minutes=1))
    charges = SimCharge.objects.count()
    assert invoice_charge_due(invoice_id=teams.pk, now=timezone.now()) == "no_method"
    assert SimCharge.objects.count() == charges
    assert Invoice.objects.get(pk=teams.pk).next_attempt_at is None
    # The engine itself refuses an off-session charge on it, whoever asks (support's retry now too).
    with pytest.raises(services.CardDisputed):
        services.invoices_charge(
            account_id=contoso.account.pk,
            invoice_ids=[teams.pk],
            payment_method_id=contoso.mastercard.pk,
            source="retry",
            off_session=True,
            idempotency_key="auto-on-disputed",
        )
    # The customer, present, may still pay with it.
    paid = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=teams.pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.admin,
        idempotency_key="customer-pays",
    )
    assert paid.status == "succeeded"


def test_lost_dispute_puts_the_amount_back_as_due_and_charges_nothing(contoso):
    attempt = settle(contoso)
    dispute_event_apply(event=opened(attempt))
    dispute_event_apply(event=closed(attempt, "lost"))
    dispute = Dispute.objects.get()
    assert dispute.status == Dispute.Status.CLOSED
    assert dispute.outcome == Dispute.Outcome.LOST
    assert DisputeReversal.objects.filter(dispute=dispute).count() == 4
    for key in SETTLE_INVOICES:
        invoice = Invoice.objects.get(pk=contoso.invoices[key].pk)
        assert invoice.status == Invoice.Status.PAST_DUE
        assert invoice.amount_due_minor == invoice.total_minor
        assert invoice.next_attempt_at is None
        assert Subscription.objects.get(pk=contoso.subs[key].pk).status == Subscription.Status.PAST_DUE
    audit = AuditEvent.objects.get(action="dispute.lost")
    assert dispute.reference in audit.message
    assert "Nothing is charged automatically" in audit.message
    assert_ledger_consistent(contoso.account.pk)
    charges = SimCharge.objects.count()
    account_dunning_run(account_id=contoso.account.pk, now=timezone.now() + dt.timedelta(days=3))
    assert SimCharge.objects.count() == charges


def test_partly_refunded_then_lost_puts_back_only_what_was_still_paid(contoso):
    attempt = settle(contoso)
    payment_refund(
        attempt_id=attempt.pk, amount_minor=29250, reason="m365 cancelled", actor=None, idempotency_key="r"
    )
    rest = attempt.amount_minor - 29250
    dispute_event_apply(event=opened(attempt, amount=rest))
    dispute_event_apply(event=closed(attempt, "lost", amount=rest))
    assert sum(r.amount_minor for r in DisputeReversal.objects.all()) == rest
    owed = sum(Invoice.objects.filter(account=contoso.account).values_list("amount_due_minor", flat=True))
    assert owed == rest + contoso.invoices["teams"].total_minor
    assert_ledger_consistent(contoso.account.pk)


def test_won_dispute_changes_nothing_and_says_so(contoso):
    attempt = settle(contoso)
    dispute_event_apply(event=opened(attempt))
    before = list(Invoice.objects.order_by("pk").values_list("status", "amount_due_minor"))
    dispute_event_apply(event=closed(attempt, "won"))
    assert list(Invoice.objects.order_by("pk").values_list("status", "amount_due_minor")) == before
    assert Dispute.objects.get().outcome == Dispute.Outcome.WON
    assert not DisputeReversal.objects.exists()
    assert "nothing changes" in AuditEvent.objects.get(action="dispute.won").message
    assert refundable_minor(attempt=attempt) == attempt.amount_minor


def _snapshot(contoso):
    dispute = Dispute.objects.get(account=contoso.account)
    return (
        dispute.status,
        dispute.outcome,
        dispute.gateway_status,
        dispute.evidence_due_by,
        PaymentMethod.objects.get(pk=contoso.mastercard.pk).disputed_at is not None,
        sorted(
            DisputeReversal.objects.filter(dispute=dispute).values_list("invoice__number", "amount_minor")
        ),
        sorted(
            Invoice.objects.filter(account=contoso.account).values_list(
                "number", "status", "amount_due_minor"
            )
        ),
    )


@pytest.mark.parametrize("outcome", ["lost", "won"])
def test_shuffled_duplicated_and_replayed_dispute_story_ends_as_in_order(outcome):
    """Every order of opened → updated → closed, with a duplicate of each, ends in the in-order state."""
    in_order = build_contoso("inorder-")
    attempt = settle(in_order)
    story = [
        opened(attempt, reference="dp_in"),
        updated(attempt, reference="dp_in"),
        closed(attempt, outcome, reference="dp_in"),
    ]
    for e in story:
        dispute_event_apply(event=e)
    expected = _snapshot(in_order)
    expected = (*expected[:6], [(n.replace("inorder-", ""), s, a) for n, s, a in expected[6]])
    for n, order in enumerate(itertools.permutations(range(3))):
        contoso = build_contoso(f"p{n}-")
        attempt = settle(contoso)
        story = [
            opened(attempt, reference=f"dp_{n}"),
            updated(attempt, reference=f"dp_{n}"),
            closed(attempt, outcome, reference=f"dp_{n}"),
        ]
        for i in [*order, *order]:  # shuffled, then every event delivered again
            dispute_event_apply(event=story[i])
        got = _snapshot(contoso)
        got = (*got[:6], [(num.replace(f"p{n}-", ""), s, a) for num, s, a in got[6]])
        assert got[:5] == expected[:5], order
        assert [a for _n, a in got[5]] == [a for _n, a in expected[5]], order
        assert [(s, a) for _n, s, a in got[6]] == [(s, a) for _n, s, a in expected[6]], order
        assert_ledger_consistent(contoso.account.pk)


def test_simulated_bank_raises_disputes_and_decides_them(contoso):
    attempt = settle(contoso)
    raised = sim_dispute_raise(attempt_id=attempt.pk, reason="product_not_received")
    dispute = Dispute.objects.get()
    assert dispute.gateway_reference == raised.gateway_reference
    assert dispute.reason == "product_not_received"
    assert dispute.evidence_due_by is not None
    sim_dispute_decide(dispute_id=dispute.pk, won=False)
    dispute.refresh_from_db()
    assert dispute.outcome == Dispute.Outcome.LOST
    assert DisputeReversal.objects.count() == 4
    # Deciding again (a replay) changes nothing.
    sim_dispute_decide(dispute_id=dispute.pk, won=True)
    dispute.refresh_from_db()
    assert dispute.outcome == Dispute.Outcome.LOST
    assert_ledger_consistent(contoso.account.pk)


def test_sim_bank_command_raises_a_refund_and_a_lost_dispute(contoso):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from payments.models import Refund

    attempt = settle(contoso)
    out = StringIO()
    call_command("sim_bank", "refund", attempt.reference, "--amount", "14.00", stdout=out)
    assert Refund.objects.get().amount_minor == 1400
    assert "sim.refund.succeeded" in out.getvalue()
    assert ": processed" in out.getvalue()
    call_command("sim_bank", "dispute", attempt.reference, "--reason", "duplicate", stdout=out)
    dispute = Dispute.objects.get()
    call_command("sim_bank", "decide", dispute.reference, "--lost", stdout=out)
    dispute.refresh_from_db()
    assert dispute.outcome == Dispute.Outcome.LOST
    assert sum(r.amount_minor for r in DisputeReversal.objects.all()) == attempt.amount_minor - 1400
    with pytest.raises(CommandError, match="not a reference"):
        call_command("sim_bank", "refund", "PAY-٣")
