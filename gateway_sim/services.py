"""The simulated bank: card behaviour after Stripe's documented test cards (PRODUCT.md)."""

from __future__ import annotations

import datetime as dt
import secrets
from contextlib import nullcontext

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from billing_portal.compiled import CompiledQuery

from .models import SimCard, SimCharge, SimDispute, SimRefund

# Numbers whose charges the bank declines, and with which code.
DECLINING_CARDS = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000119": "processing_error",
    "4000000000009979": "stolen_card",
    # Attaches fine, but every later charge is declined.
    "4000000000000341": "card_declined",
}
# These are refused already when the card is added (as Stripe does when attaching them).
DECLINED_ON_ATTACH = {n: c for n, c in DECLINING_CARDS.items() if n != "4000000000000341"}

# Network-hint cards (ours, not Stripe's): they attach fine and every charge is declined with the
# card network's own codes, as Stripe passes them in last_payment_error.network_advice_code /
# network_decline_code. Mastercard Merchant Advice Codes: 03 / 21 never retry, 24–30 retry after
# 1 h … 10 days. Visa Category 1 response codes: never retry. (docs/RECOVERY.md, "Test cards".)
# number: (decline code, network_advice_code, network_decline_code)
NETWORK_CARDS: dict[str, tuple[str, str, str]] = {
    "5200000000000031": ("card_declined", "03", "05"),
    "5200000000000213": ("card_declined", "21", "05"),
    "5200000000000247": ("card_declined", "24", "05"),
    "5200000000000254": ("card_declined", "25", "05"),
    "5200000000000262": ("card_declined", "26", "05"),
    "5200000000000270": ("card_declined", "27", "05"),
    "5200000000000288": ("card_declined", "28", "05"),
    "5200000000000296": ("card_declined", "29", "05"),
    "5200000000000304": ("card_declined", "30", "05"),
    "4000000000001042": ("pickup_card", "", "04"),
    "4000000000001075": ("pickup_card", "", "07"),
    "4000000000001125": ("transaction_not_allowed", "", "12"),
    "4000000000001141": ("incorrect_number", "", "14"),
    "4000000000001158": ("invalid_account", "", "15"),
    "4000000000001414": ("lost_card", "", "41"),
    "4000000000001430": ("stolen_card", "", "43"),
    # A generic code with a Category 1 network code: the network code alone stops the retries.
    "4000000000001463": ("card_declined", "", "46"),
    "4000000000001570": ("transaction_not_allowed", "", "57"),
    "4000000000001802": ("do_not_try_again", "", "R0"),
    "4000000000001810": ("revocation_of_authorization", "", "R1"),
    "4000000000001836": ("revocation_of_authorization", "", "R3"),
}
THREE_D_SECURE_CARDS = {"4000002500003155"}


class SimChargeNotFound(Exception):
    pass


def sim_card_register(*, number: str, exp_month: int, exp_year: int, holder_name: str = "") -> str:
    """Put a card into the bank's books and return its token. Seeds and tests call this directly."""
    number = "".join(c for c in number if c in "0123456789")
    if not 12 <= len(number) <= 19:  # the bank's books hold card numbers, varchar(19)
        raise ValueError("a card number has 12 to 19 digits")
    card = SimCard.objects.create(
        token=f"sim_card_{secrets.token_hex(12)}",
        number=number,
        exp_month=exp_month,
        exp_year=exp_year,
        holder_name=holder_name,
    )
    return card.token


def sim_card_update_expiry(*, token: str, exp_month: int, exp_year: int) -> SimCard:
    card = SimCard.objects.get(token=token)
    card.exp_month, card.exp_year = exp_month, exp_year
    card.save(update_fields=["exp_month", "exp_year"])
    return card


def sim_card_forget(*, token: str) -> None:
    """Detach: the bank no longer charges this card, ever. Its past charges (and their refunds) stay
    on the books. Forgetting twice, or a token the bank never knew, is fine."""
    SimCard.objects.filter(token=token, forgotten_at__isnull=True).update(forgotten_at=timezone.now())


