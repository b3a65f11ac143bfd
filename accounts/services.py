"""Writes on billing accounts. Each change is audited in the same transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth import password_validation
from django.core import signing
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from audit.services import audit_record

from .models import BillingAccount, Invitation, Membership, Role, User


class MailSender(Protocol):
    def __call__(
        self, *, account: BillingAccount, kind: str, dedupe_key: str, context: dict[str, Any], recipient: str
    ) -> object: ...


# Mail is the notifications app's: a Notice belongs to a BillingAccount, so notifications sits above
# accounts and accounts may not import it. NotificationsConfig.ready() hands `notice_send` (queued on
# commit, once per dedupe key) to `mail_sender_register`.
_mail_sender: list[MailSender] = []


def mail_sender_register(sender: MailSender) -> None:
    _mail_sender[:] = [sender]


def notice_send(
    *, account: BillingAccount, kind: str, dedupe_key: str, context: dict[str, Any], recipient: str
) -> None:
    """Mail one person about this account, in the account's language, through the registered sender."""
    if not _mail_sender:
        raise ImproperlyConfigured("No mail sender: the 'notifications' app is not installed.")
    _mail_sender[0](account=account, kind=kind, dedupe_key=dedupe_key, context=context, recipient=recipient)


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


# -- Roles and invitations --------------------------------------------------------------------------
#
# Every write below locks the billing account row first (the lock every payment path takes too), then
# re-reads the memberships it changes, so two owners' tabs, a double click or a concurrent hand-over
# cannot leave an account with no owner or two. The partial unique index
# `membership_one_owner_per_account` stays the last line of defence.

INVITATION_SALT = "accounts.invitation"


class RoleChangeError(Exception):
    """A role change that cannot be made; the message is for the person who tried."""


class InvitationError(Exception):
    """An invitation that cannot be created or accepted; the message is for the person."""


def _lock_account(account_id: int) -> BillingAccount:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("_lock_account() must run inside transaction.atomic()")
    return BillingAccount.objects.select_for_update().get(pk=account_id)


def _require_owner(*, account_id: int, actor: User) -> Membership:
    """The actor's membership if it is the account's owner; PermissionDenied otherwise (read under the lock)."""
    membership = Membership.objects.filter(account_id=account_id, user_id=actor.pk).first()
    if membership is None or not membership.can_manage_roles:
        raise PermissionDenied("only the billing account owner may change roles")
    return membership


def _locked_membership(*, account_id: int, membership_id: int) -> Membership:
    """The member a role change or removal acts on, locked (after the account) for the transaction.
    Membership.DoesNotExist for another account's member or an unknown id (the views make that a 404)."""
    target = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(account_id=account_id, pk=membership_id)
        .first()
    )
    if target is None:
        raise Membership.DoesNotExist
    return target


def _mail_owners(*, account: BillingAccount, event_id: int, summary: str, owners: list[User]) -> None:
    """Tell the owner (and, after a hand-over, the previous owner) what changed. One notice per audit event."""
    for owner in owners:
        notice_send(
            account=account,
            kind="roles_changed",
            dedupe_key=f"roles_changed:{event_id}:{owner.pk}",
            recipient=owner.email,
            context={"summary": summary, "roles_url": _roles_url(account.pk)},
        )


def _roles_url(account_id: int) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("accounts:roles", kwargs={"account_id": account_id})


def _role_label(role: str) -> str:
    # Audit messages and owner mails are written for people; the audit data keeps the codes.
    with translation.override("en"):
        return str(Role(role).label)


@transaction.atomic
def membership_role_change(*, account_id: int, actor: User, membership_id: int, role: str) -> Membership:
    """Give a member another role. Giving someone the owner role hands ownership over: the current
    owner becomes a billing admin in the same transaction, so there is always exactly one owner."""
    if role not in Role.values:
        raise RoleChangeError(_("Choose one of the roles in the list."))
    account = _lock_account(account_id)
    owner = _require_owner(account_id=account_id, actor=actor)
    target = _locked_membership(account_id=account_id, membership_id=membership_id)
    if target.role == role:
        return target
    if target.pk == owner.pk:
        raise RoleChangeError(
            _(
                "You are the billing account owner. Make another member the owner first; you become a billing admin."
            )
        )
    before = target.role
    if role == Role.OWNER:
        # Demote first: the partial unique index allows one owner row at any moment of the statement order.
        owner.role = Role.ADMIN
        owner.save(update_fields=["role"])
        target.role = Role.OWNER
        target.save(update_fields=["role"])
        summary = (
            f"{target.user.email} is now the billing account owner; {actor.email} is now a billing admin."
        )
        event = audit_record(
            account=account,
            actor=actor,
            action="account.ownership_transferred",
            message=summary,
            target=target,
            data={"from_user": actor.pk, "to_user": target.user_id, "previous_role": before},
        )
        _mail_owners(account=account, event_id=event.pk, summary=summary, owners=[target.user, actor])
        return target
    target.role = role
    target.save(update_fields=["role"])
    summary = f"{target.user.email}: {_role_label(before)} → {_role_label(role)} (by {actor.email})."
    event = audit_record(
        account=account,
        actor=actor,
        action="account.role_changed",
        message=summary,
        target=target,
        data={"user": target.user_id, "before": before, "after": role},
    )
    _mail_owners(account=account, event_id=event.pk, summary=summary, owners=[actor])
    return target


