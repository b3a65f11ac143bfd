"""Default decline-code policy. Sources (see docs/RECOVERY.md and ../shared/RECOVERY-DATA.md):
- Visa categories and response codes: Checkout.com "Visa response-code categories"; Evolve; bill1st;
  forte.net. Category 1 codes (04, 07, 12, 14, 15, 41, 43, 46, 57, R0, R1, R3) are never retried.
- Retry days: Recurly research (1,300 sites, 2018): most recoveries come 2–12 days after the first
  decline, "temporary hold" up to 15 days, insufficient funds has the highest median recovery; Recurly
  blog (30 Apr 2026): about 90 % of recoveries within 10 days. Processing errors recover on day 1
  (RECOVERY-DATA.md per-code curve, an assumption fitted to those totals).
- Payday for insufficient funds: assumption (no public figure), RECOVERY-DATA.md.
A frozen copy: later edits of the table happen in the admin, not here.
"""

from django.db import migrations

CHECKOUT = "Checkout.com Visa response-code categories"
RECURLY = "Recurly research 2018 (2–12 days); Recurly blog 2026 (90 % within 10 days)"

# code: (category, visa category, visa code, retry, days, payday, customer action, message, source)
DEFAULTS = {
    "insufficient_funds": ("soft", 2, "51", True, [1, 4, 7, 10], True, "none", "funds", f"{CHECKOUT}; {RECURLY}"),
    "card_declined": ("soft", 4, "05", True, [1, 3, 6, 10], False, "none", "generic", f"{CHECKOUT}; {RECURLY}"),
    "generic_decline": ("soft", 4, "05", True, [1, 3, 6, 10], False, "none", "generic", f"{CHECKOUT}; {RECURLY}"),
    "do_not_honor": ("soft", 4, "05", True, [1, 3, 6, 10], False, "none", "generic", f"{CHECKOUT}; {RECURLY}"),
    "try_again_later": ("soft", 2, "91", True, [1, 2, 4], False, "none", "temporary", CHECKOUT),
    "processing_error": ("soft", 2, "96", True, [1, 2, 4], False, "none", "temporary", CHECKOUT),
    "issuer_not_available": ("soft", 2, "91", True, [1, 2, 4], False, "none", "temporary", CHECKOUT),
    "reenter_transaction": ("soft", 2, "19", True, [1, 2, 4], False, "none", "temporary", CHECKOUT),
    "approve_with_id": ("soft", 4, "", True, [1, 3, 6], False, "none", "contact_bank", CHECKOUT),
    "card_velocity_exceeded": ("soft", 2, "61", True, [2, 5, 9], False, "none", "funds", CHECKOUT),
    "withdrawal_count_limit_exceeded": ("soft", 2, "65", True, [2, 5, 9], False, "none", "funds", CHECKOUT),
    "stolen_card": ("hard", 1, "43", False, [], False, "new_card", "blocked", CHECKOUT),
    "lost_card": ("hard", 1, "41", False, [], False, "new_card", "blocked", CHECKOUT),
    "pickup_card": ("hard", 1, "04", False, [], False, "new_card", "blocked", CHECKOUT),
    "invalid_account": ("hard", 1, "14", False, [], False, "new_card", "card_number", CHECKOUT),
    "incorrect_number": ("hard", 1, "14", False, [], False, "update_card", "card_number", CHECKOUT),
    "invalid_number": ("hard", 1, "14", False, [], False, "update_card", "card_number", CHECKOUT),
    "transaction_not_allowed": ("hard", 1, "57", False, [], False, "contact_bank", "contact_bank", CHECKOUT),
    "do_not_try_again": ("hard", 1, "R0", False, [], False, "contact_bank", "contact_bank", CHECKOUT),
    "revocation_of_authorization": ("hard", 1, "R1", False, [], False, "contact_bank", "contact_bank", CHECKOUT),
    "restricted_card": ("hard", 2, "62", False, [], False, "contact_bank", "contact_bank", CHECKOUT),
    "fraudulent": ("hard", 2, "59", False, [], False, "new_card", "blocked", CHECKOUT),
    "expired_card": ("hard", 3, "54", False, [], False, "update_card", "expired", CHECKOUT),
    "incorrect_cvc": ("hard", 3, "N7", False, [], False, "update_card", "security_code", CHECKOUT),
    "invalid_cvc": ("hard", 3, "N7", False, [], False, "update_card", "security_code", CHECKOUT),
    "invalid_expiry_month": ("hard", 3, "", False, [], False, "update_card", "generic", CHECKOUT),
    "invalid_expiry_year": ("hard", 3, "", False, [], False, "update_card", "generic", CHECKOUT),
    "merchant_blacklist": ("hard", 4, "", False, [], False, "new_card", "blocked", CHECKOUT),
    "card_not_supported": ("hard", 4, "", False, [], False, "new_card", "generic", CHECKOUT),
    "currency_not_supported": ("hard", 4, "", False, [], False, "new_card", "generic", CHECKOUT),
    "authentication_failed": ("hard", 4, "", False, [], False, "authenticate", "authentication_failed", CHECKOUT),
    "authentication_required": (
        "authentication_required", 3, "1A", False, [], False, "authenticate", "authenticate",
        f"{CHECKOUT}; EBA Q&A 2018_4031",
    ),
}


def create_defaults(apps, schema_editor):
    DeclineCode = apps.get_model("dunning", "DeclineCode")
    for code, (category, visa, visa_code, retry, days, payday, action, message, source) in DEFAULTS.items():
        DeclineCode.objects.get_or_create(
            code=code,
            defaults={
                "category": category,
                "visa_category": visa,
                "visa_response_code": visa_code,
                "retry": retry,
                "retry_days": days,
                "waits_for_payday": payday,
                "customer_action": action,
                "customer_message": message,
                "source": source,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("dunning", "0003_recovery_engine")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
