"""Your products, subscription details and the Invoices pages, under /a/<id>/ (billing_portal/urls.py)."""

from django.urls import path

from . import views

# The pages kept the names they had in the subscriptions app, so links, templates and tests are unchanged.
app_name = "subscriptions"

urlpatterns = [
    path("products/", views.products, name="products"),
    path("products/<id:subscription_id>/", views.subscription_detail, name="subscription_detail"),
    path(
        "products/<id:subscription_id>/reactivate/",
        views.subscription_reactivate,
        name="subscription_reactivate",
    ),
    path("billing/invoices/", views.invoices, name="invoices"),
    path("billing/invoices/export.csv", views.invoices_export, name="invoices_export"),
    path("billing/invoices/<key:number>/", views.invoice_detail, name="invoice_detail"),
    path("billing/invoices/<key:number>/pdf/", views.invoice_pdf, name="invoice_pdf"),
]
