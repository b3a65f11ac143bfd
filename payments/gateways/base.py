"""The gateway contract: what every payment gateway adapter answers, whatever is behind it.

Adapters turn their SDK's or bank's answers into these frozen dataclasses at one seam, so the
payment engine only ever sees four outcomes: it succeeded, it was declined (hard or soft), the
customer must act (3-D Secure), or we do not know (time-out, gateway error). "Unknown" is never
treated as a decline: money may have moved, so the attempt is reconciled by looking it up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _


class ChargeOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    REQUIRES_ACTION = "requires_action"
    UNKNOWN = "unknown"
    # Only from lookup(): the gateway has no charge under that key or reference.
    NOT_FOUND = "not_found"
    # Only from lookup()/cancel(): the charge was canceled before it took money.
    CANCELED = "canceled"


class DeclineCategory(enum.StrEnum):
    # Retrying later may succeed (funds, bank hiccups).
    SOFT = "soft"
    # Retrying the same card never helps: the customer must change or fix the card.
    HARD = "hard"
    # The bank wants the customer present (SCA); an automatic retry cannot help, a manual payment can.
    AUTHENTICATION_REQUIRED = "authentication_required"
    UNKNOWN = "unknown"


_DECLINE_CATEGORIES: dict[str, DeclineCategory] = {
    # soft
    "insufficient_funds": DeclineCategory.SOFT,
    "processing_error": DeclineCategory.SOFT,
    "card_declined": DeclineCategory.SOFT,
    "generic_decline": DeclineCategory.SOFT,
    "try_again_later": DeclineCategory.SOFT,
    "do_not_honor": DeclineCategory.SOFT,
    "issuer_not_available": DeclineCategory.SOFT,
    "reenter_transaction": DeclineCategory.SOFT,
    "approve_with_id": DeclineCategory.SOFT,
    "card_velocity_exceeded": DeclineCategory.SOFT,
    "withdrawal_count_limit_exceeded": DeclineCategory.SOFT,
    # hard
    "stolen_card": DeclineCategory.HARD,
    "lost_card": DeclineCategory.HARD,
    "pickup_card": DeclineCategory.HARD,
    "restricted_card": DeclineCategory.HARD,
    "expired_card": DeclineCategory.HARD,
    "incorrect_number": DeclineCategory.HARD,
    "invalid_number": DeclineCategory.HARD,
    "incorrect_cvc": DeclineCategory.HARD,
    "invalid_cvc": DeclineCategory.HARD,
    "invalid_expiry_month": DeclineCategory.HARD,
    "invalid_expiry_year": DeclineCategory.HARD,
    "invalid_account": DeclineCategory.HARD,
    "fraudulent": DeclineCategory.HARD,
    "merchant_blacklist": DeclineCategory.HARD,
    "card_not_supported": DeclineCategory.HARD,
    "currency_not_supported": DeclineCategory.HARD,
    "transaction_not_allowed": DeclineCategory.HARD,
    "do_not_try_again": DeclineCategory.HARD,
    "authentication_failed": DeclineCategory.HARD,
    # the bank wants the cardholder present
    "authentication_required": DeclineCategory.AUTHENTICATION_REQUIRED,
}


def classify_decline(code: str) -> DeclineCategory:
    """Whether retrying a decline can help. Unknown codes are treated as UNKNOWN (callers decide)."""
    return _DECLINE_CATEGORIES.get((code or "").strip().lower(), DeclineCategory.UNKNOWN)


_DECLINE_MESSAGES = {
    "insufficient_funds": _(
        "Your bank declined the payment because there are not enough funds on the card. "
        "Try again later or choose another card."
    ),
    "expired_card": _(
        "Your bank declined the payment because the card has expired. "
        "Update the expiry date or choose another card."
    ),
    "processing_error": _(
        "Your bank could not process the payment just now. Try again in a moment or choose another card."
    ),
    "try_again_later": _(
        "Your bank could not process the payment just now. Try again in a moment or choose another card."
    ),
    "stolen_card": _("Your bank declined this card. Choose another card or add a new one."),
    "lost_card": _("Your bank declined this card. Choose another card or add a new one."),
    "pickup_card": _("Your bank declined this card. Choose another card or add a new one."),
    "fraudulent": _("Your bank declined this card. Choose another card or add a new one."),
    "incorrect_number": _("The card number is not correct. Check it or choose another card."),
    "invalid_number": _("The card number is not correct. Check it or choose another card."),
    "incorrect_cvc": _("The security code is not correct. Check it or choose another card."),
    "invalid_cvc": _("The security code is not correct. Check it or choose another card."),
    "authentication_required": _(
        "Your bank asks you to confirm this payment yourself. Pay the balance here and complete "
        "the check your bank shows."
    ),
    "authentication_failed": _(
        "The extra check by your bank was not completed, so nothing was paid. Try again or choose another card."
    ),
}
_GENERIC_DECLINE = _("Your bank declined the payment. Choose another card or contact your bank.")


def decline_message(code: str) -> str:
    """A plain-words, translated explanation of a decline code for the person paying."""
    return str(_DECLINE_MESSAGES.get((code or "").strip().lower(), _GENERIC_DECLINE))


# A few words for lists and warnings ("Your Visa ending 0341 was declined (card declined)");
# decline_message() above gives the whole sentence for the pane and mails.
_DECLINE_REASONS = {
    "card_declined": _("card declined"),
    "generic_decline": _("card declined"),
    "do_not_honor": _("card declined"),
    "insufficient_funds": _("insufficient funds"),
    "expired_card": _("card expired"),
    "incorrect_cvc": _("incorrect security code"),
    "incorrect_number": _("incorrect card number"),
    "processing_error": _("processing error"),
    "try_again_later": _("temporary problem at the bank"),
    "stolen_card": _("card declined"),
    "lost_card": _("card declined"),
    "pickup_card": _("card declined"),
    "fraudulent": _("card declined"),
    "authentication_required": _("your bank asks you to confirm the payment"),
}


def decline_reason(code: str) -> str:
    if not code:
        return ""
    return str(_DECLINE_REASONS.get(code, _("card declined")))


@dataclass(frozen=True, slots=True)
class ChargeResult:
    outcome: ChargeOutcome
    # The gateway's id for the charge (PaymentIntent id, simulated charge reference).
    reference: str = ""
    decline_code: str = ""
    decline_category: DeclineCategory | None = None
    # Where the customer completes 3-D Secure, when outcome is REQUIRES_ACTION.
    action_url: str = ""
    # For logs and support, not for customers (use decline_message() for them).
    message: str = ""
    amount_minor: int | None = None
    currency: str = ""

    @classmethod
    def declined(cls, code: str, *, reference: str = "", message: str = "", **extra) -> ChargeResult:
        return cls(
            outcome=ChargeOutcome.DECLINED,
            reference=reference,
            decline_code=code or "generic_decline",
            decline_category=classify_decline(code),
            message=message,
            **extra,
        )

    @classmethod
    def unknown(cls, message: str, *, reference: str = "") -> ChargeResult:
        return cls(outcome=ChargeOutcome.UNKNOWN, reference=reference, message=message)

    @property
    def succeeded(self) -> bool:
        return self.outcome == ChargeOutcome.SUCCEEDED


@dataclass(frozen=True, slots=True)
class CardResult:
    """The answer to adding a card or changing its expiry."""

    ok: bool
    token: str = ""
    brand: str = ""
    last4: str = ""
    exp_month: int = 0
    exp_year: int = 0
    # Field errors for the form ({"number": "..."}), plain words.
    errors: dict[str, str] | None = None
    # When ok is False and not a field problem: True means the gateway could not be reached.
    unavailable: bool = False


class Gateway(Protocol):
    name: str

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
    ) -> ChargeResult:
        """Charge a stored card. The same idempotency key never charges twice."""
        ...

    def confirm(self, *, reference: str) -> ChargeResult:
        """The charge's state after the customer authenticated (3-D Secure)."""
        ...

    def lookup(self, *, idempotency_key: str, reference: str = "") -> ChargeResult:
        """What really happened to a charge (reconciliation). NOT_FOUND when it never arrived."""
        ...

    def cancel(self, *, reference: str) -> ChargeResult:
        """Cancel a charge still awaiting action. Answers SUCCEEDED if it already took money."""
        ...

    def add_card(
        self, *, number: str, exp_month: int, exp_year: int, cvc: str, holder_name: str
    ) -> CardResult:
        """Register a card from our own form (simulated gateway only; Stripe uses SetupIntents)."""
        ...

    def update_expiry(self, *, token: str, exp_month: int, exp_year: int) -> CardResult: ...


_ADAPTERS = {
    "simulated": "payments.gateways.simulated.SimulatedGateway",
    "stripe": "payments.gateways.stripe.StripeGateway",
}


def get_gateway(name: str | None = None) -> Gateway:
    """The adapter for `name`, or for settings.PAYMENT_GATEWAY."""
    key = name or settings.PAYMENT_GATEWAY
    try:
        path = _ADAPTERS[key]
    except KeyError:
        raise LookupError(f"unknown payment gateway {key!r}") from None
    return import_string(path)()


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 12 or len(digits) != len(number):
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or (
        number[:4].isdigit() and 2221 <= int(number[:4]) <= 2720
    ):
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "other"
