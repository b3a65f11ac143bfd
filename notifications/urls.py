from django.urls import path

from . import views

app_name = "notifications"

urlpatterns = [
    path("billing/notifications/sent/", views.sent, name="sent"),
]
