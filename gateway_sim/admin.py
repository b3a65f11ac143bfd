from django.contrib import admin

from .models import SimCard, SimCharge


@admin.register(SimCharge)
class SimChargeAdmin(admin.ModelAdmin):
    list_display = ["reference", "status", "amount_minor", "currency", "decline_code", "created_at"]
    list_filter = ["status"]


@admin.register(SimCard)
class SimCardAdmin(admin.ModelAdmin):
    list_display = ["token", "exp_month", "exp_year", "created_at"]