def _expired(card: SimCard) -> bool:
    today = timezone.localdate()
    return (card.exp_year, card.exp_month) < (today.year, today.month)


def _card(*, token: str) -> QuerySet[SimCard]:
    return SimCard.objects.filter(token=token, forgotten_at__isnull=True).order_by("pk")[:1]


# The bank's look-up on every charge, compiled once per process (billing_portal.compiled).
_card_compiled = CompiledQuery(_card)


def sim_charge_create(
    *,
    token: str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    off_session: bool,
    return_url: str = "",
    description: str = "",
    language: str = "",
) -> SimCharge:
    """Charge a card once per idempotency key; a repeated key returns the first charge untouched.

    `language` is the cardholder's language as the merchant sent it (3-D Secure 2 carries one in the
    authentication request); the bank's challenge page speaks it.

    Two round trips for a new charge: the card, then the INSERT (a statement of its own, atomic by itself,
    when no transaction is open). A repeated key is rare (a retried task), so the key's uniqueness answers
    it: the INSERT fails and the first charge is read, instead of a look-up before every charge.
    """
    found = _card_compiled(token=token)  # forgotten: unknown
    card = found[0] if found else None
    if card is None:
        existing = SimCharge.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:  # the card was forgotten after this key's charge: still its answer
            return existing
        raise SimCard.DoesNotExist(f"no card {token}")
    status, code, advice, network_code = SimCharge.Status.SUCCEEDED, "", "", ""
    if _expired(card):
        status, code, network_code = SimCharge.Status.DECLINED, "expired_card", "54"
    elif card.number in NETWORK_CARDS:
        status = SimCharge.Status.DECLINED
        code, advice, network_code = NETWORK_CARDS[card.number]
    elif card.number in DECLINING_CARDS:
        status, code = SimCharge.Status.DECLINED, DECLINING_CARDS[card.number]
    elif card.number in THREE_D_SECURE_CARDS:
        if off_session:
            # The bank wants the cardholder present; a job cannot authenticate.
            status, code = SimCharge.Status.DECLINED, "authentication_required"
        else:
            status = SimCharge.Status.REQUIRES_ACTION
    charge = SimCharge(
        reference=f"sim_ch_{secrets.token_hex(12)}",
        idempotency_key=idempotency_key,
        card=card,
        amount_minor=amount_minor,
        currency=currency,
        status=status,
        decline_code=code,
        network_advice_code=advice,
        network_decline_code=network_code,
        off_session=off_session,
        return_url=return_url,
        description=description[:300],
        language=language[:8],
    )
    try:
        # Inside a caller's transaction a savepoint keeps a duplicate key from breaking it; outside
        # one, the INSERT commits on its own and a duplicate breaks nothing.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            charge.save(force_insert=True)
    except IntegrityError:
        # The key was used before (a retried request) or by a concurrent one that won the race:
        # answer with that charge, untouched.
        return SimCharge.objects.get(idempotency_key=idempotency_key)
    return charge


def sim_charge_get(*, reference: str = "", idempotency_key: str = "") -> SimCharge:
    qs = SimCharge.objects.select_related("card")
    charge = (
        qs.filter(reference=reference).first()
        if reference
        else qs.filter(idempotency_key=idempotency_key).first()
    )
    if charge is None:
        raise SimChargeNotFound(reference or idempotency_key)
    return charge


@transaction.atomic
def sim_charge_authenticate(*, reference: str, success: bool) -> SimCharge:
    """The cardholder completed or failed the 3-D Secure challenge. Only a waiting charge changes."""
    charge = SimCharge.objects.select_for_update().get(reference=reference)
    if charge.status != SimCharge.Status.REQUIRES_ACTION:
        return charge
    if success:
        charge.status, charge.decline_code = SimCharge.Status.SUCCEEDED, ""
    else:
        charge.status, charge.decline_code = SimCharge.Status.DECLINED, "authentication_failed"
    charge.save(update_fields=["status", "decline_code", "updated_at"])
    return charge


