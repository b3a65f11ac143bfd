from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DunningConfig(AppConfig):
    name = "dunning"
    verbose_name = _("Dunning")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from payments.gateways.base import register_decline_policy

        from .policy import classify, decline_codes_ensure_defaults, message_for

        register_decline_policy(classify=classify, message=message_for)
        post_migrate.connect(
            decline_codes_ensure_defaults, sender=self, dispatch_uid="dunning.decline_defaults"
        )
