from django.urls import path

from . import views

# billing_portal/urls.py serves these in the `accounts` namespace together with billing/account_urls.py
# (Home and the Billing profile tab, which moved to the billing pages and kept their names).
app_name = "accounts"

urlpatterns = [
    path("", views.root, name="root"),
    path("sign-in/", views.SignInView.as_view(), name="signin"),
    path("sign-out/", views.SignOutView.as_view(), name="signout"),
    path("a/<id:account_id>/billing/notifications/", views.notifications, name="notifications"),
    path(
        "a/<id:account_id>/billing/notifications/edit/", views.notifications_edit, name="notifications_edit"
    ),
    path("a/<id:account_id>/billing/accounts/", views.billing_accounts, name="billing_accounts"),
    path("a/<id:account_id>/billing/accounts/roles/", views.roles, name="roles"),
    path("a/<id:account_id>/billing/accounts/roles/invite/", views.invite, name="invite"),
    path("a/<id:account_id>/billing/accounts/roles/<id:member_id>/", views.role_change, name="role_change"),
    path(
        "a/<id:account_id>/billing/accounts/roles/<id:member_id>/remove/",
        views.member_remove,
        name="member_remove",
    ),
    path(
        "a/<id:account_id>/billing/accounts/invitations/<id:invitation_id>/withdraw/",
        views.invitation_withdraw,
        name="invitation_withdraw",
    ),
    # Not under /a/<id>/: the invited person is not a member yet. The token is signed and expires.
    path("invitations/<str:token>/", views.invitation_open, name="invitation"),
    path(
        "a/<id:account_id>/billing/notifications/recipients/", views.recipients_edit, name="recipients_edit"
    ),
    path("a/<id:account_id>/billing/profile/edit/", views.billing_profile_edit, name="billing_profile_edit"),
]
