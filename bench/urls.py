"""The portal's URLs plus the load test's two floors (bench/settings.py only).

- bare: the middleware stack and nothing else (no session read, no database);
- shell: what every customer page does before its own work: authenticate the session, load the
  membership (accounts.decorators.account_member_required) and render the empty admin-center shell.
A page's requests/s divided by the shell floor's says how much of its cost is the page's own.
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from accounts.decorators import account_member_required
from accounts.models import Membership
from billing_portal.urls import urlpatterns as portal_urlpatterns


def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


@account_member_required
def shell(request: HttpRequest, membership: Membership) -> HttpResponse:
    return render(
        request, "bench/shell_floor.html", {"membership": membership, "account": membership.account}
    )


urlpatterns = [
    path("__bench__/bare/", bare, name="bench_bare"),
    path("__bench__/a/<id:account_id>/shell/", shell, name="bench_shell"),
    *portal_urlpatterns,
]
