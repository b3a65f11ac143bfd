from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DunningConfig(AppConfig):
    name = "dunning"
    verbose_name = _("Dunning")

    def ready(self) -> None:
        from payments.gateways.base import register_decline_policy

        from .policy import classify, message_for

        register_decline_policy(classify=classify, message=message_for)
