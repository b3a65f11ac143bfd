from django.contrib import admin

from .models import Invoice, InvoiceLine, Product, Subscription


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "billing_period"]
    search_fields = ["name", "code"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["pk", "account", "product", "quantity", "status", "payment_method", "current_period_end"]
    list_filter = ["status"]
    search_fields = ["account__name", "product__name"]
    list_select_related = ["account", "product", "payment_method"]
    raw_id_fields = ["account", "payment_method"]
    # Lifecycle dates move only through subscriptions.services, which lock and audit.
    readonly_fields = [
        "status",
        "past_due_since",
        "grace_ends_at",
        "disabled_at",
        "cancelled_at",
        "data_deleted_at",
        "next_lifecycle_at",
    ]


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["number", "account", "status", "total_minor", "amount_due_minor", "currency", "due_on"]
    list_filter = ["status", "currency"]
    search_fields = ["number", "account__name"]
    list_select_related = ["account"]
    raw_id_fields = ["account", "subscription"]
    readonly_fields = ["status", "amount_due_minor", "paid_at"]
    inlines = [InvoiceLineInline]