@transaction.atomic
def membership_remove(*, account_id: int, actor: User, membership_id: int) -> None:
    """Take a member out of the account. The owner cannot be removed (hand ownership over first)."""
    account = _lock_account(account_id)
    _require_owner(account_id=account_id, actor=actor)
    target = _locked_membership(account_id=account_id, membership_id=membership_id)
    if target.role == Role.OWNER:
        raise RoleChangeError(
            _("The billing account owner cannot be removed. Make another member the owner first.")
        )
    summary = f"{target.user.email} ({_role_label(target.role)}) was removed by {actor.email}."
    data = {"user": target.user_id, "email": target.user.email, "role": target.role}
    target.delete()
    event = audit_record(
        account=account,
        actor=actor,
        action="account.member_removed",
        message=summary,
        target=account,
        data=data,
    )
    _mail_owners(account=account, event_id=event.pk, summary=summary, owners=[actor])


def invitation_token(*, invitation: Invitation) -> str:
    """The signed value in an invitation link: names the invitation and the address it was sent to."""
    return signing.dumps({"i": invitation.pk, "e": invitation.email}, salt=INVITATION_SALT, compress=True)


def invitation_url(*, invitation: Invitation) -> str:
    token = invitation_token(invitation=invitation)
    return settings.SITE_URL.rstrip("/") + reverse("accounts:invitation", kwargs={"token": token})


