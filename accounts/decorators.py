"""The one way into a customer page: signed in, a member of the account in the URL, in its language."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.utils import translation

from .models import Membership, User
from .selectors import membership_for_user

MemberView = Callable[..., HttpResponse]


def account_member_required(view: MemberView) -> Callable[..., HttpResponse]:
    """Resolve /a/<account_id>/… to the user's Membership and pass it to the view.

    Anonymous people go to sign-in; people outside the account get 404 (never 403, so ids reveal
    nothing). Pages of an account are shown in the account's preferred language, so that amounts and
    dates read the way its mails do (`€ 376,50` for a Dutch account).
    """

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, account_id: int, *args: Any, **kwargs: Any) -> HttpResponse:
        membership: Membership = membership_for_user(user=cast(User, request.user), account_id=account_id)
        language = membership.account.language
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
        request._account_language_set = True  # type: ignore[attr-defined]  # read by billing_portal.errors
        return view(request, membership, *args, **kwargs)

    return wrapper


def is_htmx(request: HttpRequest) -> bool:
    """True for a request htmx sent (django-htmx's middleware sets request.htmx)."""
    return bool(getattr(request, "htmx", False))
