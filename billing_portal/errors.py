"""Error pages people see: in the portal's shell and in their language, with DEBUG on or off.

`ErrorPageMiddleware` does three things no view should have to:
- refuses a NUL byte (or another control character) in the path with the branded 404, and in a query or form
  value with the branded 400, before any view or database sees it (PostgreSQL cannot store NUL in text);
- turns Http404 and PermissionDenied from views into the branded 404/403 page without logging a traceback;
- replaces Django's technical 404 page (DEBUG on, e.g. under `make run`), which lists every URL pattern,
  with the branded one. Django's handler404/403/400/500 (billing_portal/urls.py) point here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import loader
from django.utils import translation
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

# NUL and the other C0 controls except tab, newline and carriage return (which text areas send).
_FORBIDDEN_CHARS = frozenset(chr(c) for c in range(32) if chr(c) not in "\t\n\r") | {"\x7f"}
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _has_control_chars(value: str) -> bool:
    return any(c in _FORBIDDEN_CHARS for c in value)


def _querydict_bad(data) -> bool:
    return any(
        _has_control_chars(key) or any(_has_control_chars(v) for v in values) for key, values in data.lists()
    )


def _person_language(request: HttpRequest) -> None:
    """Pages of an account already speak its language (accounts.decorators). Elsewhere — a foreign id, a
    URL that matches nothing — speak the language of the person's own (first) billing account."""
    if getattr(request, "_account_language_set", False):
        return
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return
    from accounts.selectors import memberships_of_user

    try:
        first = memberships_of_user(user=user).first()
    except Exception:  # an error page must not fail because the database did
        return
    if first is not None:
        translation.activate(first.account.language)
        request.LANGUAGE_CODE = translation.get_language()


def error_page(request: HttpRequest, status: int, *, text: str = "") -> HttpResponse:
    _person_language(request)
    titles = {
        400: _("This request could not be read"),
        403: _("You don't have access to this"),
        404: _("This page isn't here"),
    }
    texts = {
        400: _(
            "Something in the address or the form contains characters we cannot accept. Nothing was changed."
        ),
        403: _(
            "Your role in this billing account doesn't allow this. A billing account owner or admin can do it, "
            "or can give you that role."
        ),
        404: _(
            "The address may be mistyped, or the page belongs to a billing account you are not a member of."
        ),
    }
    response = render(
        request,
        "errors/error.html",
        {"status": status, "error_title": titles[status], "error_text": text or texts[status]},
        status=status,
    )
    response.branded_error = True  # type: ignore[attr-defined]  # so the middleware below does not render it again
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(request, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(request, 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(request, 404)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error_page(
        request,
        403,
        text=_(
            "This form was open too long or came from another site. Go back, reload the page and try again."
        ),
    )


def server_error(request: HttpRequest) -> HttpResponse:
    # No database, no request context: whatever failed may fail again while rendering.
    template = loader.get_template("errors/500.html")
    response = HttpResponse(template.render({"LANGUAGE_CODE": translation.get_language()}), status=500)
    response.branded_error = True  # type: ignore[attr-defined]  # so the middleware below does not render it again
    return response


class ErrorPageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _has_control_chars(request.path_info):
            return error_page(request, 404)
        if _querydict_bad(request.GET):
            return error_page(request, 400)
        if request.method == "POST" and request.content_type in _FORM_TYPES:
            # Read the body first: POST is then parsed from the cached copy, and a view that needs the raw
            # body (a webhook's signature) can still read it.
            _ = request.body
            if _querydict_bad(request.POST):
                return error_page(request, 400)
        response = self.get_response(request)
        if (
            response.status_code == 404
            and not getattr(response, "branded_error", False)
            and response.get("Content-Type", "").startswith("text/html")
        ):
            # DEBUG's technical 404 (an unmatched URL) lists the URLconf: never show it.
            return error_page(request, 404)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Http404):
            return error_page(request, 404)
        if isinstance(exception, PermissionDenied):
            return error_page(request, 403)
        return None
