from django.contrib import admin

from .models import AccountSweep, DeclineCode, RetryPolicy, RetryRefusal


@admin.register(RetryPolicy)
class RetryPolicyAdmin(admin.ModelAdmin):
    list_display = ["category", "retry_days", "retries_off_session", "updated_at"]
    readonly_fields = ["updated_at"]

    def has_delete_permission(self, request, obj=None) -> bool:
        # A missing row would silently come back with the defaults; edit it instead.
        return False


@admin.register(AccountSweep)
class AccountSweepAdmin(admin.ModelAdmin):
    list_display = ["account", "enqueued_at", "finished_at"]
    list_select_related = ["account"]
    readonly_fields = ["account", "enqueued_at", "finished_at"]


@admin.register(DeclineCode)
class DeclineCodeAdmin(admin.ModelAdmin):
    """The decline-code policy. Model.clean() keeps the networks' rules: no retry of Visa Category 1
    codes, hard declines or authentication requests; retry days 1–60, increasing."""

    list_display = [
        "code",
        "category",
        "visa_category",
        "visa_response_code",
        "retry",
        "retry_days",
        "waits_for_payday",
        "customer_action",
        "customer_message",
    ]
    list_filter = ["category", "visa_category", "retry", "customer_action"]
    search_fields = ["code", "visa_response_code"]
    readonly_fields = ["updated_at"]


@admin.register(RetryRefusal)
class RetryRefusalAdmin(admin.ModelAdmin):
    list_display = ["created_at", "account", "invoice", "reason", "not_before", "overridden", "actor_label"]
    list_filter = ["reason", "overridden"]
    list_select_related = ["account", "invoice"]
    readonly_fields = [f.name for f in RetryRefusal._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False
