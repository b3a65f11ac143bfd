"""The simulated bank: card behaviour after Stripe's documented test cards (PRODUCT.md)."""

from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import SimCard, SimCharge

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


def _expired(card: SimCard) -> bool:
    today = timezone.localdate()
    return (card.exp_year, card.exp_month) < (today.year, today.month)


def sim_charge_create(
    *,
    token: str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    off_session: bool,
    return_url: str = "",
    description: str = "",
) -> SimCharge:
    """Charge a card once per idempotency key; a repeated key returns the first charge untouched."""
    existing = SimCharge.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    card = SimCard.objects.get(token=token)
    status, code = SimCharge.Status.SUCCEEDED, ""
    if _expired(card):
        status, code = SimCharge.Status.DECLINED, "expired_card"
    elif card.number in DECLINING_CARDS:
        status, code = SimCharge.Status.DECLINED, DECLINING_CARDS[card.number]
    elif card.number in THREE_D_SECURE_CARDS:
        if off_session:
            # The bank wants the cardholder present; a job cannot authenticate.
            status, code = SimCharge.Status.DECLINED, "authentication_required"
        else:
            status = SimCharge.Status.REQUIRES_ACTION
    try:
        with transaction.atomic():
            return SimCharge.objects.create(
                reference=f"sim_ch_{secrets.token_hex(12)}",
                idempotency_key=idempotency_key,
                card=card,
                amount_minor=amount_minor,
                currency=currency,
                status=status,
                decline_code=code,
                off_session=off_session,
                return_url=return_url,
                description=description[:300],
            )
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its charge.
        return SimCharge.objects.get(idempotency_key=idempotency_key)


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
