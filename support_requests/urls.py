"""Customer side: /a/<account_id>/support/requests/…"""

from django.urls import path

from . import views

app_name = "support_requests"

urlpatterns = [
    path("support/requests/", views.request_list, name="list"),
    path("support/requests/new/", views.request_new, name="new"),
    path("support/requests/<id:request_id>/", views.request_detail, name="detail"),
]
