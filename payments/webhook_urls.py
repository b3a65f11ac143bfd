from django.urls import path

from . import views

app_name = "payments_webhooks"

urlpatterns = [
    # /payments/webhooks/<gateway name>/: the gateway's adapter verifies and reads the delivery.
    path("<slug:gateway_name>/", views.gateway_webhook, name="receive"),
]
