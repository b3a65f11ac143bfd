"""Operator side, inside the support console: /support/requests/…"""

from django.urls import path

from . import views

app_name = "support_queue"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("<int:request_id>/", views.staff_detail, name="detail"),
]
