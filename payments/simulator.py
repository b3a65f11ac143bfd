"""Raise refunds and chargebacks at the simulated bank, as if made in a gateway's dashboard or by a
cardholder's bank, and deliver the events the gateway would send. For demos and offline checks only:
the events are the same `GatewayEvent`s the Stripe adapter makes of Stripe's webhooks, and they go
through the same store-once table and handlers as a webhook delivery (payments.webhooks.gateway_event_receive:
REFUND_UPDATED → payments.refunds, DISPUTE_* → payments.disputes).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass

from gateway_sim import services as bank
from gateway_sim.models import SimDispute

from .gateways.base import GatewayEvent
from .gateways.simulated import dispute_event, refund_event
from .models import Dispute, PaymentAttempt


class SimulationError(Exception):
    pass


@dataclass(frozen=True)
class Simulated:
    gateway_reference: str
    note: str


def _deliver(event: GatewayEvent) -> str:
    """Hand the bank's event over exactly like a webhook: stored once by its id, then handled."""
    from .webhooks import gateway_event_receive

    info = event.refund if event.refund is not None else event.dispute
    obj = dataclasses.asdict(info) if info is not None else {}
    payload = json.loads(json.dumps({"id": event.id, "type": event.raw_type, "object": obj}, default=str))
    stored = gateway_event_receive(gateway_name="simulated", event=event, payload=payload)
    return f"{stored.type} {stored.event_id}: {stored.status}" + (
        f" ({stored.error})" if stored.error else ""
    )


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
    return Simulated(refund.reference, _deliver(refund_event(refund)))


def sim_dispute_raise(*, attempt_id: int, reason: str, amount_minor: int | None = None) -> Simulated:
    """The cardholder's bank opens a chargeback on the payment, then its webhook."""
    attempt = _simulated_charge(attempt_id)
    try:
        dispute = bank.sim_dispute_open(
            charge_reference=attempt.gateway_reference, reason=reason, amount_minor=amount_minor
        )
    except bank.SimRefundRefused as exc:
        raise SimulationError(str(exc)) from None
    return Simulated(dispute.reference, _deliver(dispute_event(dispute)))


def sim_dispute_decide(*, dispute_id: int, won: bool) -> Simulated:
    """The card network decides a chargeback at the simulated bank, then its webhook."""
    ours = Dispute.objects.filter(pk=dispute_id, gateway="simulated").first()
    if ours is None:
        raise SimulationError(f"dispute {dispute_id} is not at the simulated bank")
    try:
        dispute = bank.sim_dispute_close(reference=ours.gateway_reference, won=won)
    except SimDispute.DoesNotExist:
        raise SimulationError(f"the simulated bank has no dispute {ours.gateway_reference}") from None
    return Simulated(dispute.reference, _deliver(dispute_event(dispute)))