def invitation_from_token(*, token: str) -> Invitation:
    """The pending invitation a link names. InvitationError for a link that was altered, has expired,
    was used already or was withdrawn (each with its own message)."""
    max_age = dt.timedelta(days=settings.INVITATION_MAX_AGE_DAYS)
    try:
        payload = signing.loads(token, salt=INVITATION_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise InvitationError(
            _("This invitation has expired. Ask the billing account owner to invite you again.")
        ) from None
    except signing.BadSignature:
        raise InvitationError(
            _("This invitation link is not valid. Check that you copied all of it.")
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("i"), int):
        raise InvitationError(_("This invitation link is not valid. Check that you copied all of it."))
    invitation = (
        Invitation.objects.select_related("account", "invited_by")
        .filter(pk=payload["i"], email=payload.get("e"))
        .first()
    )
    if invitation is None or invitation.status == Invitation.Status.REVOKED:
        raise InvitationError(
            _("This invitation was withdrawn. Ask the billing account owner to invite you again.")
        )
    if invitation.status == Invitation.Status.ACCEPTED:
        raise InvitationError(
            _("This invitation has been used already. Sign in to open the billing account.")
        )
    return invitation


@transaction.atomic
def invitation_create(*, account_id: int, actor: User, email: str, role: str) -> Invitation:
    """Invite a person by e-mail. A second invite of the same address while one is pending returns that
    one (a double submit makes one invitation and one mail); members cannot be invited again."""
    email = email.strip().lower()
    validate_email(email)
    if role not in (Role.ADMIN, Role.READER, Role.INVOICE_MANAGER):
        raise InvitationError(_("Choose billing admin, billing reader or invoice manager."))
    account = _lock_account(account_id)
    _require_owner(account_id=account_id, actor=actor)
    if Membership.objects.filter(account_id=account_id, user__email=email).exists():
        raise InvitationError(_("%(email)s is already a member of this billing account.") % {"email": email})
    pending = Invitation.objects.filter(
        account_id=account_id, email=email, status=Invitation.Status.PENDING
    ).first()
    if pending is not None:
        if pending.created_at > timezone.now() - dt.timedelta(days=settings.INVITATION_MAX_AGE_DAYS):
            return pending
        # Its link has expired: the person was told to ask for a new invitation, so this is one.
        pending.status = Invitation.Status.REVOKED
        pending.save(update_fields=["status"])
        audit_record(
            account=account,
            actor=actor,
            action="account.invitation_revoked",
            message=f"The expired invitation of {email} was replaced by a new one by {actor.email}.",
            target=pending,
            data={"email": email, "role": pending.role, "expired": True},
        )
    invitation = Invitation.objects.create(account=account, email=email, role=role, invited_by=actor)
    summary = f"{email} was invited as {_role_label(role)} by {actor.email}."
    event = audit_record(
        account=account,
        actor=actor,
        action="account.member_invited",
        message=summary,
        target=invitation,
        data={"email": email, "role": role},
    )
    _mail_owners(account=account, event_id=event.pk, summary=summary, owners=[actor])
    notice_send(
        account=account,
        kind="invitation",
        dedupe_key=f"invitation:{invitation.pk}",
        recipient=email,
        context={
            "inviter": actor.display_name,
            "role": role,
            "invitation_url": invitation_url(invitation=invitation),
            "days": settings.INVITATION_MAX_AGE_DAYS,
        },
    )
    return invitation


@transaction.atomic
def invitation_revoke(*, account_id: int, actor: User, invitation_id: int) -> Invitation:
    account = _lock_account(account_id)
    _require_owner(account_id=account_id, actor=actor)
    invitation = (
        Invitation.objects.select_for_update().filter(account_id=account_id, pk=invitation_id).first()
    )
    if invitation is None:
        raise Invitation.DoesNotExist
    if invitation.status != Invitation.Status.PENDING:
        return invitation
    invitation.status = Invitation.Status.REVOKED
    invitation.save(update_fields=["status"])
    summary = f"The invitation of {invitation.email} was withdrawn by {actor.email}."
    event = audit_record(
        account=account,
        actor=actor,
        action="account.invitation_revoked",
        message=summary,
        target=invitation,
        data={"email": invitation.email, "role": invitation.role},
    )
    _mail_owners(account=account, event_id=event.pk, summary=summary, owners=[actor])
    return invitation


@transaction.atomic
def invitation_accept(
    *, invitation_id: int, user: User | None, full_name: str = "", password: str = ""
) -> Membership:
    """Join the account. `user` is the signed-in person whose address the invitation was sent to; without
    one, a new user is created with `password` (validated by AUTH_PASSWORD_VALIDATORS). Twice is refused."""
    invitation = Invitation.objects.filter(pk=invitation_id).first()
    if invitation is None:
        raise InvitationError(
            _("This invitation was withdrawn. Ask the billing account owner to invite you again.")
        )
    account = _lock_account(invitation.account_id)
    invitation = Invitation.objects.select_for_update().get(pk=invitation_id)
    if invitation.status != Invitation.Status.PENDING:
        raise InvitationError(
            _("This invitation has been used already. Sign in to open the billing account.")
        )
    if user is None:
        if User.objects.filter(email=invitation.email).exists():
            raise InvitationError(
                _("You already have a user for this address. Sign in to accept the invitation.")
            )
        user = User(email=invitation.email, full_name=full_name.strip()[:150])
        password_validation.validate_password(password, user)
        user.set_password(password)
        user.save()
    elif user.email.lower() != invitation.email:
        raise InvitationError(
            _("This invitation was sent to %(email)s. Sign in with that address to accept it.")
            % {"email": invitation.email}
        )
    membership, created = Membership.objects.get_or_create(
        account=account, user=user, defaults={"role": invitation.role}
    )
    invitation.status = Invitation.Status.ACCEPTED
    invitation.accepted_by = user
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["status", "accepted_by", "accepted_at"])
    summary = f"{user.email} accepted the invitation and joined as {_role_label(membership.role)}."
    event = audit_record(
        account=account,
        actor=user,
        action="account.invitation_accepted",
        message=summary,
        target=membership,
        data={"invitation": invitation.pk, "role": membership.role, "new_member": created},
    )
    owner = Membership.objects.select_related("user").filter(account=account, role=Role.OWNER).first()
    if owner is not None:
        _mail_owners(account=account, event_id=event.pk, summary=summary, owners=[owner.user])
    return membership


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
    region: str = "",
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
        "region": region.strip(),
        "country": country.strip().upper(),
        "po_number": po_number.strip(),
        "invoice_email_attachments": bool(invoice_email_attachments),
    }
    errors: dict[str, str] = {}
    limits = {
        "address_line1": 200,
        "address_line2": 200,
        "postal_code": 20,
        "city": 100,
        "region": 100,
        "po_number": 40,
    }
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
    for name in ("address_line1", "address_line2", "postal_code", "city", "region"):
        if any(ord(c) < 32 for c in str(values[name])):
            errors.setdefault(name, _("Use letters, digits and punctuation only."))
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
