"""The simulated gateway: the default, offline adapter in front of the gateway_sim bank.

It can be made to time out (settings.SIMULATED_GATEWAY_TIMEOUT_CARDS: the bank takes the charge
but we never hear back, the real-world failure mode reconciliation exists for) or to lose the
request altogether (settings.SIMULATED_GATEWAY_UNREACHABLE_CARDS: nothing reaches the bank).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from gateway_sim import services as bank
from gateway_sim.models import SimCard, SimCharge, SimDispute, SimRefund

from .base import (
    CardCollection,
    CardResult,
    CardSetup,
    ChargeOutcome,
    ChargeResult,
    DisputeInfo,
    GatewayError,
    GatewayEvent,
    GatewayEventKind,
    RefundInfo,
    RefundOutcome,
    RefundResult,
    UnsupportedOperation,
    card_brand,
    classify_decline,
    decline_message,
    luhn_valid,
)


def _faulty(setting: str, token: str) -> bool:
    numbers = set(getattr(settings, setting, ()) or ())
    if not numbers:
        return False
    return SimCard.objects.filter(token=token, number__in=numbers).exists()


def _result(charge: SimCharge) -> ChargeResult:
    if charge.status == SimCharge.Status.SUCCEEDED:
        outcome = ChargeOutcome.SUCCEEDED
    elif charge.status == SimCharge.Status.DECLINED:
        outcome = ChargeOutcome.DECLINED
    elif charge.status == SimCharge.Status.CANCELED:
        outcome = ChargeOutcome.CANCELED
    else:
        outcome = ChargeOutcome.REQUIRES_ACTION
    return ChargeResult(
        outcome=outcome,
        reference=charge.reference,
        decline_code=charge.decline_code if outcome == ChargeOutcome.DECLINED else "",
        decline_category=classify_decline(charge.decline_code) if outcome == ChargeOutcome.DECLINED else None,
        action_url=(
            reverse("gateway_sim:challenge", args=[charge.reference])
            if outcome == ChargeOutcome.REQUIRES_ACTION
            else ""
        ),
        amount_minor=charge.amount_minor,
        currency=charge.currency,
        network_advice_code=charge.network_advice_code if outcome == ChargeOutcome.DECLINED else "",
        network_decline_code=charge.network_decline_code if outcome == ChargeOutcome.DECLINED else "",
    )


def simulated_fingerprint(*, brand: str, last4: str, exp_month: int, exp_year: int) -> str:
    """The simulator's card identity: brand, last four and expiry (the bank has no fingerprint of its own).
    Seeds and tests use it too, so a demo card added again through the form is recognised."""
    raw = f"{brand}:{last4}:{int(exp_month):02d}/{int(exp_year)}"
    return "simfp_" + hashlib.sha256(raw.encode()).hexdigest()[:32]


class SimulatedGateway:
    name = "simulated"
    # The bank answers from its own table: "not found" is the truth at once.
    lookup_is_final = True
    # Our own card form posts the number to the (simulated) bank through our server.
    card_collection = CardCollection.SERVER_FORM
    public_key = ""

    def charge(
        self,
        *,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        off_session: bool,
        return_url: str = "",
        description: str = "",
        language: str = "",
    ) -> ChargeResult:
        if _faulty("SIMULATED_GATEWAY_UNREACHABLE_CARDS", token):
            return ChargeResult.unknown("simulated: connection failed before the request reached the bank")
        try:
            charge = bank.sim_charge_create(
                token=token,
                amount_minor=amount_minor,
                currency=currency,
                idempotency_key=idempotency_key,
                off_session=off_session,
                return_url=return_url,
                description=description,
                language=language,
            )
        except SimCard.DoesNotExist:
            return ChargeResult.declined("invalid_account", message="simulated: unknown card token")
        if _faulty("SIMULATED_GATEWAY_TIMEOUT_CARDS", token):
            # The bank acted on it, but the answer never reached us.
            return ChargeResult.unknown("simulated: read timed out")
        return _result(charge)

    def confirm(self, *, reference: str) -> ChargeResult:
        try:
            return _result(bank.sim_charge_get(reference=reference))
        except bank.SimChargeNotFound:
            return ChargeResult(outcome=ChargeOutcome.NOT_FOUND, reference=reference)

    def lookup(self, *, idempotency_key: str, reference: str = "") -> ChargeResult:
        try:
            charge = bank.sim_charge_get(reference=reference, idempotency_key=idempotency_key)
        except bank.SimChargeNotFound:
            return ChargeResult(outcome=ChargeOutcome.NOT_FOUND, reference=reference)
        return _result(charge)

    def cancel(self, *, reference: str) -> ChargeResult:
        try:
            return _result(bank.sim_charge_cancel(reference=reference))
        except SimCharge.DoesNotExist:
            return ChargeResult(outcome=ChargeOutcome.NOT_FOUND, reference=reference)

    def add_card(
        self, *, number: str, exp_month: int, exp_year: int, cvc: str, holder_name: str
    ) -> CardResult:
        number = "".join(c for c in number if not c.isspace() and c != "-")
        errors: dict[str, str] = {}
        if not luhn_valid(number):
            errors["number"] = _("This card number is not valid. Check the digits and try again.")
        if not (cvc.isdigit() and len(cvc) in (3, 4)):
            errors["cvc"] = _("Enter the 3 or 4 digit security code from the back of the card.")
        if errors:
            return CardResult(ok=False, errors=errors)
        if number in bank.DECLINED_ON_ATTACH:
            return CardResult(ok=False, errors={"number": decline_message(bank.DECLINED_ON_ATTACH[number])})
        token = bank.sim_card_register(
            number=number, exp_month=exp_month, exp_year=exp_year, holder_name=holder_name
        )
        brand = card_brand(number)
        return CardResult(
            ok=True,
            token=token,
            brand=brand,
            last4=number[-4:],
            exp_month=exp_month,
            exp_year=exp_year,
            fingerprint=simulated_fingerprint(
                brand=brand, last4=number[-4:], exp_month=exp_month, exp_year=exp_year
            ),
        )

    def update_expiry(self, *, token: str, exp_month: int, exp_year: int) -> CardResult:
        try:
            card = bank.sim_card_update_expiry(token=token, exp_month=exp_month, exp_year=exp_year)
        except SimCard.DoesNotExist:
            return CardResult(ok=False, errors={"__all__": _("The bank does not know this card.")})
        return CardResult(
            ok=True,
            token=token,
            brand=card_brand(card.number),
            last4=card.number[-4:],
            exp_month=exp_month,
            exp_year=exp_year,
        )

    def card_setup_start(self, *, customer: str, idempotency_key: str) -> CardSetup:
        raise UnsupportedOperation("the simulated bank takes cards from our own form (add_card)")

    def card_setup_finish(self, *, reference: str) -> CardResult:
        raise UnsupportedOperation("the simulated bank takes cards from our own form (add_card)")

    def customer_create(self, *, name: str, email: str, idempotency_key: str) -> str:
        return ""  # the simulated bank files cards without customers

    def detach(self, *, token: str) -> None:
        """Forget the card at the bank: it can never be charged again. Forgetting it twice is fine."""
        try:
            bank.sim_card_forget(token=token)
        except Exception as exc:  # the bank's own table: anything here is a bug, not a lost answer
            raise GatewayError(f"simulated: could not forget the card: {exc}", permanent=True) from exc

    def parse_webhook(self, *, payload: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        raise UnsupportedOperation("the simulated bank is in-process and sends no webhooks")

    def refund(
        self,
        *,
        charge_reference: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        reason: str = "",
    ) -> RefundResult:
        if _faulty_charge("SIMULATED_GATEWAY_UNREACHABLE_CARDS", charge_reference):
            return RefundResult(outcome=RefundOutcome.UNKNOWN, message="simulated: connection failed")
        try:
            refund = bank.sim_refund_create(
                charge_reference=charge_reference,
                amount_minor=amount_minor,
                currency=currency,
                idempotency_key=idempotency_key,
                reason=reason,
            )
        except bank.SimRefundRefused as exc:
            return RefundResult(outcome=RefundOutcome.INVALID, message=f"simulated: {exc}")
        if _faulty_charge("SIMULATED_GATEWAY_TIMEOUT_CARDS", charge_reference):
            return RefundResult(outcome=RefundOutcome.UNKNOWN, message="simulated: read timed out")
        return RefundResult(
            outcome=RefundOutcome(refund.status),
            reference=refund.reference,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
        )


def _faulty_charge(setting: str, charge_reference: str) -> bool:
    numbers = set(getattr(settings, setting, ()) or ())
    if not numbers:
        return False
    return SimCharge.objects.filter(reference=charge_reference, card__number__in=numbers).exists()


# The simulated bank's events, in the same dataclasses the Stripe adapter makes of Stripe's webhooks,
# so refunds and chargebacks raised at the simulated bank go through the same handlers.


def refund_event(refund: SimRefund, *, event_id: str = "") -> GatewayEvent:
    return GatewayEvent(
        id=event_id or f"sim_evt_{refund.reference}_{refund.status}",
        kind=GatewayEventKind.REFUND_UPDATED,
        raw_type=f"sim.refund.{refund.status}",
        created=timezone.now(),
        refund=RefundInfo(
            reference=refund.reference,
            charge_reference=refund.charge.reference,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
            status=RefundOutcome(refund.status),
            reason=refund.reason,
        ),
    )


def dispute_event(dispute: SimDispute, *, created: dt.datetime | None = None) -> GatewayEvent:
    decided = dispute.status in (SimDispute.Status.WON, SimDispute.Status.LOST)
    kind = GatewayEventKind.DISPUTE_CLOSED if decided else GatewayEventKind.DISPUTE_OPENED
    return GatewayEvent(
        id=f"sim_evt_{dispute.reference}_{dispute.status}",
        kind=kind,
        raw_type="sim.dispute.closed" if decided else "sim.dispute.created",
        created=created or timezone.now(),
        dispute=DisputeInfo(
            reference=dispute.reference,
            charge_reference=dispute.charge.reference,
            amount_minor=dispute.amount_minor,
            currency=dispute.currency,
            reason=dispute.reason,
            status=dispute.status,
            evidence_due_by=dispute.evidence_due_by,
        ),
    )
