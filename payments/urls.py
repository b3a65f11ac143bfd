from django.urls import path

from . import views

app_name = "payments"

urlpatterns = [
    path("billing/payment-methods/", views.methods, name="methods"),
]
