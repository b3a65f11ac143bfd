"""The one way into a customer page: signed in, a member of the account in the URL, in its language."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils import translation

from .models import Membership, User
from .selectors import membership_for_user

MemberView = Callable[..., HttpResponseBase]


def account_member_required(view: MemberView) -> Callable[..., HttpResponseBase]:
    """Resolve /a/<account_id>/… to the user's Membership and pass it to the view.

    Anonymous people go to sign-in; people outside the account get 404 (never 403, so ids reveal
    nothing). Pages of an account are shown in the account's preferred language, so that amounts and
    dates read the way its mails do (`€ 376,50` for a Dutch account).
    """

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, account_id: int, *args: Any, **kwargs: Any) -> HttpResponseBase:
        membership: Membership = membership_for_user(user=cast(User, request.user), account_id=account_id)
        language = membership.account.language
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
        request._account_language_set = True  # type: ignore[attr-defined]  # read by billing_portal.errors
        return view(request, membership, *args, **kwargs)

    return wrapper


def member_may(permission: str) -> Callable[[MemberView], Callable[..., HttpResponseBase]]:
    """`account_member_required`, then 403 unless `membership.<permission>` (a `Membership.can_*` property).

    Outsiders still get 404 first; only members learn that their role may not open the page.
    """
    if not isinstance(getattr(Membership, permission, None), property):
        raise AttributeError(f"Membership has no permission property {permission!r}")

    def decorator(view: MemberView) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def checked(
            request: HttpRequest, membership: Membership, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            if not getattr(membership, permission):
                raise PermissionDenied
            return view(request, membership, *args, **kwargs)

        return account_member_required(checked)

    return decorator


def is_htmx(request: HttpRequest) -> bool:
    """True for a request htmx sent (django-htmx's middleware sets request.htmx)."""
    return bool(getattr(request, "htmx", False))
