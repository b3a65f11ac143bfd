from django.urls import path

from . import views

app_name = "support"

urlpatterns = [
    path("", views.search, name="search"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("accounts/<id:account_id>/", views.account_detail, name="account"),
    path("accounts/<id:account_id>/subscriptions/", views.account_subscriptions, name="subscriptions"),
    path("accounts/<id:account_id>/notes/", views.note_add, name="note_add"),
    path("accounts/<id:account_id>/bank-transfer/", views.bank_transfer, name="bank_transfer"),
    path(
        "accounts/<id:account_id>/invoices/<id:invoice_id>/retry/",
        views.invoice_retry,
        name="invoice_retry",
    ),
    path(
        "accounts/<id:account_id>/payments/<id:attempt_id>/refund/",
        views.payment_refund,
        name="payment_refund",
    ),
    path(
        "accounts/<id:account_id>/payments/<id:attempt_id>/refund-overpayment/",
        views.overpayment_refund,
        name="overpayment_refund",
    ),
    path(
        "accounts/<id:account_id>/payments/<id:attempt_id>/simulated-bank/",
        views.simulated_bank,
        name="simulated_bank",
    ),
    path(
        "accounts/<id:account_id>/subscriptions/<id:subscription_id>/grace/",
        views.grace_extend,
        name="grace_extend",
    ),
]
