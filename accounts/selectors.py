from __future__ import annotations

from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import Http404

from .models import Invitation, Membership, Role, User


def membership_for_user(*, user: User, account_id: int) -> Membership:
    """The signed-in user's membership of an account, or 404.

    404, never 403: someone outside the account must not learn that the id exists.
    """
    if not user.is_authenticated:
        raise Http404
    try:
        return Membership.objects.select_related("account", "user").get(user=user, account_id=account_id)
    except Membership.DoesNotExist:
        raise Http404 from None


def memberships_of_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("account").order_by("account__name")


def account_members(*, account_id: int) -> QuerySet[Membership]:
    """The members of an account with their users, the owner first (one query)."""
    owner_first = Case(When(role=Role.OWNER, then=Value(0)), default=Value(1), output_field=IntegerField())
    return (
        Membership.objects.filter(account_id=account_id)
        .select_related("user")
        .order_by(owner_first, "user__email")
    )


def invitations_pending(*, account_id: int) -> QuerySet[Invitation]:
    return Invitation.objects.filter(account_id=account_id, status=Invitation.Status.PENDING).order_by(
        "email"
    )
