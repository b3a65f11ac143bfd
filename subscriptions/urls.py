from django.urls import path

from . import views

app_name = "subscriptions"

urlpatterns = [
    path("products/", views.products, name="products"),
    path("billing/invoices/", views.invoices, name="invoices"),
    path("billing/invoices/<key:number>/", views.invoice_detail, name="invoice_detail"),
]
