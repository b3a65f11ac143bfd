from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_support_staff_group(**kwargs: Any) -> None:
    from .services import support_staff_group

    support_staff_group()


class SupportConfig(AppConfig):
    name = "support"
    verbose_name = "Support console"

    def ready(self) -> None:
        post_migrate.connect(_ensure_support_staff_group, sender=self, dispatch_uid="support_staff_group")
