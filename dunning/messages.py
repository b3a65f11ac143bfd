"""Plain, translated words for the recovery engine: what a decline means for the customer, why the
next retry is when it is, and why the retry budget refused a charge. Never a raw code for customers."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

# DeclineCode.customer_message → the sentence shown in panes, mails and the timeline. Most reuse the
# gateway module's sentences word for word, so they share their translations.
CUSTOMER_MESSAGES: dict[str, Promise] = {
    "funds": _(
        "Your bank declined the payment because there are not enough funds on the card. "
        "Try again later or choose another card."
    ),
    "expired": _(
        "Your bank declined the payment because the card has expired. "
        "Update the expiry date or choose another card."
    ),
    "temporary": _(
        "Your bank could not process the payment just now. Try again in a moment or choose another card."
    ),
    "blocked": _("Your bank declined this card. Choose another card or add a new one."),
    "card_number": _("The card number is not correct. Check it or choose another card."),
    "security_code": _("The security code is not correct. Check it or choose another card."),
    "authenticate": _(
        "Your bank asks you to confirm this payment yourself. Pay the balance here and complete "
        "the check your bank shows."
    ),
    "authentication_failed": _(
        "The extra check by your bank was not completed, so nothing was paid. Try again or choose another card."
    ),
    "contact_bank": _("Your bank declined the payment. Contact your bank, or choose another card."),
    "generic": _("Your bank declined the payment. Choose another card or contact your bank."),
}

# RetryPlan.why → why the next retry is at that time (or why there is none).
PLAN_REASONS: dict[str, Promise] = {
    "schedule": _("the retry schedule for this kind of decline"),
    "code_schedule": _("the retry schedule for this kind of decline"),
    "payday": _("just after the usual payday, when funds are more likely to be there"),
    "schedule_used": _("all automatic retries have been used"),
    "no_retry_none": _("this kind of decline is not retried automatically"),
    "no_retry_new_card": _("the bank will not accept this card again: add a new card"),
    "no_retry_update_card": _("the card details must be updated first"),
    "no_retry_authenticate": _("your bank wants you to confirm the payment yourself"),
    "no_retry_contact_bank": _("the bank declined it for a reason only the bank can clear"),
    "budget_never_retry": _("the card network does not allow this card to be charged again"),
    "budget_mac_wait": _("the card network asked us to wait before trying again"),
    "budget_visa_limit": _("the card network's limit of retries in 30 days was reached"),
    "budget_mc_day_limit": _("the card network's limit of declines in one day was reached"),
    "budget_mc_amount_limit": _("the card network's limit of declines for this amount was reached"),
}

# dunning.recovery.Refusal → for support and the timeline.
REFUSAL_TEXT: dict[str, Promise] = {
    "never_retry": _("Card may not be retried (Visa Category 1 or Mastercard advice 03/21)"),
    "mac_wait": _("Mastercard asked to wait before retrying"),
    "visa_limit": _("Visa limit: 20 retries of this card in 30 days"),
    "mc_day_limit": _("Mastercard limit: 10 declines of this card in 24 hours"),
    "mc_amount_limit": _("Mastercard limit: 35 declines of this card and amount in 30 days"),
}

POLICY_NAMES: dict[str, Promise] = {
    "fixed": _("Fixed days per kind of decline"),
    "kill_bill": _("Fixed: days 8, 16 and 24"),
    "stripe_8_in_14": _("Fixed: 8 tries in 14 days"),
    "per_code": _("Per decline code"),
    "smart": _("Per decline code, with timing"),
    "support": _("Support"),
}


def customer_message(key: str) -> str:
    return str(CUSTOMER_MESSAGES.get(key, CUSTOMER_MESSAGES["generic"]))


def plan_reason(key: str) -> str:
    return str(PLAN_REASONS.get(key, "")) if key else ""


def refusal_text(key: str) -> str:
    return str(REFUSAL_TEXT.get(key, key))
