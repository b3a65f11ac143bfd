"""Writes on billing accounts. Each change is audited in the same transaction."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction

from audit.services import audit_record

from .models import BillingAccount, Membership, User


@transaction.atomic
def billing_account_update_notifications(
    *, account: BillingAccount, actor: User, email: str, language: str
) -> BillingAccount:
    """Change where billing mail goes and the language it is written in.

    Checks again what the view already checked, so no other caller can skip it: the actor must be an
    owner or admin of the account, the address must be valid, the language one we write mail in.
    """
    membership = Membership.objects.filter(account=account, user=actor).first()
    if membership is None or not membership.can_edit_notifications:
        raise PermissionDenied("only owners and admins may change billing notifications")
    email = email.strip()
    validate_email(email)
    if language not in BillingAccount.Language.values:
        raise ValidationError(f"unsupported language {language!r}")
    locked = BillingAccount.objects.select_for_update().get(pk=account.pk)
    before = {"email": locked.notification_email, "language": locked.language}
    after = {"email": email, "language": language}
    if before == after:
        return locked
    locked.notification_email = email
    locked.language = language
    locked.save(update_fields=["notification_email", "language"])
    audit_record(
        account=locked,
        actor=actor,
        action="account.notifications_changed",
        message=f"Billing notifications now go to {email} (language: {language})",
        target=locked,
        data={"before": before, "after": after},
    )
    return locked


# "Edit recipients": at most this many additional addresses receive billing mail.
MAX_ADDITIONAL_RECIPIENTS = 10


class SettingsInvalid(Exception):
    """Input for a settings pane that cannot be saved; `errors` maps field names to plain words."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _require_editor(*, account: BillingAccount, actor: User) -> None:
    membership = Membership.objects.filter(account=account, user=actor).first()
    if membership is None or not membership.can_edit_billing_profile:
        raise PermissionDenied("only owners and admins may change the billing profile")


def parse_recipients(raw: str) -> tuple[list[str], list[str]]:
    """Split what a person typed (commas, semicolons, spaces or lines) into addresses.

    Returns (addresses lower-cased, in order, without repeats; the entries that are not addresses).
    """
    import re

    seen: set[str] = set()
    good: list[str] = []
    bad: list[str] = []
    for part in re.split(r"[\s,;]+", raw or ""):
        if not part:
            continue
        address = part.strip().lower()
        try:
            validate_email(address)
        except ValidationError:
            bad.append(part)
            continue
        if address not in seen:
            seen.add(address)
            good.append(address)
    return good, bad


@transaction.atomic
def billing_account_update_recipients(*, account: BillingAccount, actor: User, raw: str) -> BillingAccount:
    """Edit recipients: the additional addresses billing mail goes to, besides the notification address.

    Validated (every entry an address, at most MAX_ADDITIONAL_RECIPIENTS), deduplicated (case-insensitive,
    and the notification address itself is not repeated), audited. Raises SettingsInvalid and changes
    nothing when any entry is wrong.
    """
    from django.utils.translation import gettext as _

    _require_editor(account=account, actor=actor)
    addresses, bad = parse_recipients(raw)
    locked = BillingAccount.objects.select_for_update().get(pk=account.pk)
    addresses = [a for a in addresses if a != locked.notification_email.lower()]
    if bad:
        raise SettingsInvalid(
            {"recipients": _("These are not e-mail addresses: %(list)s") % {"list": ", ".join(bad[:5])}}
        )
    if len(addresses) > MAX_ADDITIONAL_RECIPIENTS:
        raise SettingsInvalid(
            {"recipients": _("Enter at most %(n)d additional recipients.") % {"n": MAX_ADDITIONAL_RECIPIENTS}}
        )
    before = list(locked.additional_recipients or [])
    if before == addresses:
        return locked
    locked.additional_recipients = addresses
    locked.save(update_fields=["additional_recipients"])
    audit_record(
        account=locked,
        actor=actor,
        action="account.recipients_changed",
        message=f"Additional billing mail recipients: {', '.join(addresses) or 'none'}",
        target=locked,
        data={"before": before, "after": addresses},
    )
    return locked


@transaction.atomic
def billing_account_update_profile(
    *,
    account: BillingAccount,
    actor: User,
    address_line1: str,
    address_line2: str,
    postal_code: str,
    city: str,
    country: str,
    po_number: str,
    invoice_email_attachments: bool,
) -> BillingAccount:
    """Billing profile: the bill-to address, the PO number printed on invoices and whether invoice mails
    carry the PDF. Currency is not editable (it is the currency of every invoice of the account)."""
    from django.utils.translation import gettext as _

    from billing_portal.countries import is_country_code

    _require_editor(account=account, actor=actor)
    values: dict[str, object] = {
        "address_line1": address_line1.strip(),
        "address_line2": address_line2.strip(),
        "postal_code": postal_code.strip(),
        "city": city.strip(),
        "country": country.strip().upper(),
        "po_number": po_number.strip(),
        "invoice_email_attachments": bool(invoice_email_attachments),
    }
    errors: dict[str, str] = {}
    limits = {"address_line1": 200, "address_line2": 200, "postal_code": 20, "city": 100, "po_number": 40}
    for name, limit in limits.items():
        if len(str(values[name])) > limit:
            errors[name] = _("Use at most %(n)d characters.") % {"n": limit}
    for name, message in (
        ("address_line1", _("Enter the street and number.")),
        ("city", _("Enter the city.")),
        ("country", _("Choose a country from the list.")),
    ):
        if not values[name]:
            errors.setdefault(name, message)
    if values["country"] and not is_country_code(str(values["country"])):
        errors["country"] = _("Choose a country from the list.")
    if any(ord(c) < 32 for c in str(values["po_number"])):
        errors["po_number"] = _("Use letters, digits and punctuation only.")
    if errors:
        raise SettingsInvalid(errors)
    locked = BillingAccount.objects.select_for_update().get(pk=account.pk)
    changed = {k: [getattr(locked, k), v] for k, v in values.items() if getattr(locked, k) != v}
    if not changed:
        return locked
    for name, (_old, new) in changed.items():
        setattr(locked, name, new)
    locked.save(update_fields=list(changed))
    audit_record(
        account=locked,
        actor=actor,
        action="account.billing_profile_changed",
        message="Billing profile changed: " + ", ".join(changed),
        target=locked,
        data={"changed": changed},
    )
    return locked
