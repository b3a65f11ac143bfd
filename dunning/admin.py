from django.contrib import admin

from .models import AccountSweep, RetryPolicy


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
