from importlib import import_module

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, register_converter

from billing_portal.ids import IdConverter, KeyConverter

# Before the includes below: their patterns use <id:> and <key:> (ASCII only, bounded, never a NUL).
register_converter(IdConverter, "id")
register_converter(KeyConverter, "key")


def namespace(app_name: str, *modules: str) -> tuple[list[URLPattern | URLResolver], str]:
    """One URL namespace served from the patterns of several modules: a page that moves to another app keeps
    its name (`accounts:home` lives in billing/). Imported here, after the converters are registered."""
    return [p for module in modules for p in import_module(module).urlpatterns], app_name


# Customer pages are scoped by billing account id in the URL: /a/<account_id>/...
# Every view resolves that id through accounts.selectors.membership_for_user(), which 404s for
# anyone who is not a member, so another tenant's ids never reveal anything.
urlpatterns = [
    path("django-admin/", admin.site.urls),
    path("", include(namespace("accounts", "accounts.urls", "billing.account_urls"))),
    path("a/<id:account_id>/", include("billing.urls")),
    path("a/<id:account_id>/", include("payments.urls")),
    path("a/<id:account_id>/", include("notifications.urls")),
    path("a/<id:account_id>/", include("dunning.urls")),
    path("a/<id:account_id>/", include("support_requests.urls")),
    path("gateway/simulated/", include("gateway_sim.urls")),
    # Gateways post here without a session; not under /a/<id>/.
    path("payments/webhooks/", include("payments.webhook_urls")),
    path("support/requests/", include("support_requests.staff_urls")),
    path("support/", include("support.urls")),
]

# Branded error pages in the portal's shell (billing_portal/errors.py); ErrorPageMiddleware covers DEBUG too.
handler400 = "billing_portal.errors.bad_request"
handler403 = "billing_portal.errors.permission_denied"
handler404 = "billing_portal.errors.page_not_found"
handler500 = "billing_portal.errors.server_error"
