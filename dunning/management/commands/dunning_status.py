from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from dunning.selectors import dunning_status


class Command(BaseCommand):
    help = "Summarise due dunning work: retries due now and soon, reconciliations, lifecycle moves."

    def handle(self, *args, **options) -> None:
        now = timezone.now()
        self.stdout.write(f"Dunning status at {timezone.localtime(now):%Y-%m-%d %H:%M %Z}")
        for key, value in dunning_status(now=now).items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "none"
            self.stdout.write(f"  {key.replace('_', ' '):<34} {value if value is not None else '—'}")
