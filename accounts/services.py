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
