from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("", views.root, name="root"),
    path("sign-in/", views.SignInView.as_view(), name="signin"),
    path("sign-out/", views.SignOutView.as_view(), name="signout"),
    path("a/<int:account_id>/", views.home, name="home"),
    path("a/<int:account_id>/billing/notifications/", views.notifications, name="notifications"),
    path(
        "a/<int:account_id>/billing/notifications/edit/", views.notifications_edit, name="notifications_edit"
    ),
    path(
        "a/<int:account_id>/billing/notifications/recipients/", views.recipients_edit, name="recipients_edit"
    ),
    path("a/<int:account_id>/billing/profile/", views.billing_profile, name="billing_profile"),
    path("a/<int:account_id>/billing/profile/edit/", views.billing_profile_edit, name="billing_profile_edit"),
]
