from django.urls import path

from . import views

app_name = "payments_webhooks"

urlpatterns = [
    path("stripe/", views.stripe_webhook, name="stripe"),
]
