"""The gateway contract: what every payment gateway adapter answers, whatever is behind it.

Adapters turn their SDK's or bank's answers into these frozen dataclasses at one seam, so the
payment engine only ever sees four outcomes: it succeeded, it was declined (hard or soft), the
customer must act (3-D Secure), or we do not know (time-out, gateway error). "Unknown" is never
treated as a decline: money may have moved, so the attempt is reconciled by looking it up.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
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
    # The gateway refused the request itself as malformed (HTTP 400 other than a card error, bad
    # parameters, unknown API version, …). Permanent: no money moved and retrying the same request
    # cannot help. The attempt fails at once with an operator-facing error; never reconciled.
    INVALID = "invalid"


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


def fallback_decline_category(code: str) -> DeclineCategory:
    """The built-in category of a code, for codes the operator's policy table has no row for."""
    return _DECLINE_CATEGORIES.get((code or "").strip().lower(), DeclineCategory.UNKNOWN)


# The operator's decline-code table (dunning.DeclineCode) plugs in here at start-up
# (dunning.apps.DunningConfig.ready), so this module needs no import of the dunning app.
_decline_classifier: Callable[[str], DeclineCategory] | None = None
_decline_messages: Callable[[str], str | None] | None = None


def register_decline_policy(
    *, classify: Callable[[str], DeclineCategory], message: Callable[[str], str | None]
) -> None:
    global _decline_classifier, _decline_messages
    _decline_classifier, _decline_messages = classify, message


def classify_decline(code: str) -> DeclineCategory:
    """Whether retrying a decline can help, from the decline-code policy table; codes without a row
    fall back to the built-in table above. Unknown codes are UNKNOWN (callers decide)."""
    if _decline_classifier is not None:
        return _decline_classifier(code)
    return fallback_decline_category(code)


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
# The decline_code an attempt gets when the gateway refused the request as invalid (ChargeOutcome.INVALID):
# our fault, not the card's. The customer sees INVALID_MESSAGE; operators see PaymentAttempt.operator_error.
INVALID_REQUEST_CODE = "invalid_request"
_DECLINE_MESSAGES[INVALID_REQUEST_CODE] = _(
    "The payment could not be processed, and nothing was charged. We have been told about the problem; "
    "try again later or contact support."
)
_GENERIC_DECLINE = _("Your bank declined the payment. Choose another card or contact your bank.")


def decline_message(code: str) -> str:
    """A plain-words, translated explanation of a decline code for the person paying (the policy
    table's message when the code has a row there)."""
    if _decline_messages is not None and code:
        text = _decline_messages(code)
        if text is not None:
            return text
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
    INVALID_REQUEST_CODE: _("could not be processed"),
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
    # The card network's own hints, passed through untouched where the gateway gives them
    # (Stripe: last_payment_error.network_advice_code / network_decline_code). Mastercard Merchant
    # Advice Codes ("03", "21", "24".."30") and Visa response codes; "" when absent.
    network_advice_code: str = ""
    network_decline_code: str = ""

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

    @classmethod
    def invalid(cls, message: str, *, reference: str = "") -> ChargeResult:
        return cls(outcome=ChargeOutcome.INVALID, reference=reference, message=message)

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
    # The gateway's identity of the card number (Stripe: card.fingerprint), so the same card added twice is one.
    fingerprint: str = ""
    # Field errors for the form ({"number": "..."}), plain words.
    errors: dict[str, str] | None = None
    # When ok is False and not a field problem: True means the gateway could not be reached.
    unavailable: bool = False


class CardCollection(enum.StrEnum):
    # Our own card form posts number/expiry/CVC to our server (the simulated bank only).
    SERVER_FORM = "server_form"
    # The browser hands the card to the gateway (Stripe Elements + SetupIntent); we get a token back.
    ELEMENTS = "elements"


@dataclass(frozen=True, slots=True)
class CardSetup:
    """What the browser needs to collect a card with the gateway's own script (ELEMENTS)."""

    reference: str  # SetupIntent id
    client_secret: str
    publishable_key: str


class RefundOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    # Accepted, money not back yet (Stripe: pending / requires_action); a webhook finishes it.
    PENDING = "pending"
    FAILED = "failed"
    # No answer: look it up / wait for the webhook; never send a second refund with a new key.
    UNKNOWN = "unknown"
    # Refused as malformed or impossible (more than was charged, charge not found): permanent.
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class RefundResult:
    outcome: RefundOutcome
    reference: str = ""  # the gateway's refund id (re_…, simulated reference)
    amount_minor: int | None = None
    currency: str = ""
    message: str = ""  # for operators and logs


class GatewayError(Exception):
    """An operation other than a charge or refund failed at the gateway.

    `permanent=True` means retrying cannot help (the request was refused as invalid); False means
    the gateway could not be reached or did not answer, and a retry may.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class UnsupportedOperation(GatewayError):
    """This gateway does not offer the operation (e.g. add_card with Stripe, card_setup_start offline)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


# --- Webhook events, in our own words. Only the adapter knows the gateway's event names. ---


