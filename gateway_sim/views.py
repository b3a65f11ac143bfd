"""The simulated bank's 3-D Secure challenge: a real page the cardholder completes or fails."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from . import services
from .models import SimCharge


def _page_language(charge: SimCharge) -> str:
    """The language the merchant sent with the charge (the billing account's), as an issuer's page uses the
    cardholder's language from the authentication request; the browser's only when none was sent."""
    if charge.language in dict(settings.LANGUAGES):
        return charge.language
    return translation.get_language()


@require_http_methods(["GET", "POST"])
def challenge(request: HttpRequest, reference: str) -> HttpResponse:
    charge = get_object_or_404(SimCharge.objects.select_related("card"), reference=reference)
    with translation.override(_page_language(charge)):
        return _challenge(request, charge, reference)


def _challenge(request: HttpRequest, charge: SimCharge, reference: str) -> HttpResponse:
    if request.method == "POST":
        decision = request.POST.get("decision")
        if decision in ("complete", "fail"):
            charge = services.sim_charge_authenticate(reference=reference, success=decision == "complete")
            target = charge.return_url
            # Only ever back to our own site: the return URL is a path we generated.
            if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
                return HttpResponseRedirect(target)
            return render(request, "gateway_sim/challenge_done.html", {"charge": charge})
    return render(
        request,
        "gateway_sim/challenge.html",
        {"charge": charge, "waiting": charge.status == SimCharge.Status.REQUIRES_ACTION},
    )
