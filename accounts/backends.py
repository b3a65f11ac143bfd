"""Django's ModelBackend with a user's permissions read in one query instead of two.

Django asks for a user's own permissions and for those of their groups separately; every support
console page checks permissions, so that is two queries per page. Here one query reads both (a
UNION), and fills the same per-request caches Django's own methods read, so has_perm,
get_user_permissions and get_group_permissions answer exactly as before.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission


class PermissionsInOneQueryBackend(ModelBackend):
    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            if user_obj.is_superuser:
                return super().get_all_permissions(user_obj)
            fields = ("content_type__app_label", "codename", "source")
            own = Permission.objects.filter(user=user_obj).annotate(source=_source("user"))
            grouped = Permission.objects.filter(group__user=user_obj).annotate(source=_source("group"))
            both = (
                own.values_list(*fields).order_by().union(grouped.values_list(*fields).order_by(), all=True)
            ).order_by()
            user_perms: set[str] = set()
            group_perms: set[str] = set()
            for app_label, codename, source in both:
                (user_perms if source == "user" else group_perms).add(f"{app_label}.{codename}")
            user_obj._user_perm_cache = user_perms
            user_obj._group_perm_cache = group_perms
            user_obj._perm_cache = user_perms | group_perms
        return user_obj._perm_cache


def _source(name: str) -> Any:
    from django.db.models import CharField, Value

    return Value(name, output_field=CharField())
