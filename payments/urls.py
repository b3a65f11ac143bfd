from django.urls import path

from . import views

app_name = "payments"

urlpatterns = [
    path("billing/payment-methods/", views.methods, name="methods"),
    path("billing/payment-methods/add/", views.method_add, name="method_add"),
    path("billing/payment-methods/<id:method_id>/edit/", views.method_edit, name="method_edit"),
    path(
        "billing/payment-methods/<id:method_id>/make-active/",
        views.method_set_default,
        name="method_set_default",
    ),
    path("billing/payment-methods/<id:method_id>/replace/", views.method_replace, name="method_replace"),
    path("billing/payment-methods/<id:method_id>/delete/", views.method_delete, name="method_delete"),
    path(
        "products/<id:subscription_id>/replace-payment-method/",
        views.subscription_replace,
        name="subscription_replace",
    ),
    path("billing/settle/<id:failed_method_id>/", views.settle_balance, name="settle"),
    path("billing/settle/<id:failed_method_id>/expiry/", views.settle_expiry, name="settle_expiry"),
    path("billing/invoices/<key:number>/pay/", views.invoice_pay, name="invoice_pay"),
    path("billing/cards/setup/", views.card_setup, name="card_setup"),
    path("billing/payments/<id:attempt_id>/", views.attempt_detail, name="attempt_detail"),
    # The bank sends the customer back here after 3-D Secure (?attempt=<id>).
    path("billing/payments/return/", views.attempt_return, name="attempt_return"),
]
