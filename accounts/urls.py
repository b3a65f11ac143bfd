from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("", views.root, name="root"),
    path("sign-in/", views.SignInView.as_view(), name="signin"),
    path("sign-out/", views.SignOutView.as_view(), name="signout"),
    path("a/<id:account_id>/", views.home, name="home"),
    path("a/<id:account_id>/billing/notifications/", views.notifications, name="notifications"),
    path(
        "a/<id:account_id>/billing/notifications/edit/", views.notifications_edit, name="notifications_edit"
    ),
]
