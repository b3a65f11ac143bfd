from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _grant_support_staff(**kwargs: Any) -> None:
    from .services import support_staff_grant_reply

    support_staff_grant_reply()


class SupportRequestsConfig(AppConfig):
    name = "support_requests"
    verbose_name = "Support requests"

    def ready(self) -> None:
        # After support's own hook (app order), so the "Support staff" group exists to be completed.
        post_migrate.connect(_grant_support_staff, sender=self, dispatch_uid="support_requests_staff_group")
