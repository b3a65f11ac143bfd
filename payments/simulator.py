"""Raise refunds and chargebacks at the simulated bank, as if made in a gateway's dashboard or by a
cardholder's bank, and deliver the events the gateway would send. For demos and offline checks only:
the events are the same `GatewayEvent`s the Stripe adapter makes of Stripe's webhooks, and they go
through the same handlers (payments.refunds.refund_event_apply, payments.disputes.dispute_event_apply).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from gateway_sim import services as bank
from gateway_sim.models import SimDispute

from .disputes import dispute_event_apply
from .gateways.simulated import dispute_event, refund_event
from .models import Dispute, PaymentAttempt
from .refunds import refund_event_apply


class SimulationError(Exception):
    pass


@dataclass(frozen=True)
class Simulated:
    gateway_reference: str
    note: str


def _simulated_charge(attempt_id: int) -> PaymentAttempt:
    attempt = PaymentAttempt.objects.filter(pk=attempt_id).first()
    if attempt is None or attempt.gateway != "simulated" or not attempt.gateway_reference:
        raise SimulationError(f"payment {attempt_id} is not a charge at the simulated bank")
    if attempt.status != PaymentAttempt.Status.SUCCEEDED:
        raise SimulationError(f"payment {attempt.reference} did not succeed")
    return attempt


def sim_refund_raise(*, attempt_id: int, amount_minor: int, reason: str = "") -> Simulated:
    """A refund made at the bank itself (like one made in Stripe's dashboard), then its webhook."""
    attempt = _simulated_charge(attempt_id)
    try:
        refund = bank.sim_refund_create(
            charge_reference=attempt.gateway_reference,
            amount_minor=amount_minor,
            currency=attempt.currency,
            idempotency_key=f"sim-dashboard-{secrets.token_hex(8)}",
            reason=reason or "requested_by_customer",
        )
    except bank.SimRefundRefused as exc:
        raise SimulationError(str(exc)) from None
    return Simulated(refund.reference, refund_event_apply(event=refund_event(refund)))


def sim_dispute_raise(*, attempt_id: int, reason: str, amount_minor: int | None = None) -> Simulated:
    """The cardholder's bank opens a chargeback on the payment, then its webhook."""
    attempt = _simulated_charge(attempt_id)
    try:
        dispute = bank.sim_dispute_open(
            charge_reference=attempt.gateway_reference, reason=reason, amount_minor=amount_minor
        )
    except bank.SimRefundRefused as exc:
        raise SimulationError(str(exc)) from None
    return Simulated(dispute.reference, dispute_event_apply(event=dispute_event(dispute)))


def sim_dispute_decide(*, dispute_id: int, won: bool) -> Simulated:
    """The card network decides a chargeback at the simulated bank, then its webhook."""
    ours = Dispute.objects.filter(pk=dispute_id, gateway="simulated").first()
    if ours is None:
        raise SimulationError(f"dispute {dispute_id} is not at the simulated bank")
    try:
        dispute = bank.sim_dispute_close(reference=ours.gateway_reference, won=won)
    except SimDispute.DoesNotExist:
        raise SimulationError(f"the simulated bank has no dispute {ours.gateway_reference}") from None
    return Simulated(dispute.reference, dispute_event_apply(event=dispute_event(dispute)))