@transaction.atomic
def sim_charge_cancel(*, reference: str) -> SimCharge:
    charge = SimCharge.objects.select_for_update().get(reference=reference)
    if charge.status == SimCharge.Status.REQUIRES_ACTION:
        charge.status = SimCharge.Status.CANCELED
        charge.save(update_fields=["status", "updated_at"])
    return charge


class SimRefundRefused(Exception):
    """The bank will not give this back: the charge did not take money, or not that much."""


# Like Stripe: the merchant has about three weeks to answer a chargeback.
DISPUTE_EVIDENCE_PERIOD = dt.timedelta(days=21)


def sim_refund_create(
    *, charge_reference: str, amount_minor: int, currency: str, idempotency_key: str, reason: str = ""
) -> SimRefund:
    """Give back part or all of a succeeded charge, once per key; never more than it took."""
    existing = SimRefund.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        try:
            charge = SimCharge.objects.select_for_update().get(reference=charge_reference)
        except SimCharge.DoesNotExist:
            raise SimRefundRefused(f"no charge {charge_reference}") from None
        existing = SimRefund.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        if charge.status != SimCharge.Status.SUCCEEDED:
            raise SimRefundRefused(f"charge {charge_reference} is {charge.status}; nothing to refund")
        if currency.upper() != charge.currency.upper():
            raise SimRefundRefused(f"charge {charge_reference} is in {charge.currency}, not {currency}")
        refunded = (
            charge.refunds.filter(status=SimRefund.Status.SUCCEEDED).aggregate(s=Sum("amount_minor"))["s"]
            or 0
        )
        lost = (
            charge.disputes.filter(status=SimDispute.Status.LOST).aggregate(s=Sum("amount_minor"))["s"] or 0
        )
        if amount_minor <= 0 or amount_minor > charge.amount_minor - refunded - lost:
            raise SimRefundRefused(
                f"refund of {amount_minor} exceeds what is left on {charge_reference} "
                f"({charge.amount_minor - refunded - lost})"
            )
        return SimRefund.objects.create(
            reference=f"sim_re_{secrets.token_hex(12)}",
            idempotency_key=idempotency_key,
            charge=charge,
            amount_minor=amount_minor,
            currency=charge.currency,
            status=SimRefund.Status.SUCCEEDED,
            reason=reason[:300],
        )


def sim_dispute_open(*, charge_reference: str, reason: str, amount_minor: int | None = None) -> SimDispute:
    """The cardholder disputes a succeeded charge (all of it, or what is left after refunds)."""
    with transaction.atomic():
        charge = SimCharge.objects.select_for_update().get(reference=charge_reference)
        if charge.status != SimCharge.Status.SUCCEEDED:
            raise SimRefundRefused(f"charge {charge_reference} is {charge.status}; it cannot be disputed")
        refunded = (
            charge.refunds.filter(status=SimRefund.Status.SUCCEEDED).aggregate(s=Sum("amount_minor"))["s"]
            or 0
        )
        left = charge.amount_minor - refunded
        amount = left if amount_minor is None else amount_minor
        if amount <= 0 or amount > left:
            raise SimRefundRefused(
                f"a dispute of {amount} exceeds what is left on {charge_reference} ({left})"
            )
        return SimDispute.objects.create(
            reference=f"sim_dp_{secrets.token_hex(12)}",
            charge=charge,
            amount_minor=amount,
            currency=charge.currency,
            reason=reason[:60] or "general",
            status=SimDispute.Status.NEEDS_RESPONSE,
            evidence_due_by=timezone.now() + DISPUTE_EVIDENCE_PERIOD,
        )


@transaction.atomic
def sim_dispute_close(*, reference: str, won: bool) -> SimDispute:
    """The card network decides. A decided dispute stays decided."""
    dispute = SimDispute.objects.select_for_update().get(reference=reference)
    if dispute.status in (SimDispute.Status.WON, SimDispute.Status.LOST):
        return dispute
    dispute.status = SimDispute.Status.WON if won else SimDispute.Status.LOST
    dispute.save(update_fields=["status", "updated_at"])
    return dispute