class GatewayEventKind(enum.StrEnum):
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_REQUIRES_ACTION = "payment_requires_action"
    PAYMENT_CANCELED = "payment_canceled"
    REFUND_UPDATED = "refund_updated"  # created, succeeded, failed, canceled
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_UPDATED = "dispute_updated"
    DISPUTE_CLOSED = "dispute_closed"  # won or lost: see DisputeInfo.status
    CARD_UPDATED = "card_updated"  # network account updater: new expiry / number
    CARD_SETUP_SUCCEEDED = "card_setup_succeeded"  # SetupIntent finished, even if the browser never came back
    CUSTOMER_DELETED = "customer_deleted"
    # Stored and answered 200, nothing to do (every other event type the gateway may send).
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class RefundInfo:
    reference: str  # refund id
    charge_reference: str  # the PaymentIntent / simulated charge it refunds
    amount_minor: int
    currency: str
    status: RefundOutcome
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DisputeInfo:
    reference: str  # dispute id
    charge_reference: str  # the PaymentIntent / simulated charge disputed
    amount_minor: int
    currency: str
    reason: str  # the network's reason ("fraudulent", "product_not_received", …)
    # "needs_response", "under_review", "won", "lost", "warning_closed", …
    status: str
    evidence_due_by: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class CardInfo:
    token: str  # our PaymentMethod.gateway_token form
    brand: str = ""
    last4: str = ""
    exp_month: int = 0
    exp_year: int = 0
    fingerprint: str = ""
    customer: str = ""  # the gateway's customer id, when the card belongs to one


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    id: str  # the gateway's event id: stored once, replays are no-ops
    kind: GatewayEventKind
    raw_type: str  # the gateway's own name, for storage and support only
    created: dt.datetime
    charge: ChargeResult | None = None  # PAYMENT_*
    refund: RefundInfo | None = None  # REFUND_UPDATED
    dispute: DisputeInfo | None = None  # DISPUTE_*
    card: CardInfo | None = None  # CARD_UPDATED, CARD_SETUP_SUCCEEDED
    customer: str = ""  # CUSTOMER_DELETED
    # Our own account id when the gateway echoes our metadata, else None.
    account_id: int | None = None
    # The gateway object's own id (PaymentIntent for PAYMENT_*, SetupIntent for CARD_SETUP_SUCCEEDED,
    # payment method for CARD_UPDATED).
    reference: str = ""
    # PAYMENT_* and REFUND_UPDATED: the idempotency key we sent with the charge or refund, when the
    # gateway echoes it.
    idempotency_key: str = ""


class WebhookRejected(Exception):
    """A webhook delivery we refuse: bad signature, stale or future timestamp, not an event.

    `malformed=True` (signed correctly, but its content is not an event we can read) means store
    it as failed with this reason and answer 400; False means do not store it, answer 400.
    A malformed event carries what could be read of it (its id and type, the decoded body).
    """

    def __init__(
        self,
        message: str,
        *,
        malformed: bool = False,
        event_id: str = "",
        raw_type: str = "",
        payload: object = None,
    ) -> None:
        super().__init__(message)
        self.malformed = malformed
        self.event_id = event_id
        self.raw_type = raw_type
        self.payload = payload


class Gateway(Protocol):
    """Every operation and capability the engine uses. Adding a gateway means one module like
    simulated.py or stripe.py, registered in _ADAPTERS below; nothing else probes for features."""

    name: str
    # True when lookup()'s NOT_FOUND is final at once (the simulated bank reads its own table);
    # False when a search index may lag (Stripe): only an old enough miss releases the attempt.
    lookup_is_final: bool
    card_collection: CardCollection
    # ELEMENTS: the public key the browser script starts with (Stripe's publishable key); "" otherwise.
    public_key: str

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
        """Charge a stored card. The same idempotency key never charges twice. `language`: the billing
        account's language, for a page the cardholder may see at the bank (3-D Secure)."""
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

    def card_setup_start(self, *, customer: str, idempotency_key: str) -> CardSetup:
        """ELEMENTS only: start collecting a card in the browser. UnsupportedOperation otherwise."""
        ...

    def card_setup_finish(self, *, reference: str) -> CardResult:
        """ELEMENTS only: the card a finished setup produced (token, brand, last4, expiry)."""
        ...

    def customer_create(self, *, name: str, email: str, idempotency_key: str) -> str:
        """The gateway's customer for an account ("" when the gateway has no such notion)."""
        ...

    def detach(self, *, token: str) -> None:
        """Forget a card at the gateway; it can never be charged again. GatewayError on failure."""
        ...

    def refund(
        self,
        *,
        charge_reference: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        reason: str = "",
    ) -> RefundResult:
        """Give back part or all of a succeeded charge. The same idempotency key never refunds twice."""
        ...

    def parse_webhook(self, *, payload: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """Verify and translate one webhook delivery. WebhookRejected when it must be refused."""
        ...


_ADAPTERS = {
    "simulated": "payments.gateways.simulated.SimulatedGateway",
    "stripe": "payments.gateways.stripe.StripeGateway",
}
GATEWAYS = frozenset(_ADAPTERS)


def get_gateway(name: str | None = None) -> Gateway:
    """The adapter for `name`, or for settings.PAYMENT_GATEWAY."""
    key = name or settings.PAYMENT_GATEWAY
    try:
        path = _ADAPTERS[key]
    except KeyError:
        raise LookupError(f"unknown payment gateway {key!r}") from None
    return import_string(path)()


def luhn_valid(number: str) -> bool:
    """A card number of 12 to 19 ASCII digits whose Luhn check sums up. Unicode digits ("²", "٣") are not
    digits of a card number, and no card number is longer than 19 (ISO/IEC 7812)."""
    if not (12 <= len(number) <= 19 and number.isascii() and number.isdigit()):
        return False
    digits = [int(c) for c in number]
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
