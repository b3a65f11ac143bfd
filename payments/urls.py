app_name = "payments"

urlpatterns = [
    path("billing/payment-methods/", views.methods, name="methods"),
]
