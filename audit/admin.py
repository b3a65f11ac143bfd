from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "account", "actor_label", "action", "message"]
    list_filter = ["action"]
    search_fields = ["message", "actor_label", "account__name"]
    list_select_related = ["account"]

    # The audit trail is append-only, also for superusers.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
