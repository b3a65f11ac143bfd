"""Home and the Billing profile tab: billing pages in the `accounts` URL namespace (`accounts:home`,
`accounts:billing_profile`), where they were before they moved here. billing_portal/urls.py puts these
patterns into that namespace beside accounts/urls.py."""

from django.urls import path

from . import views

urlpatterns = [
    path("a/<id:account_id>/", views.home, name="home"),
    path("a/<id:account_id>/billing/profile/", views.billing_profile, name="billing_profile"),
]
