from django.contrib import admin
from django.urls import include, path

# Customer pages are scoped by billing account id in the URL: /a/<account_id>/...
# Every view resolves that id through accounts.selectors.membership_for_user(), which 404s for
# anyone who is not a member, so another tenant's ids never reveal anything.
urlpatterns = [
    path("django-admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("a/<int:account_id>/", include("subscriptions.urls")),
    path("a/<int:account_id>/", include("payments.urls")),
    path("a/<int:account_id>/", include("notifications.urls")),
    path("a/<int:account_id>/", include("dunning.urls")),
    path("a/<int:account_id>/", include("support_requests.urls")),
    path("gateway/simulated/", include("gateway_sim.urls")),
    # Gateways post here without a session; not under /a/<id>/.
    path("payments/webhooks/", include("payments.webhook_urls")),
    path("support/requests/", include("support_requests.staff_urls")),
    path("support/", include("support.urls")),
]
