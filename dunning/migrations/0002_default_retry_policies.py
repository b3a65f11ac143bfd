from django.conf import settings
from django.db import migrations


def create_defaults(apps, schema_editor):
    """The four policies with the settings' defaults, so admins find them in the admin from the start."""
    RetryPolicy = apps.get_model("dunning", "RetryPolicy")
    defaults = {
        "soft": (list(settings.DUNNING_SOFT_RETRY_DAYS), True),
        "hard": ([], False),
        "authentication_required": ([], False),
        "unknown": (list(settings.DUNNING_UNKNOWN_RETRY_DAYS), True),
    }
    for category, (days, off_session) in defaults.items():
        RetryPolicy.objects.get_or_create(
            category=category, defaults={"retry_days": days, "retries_off_session": off_session}
        )


class Migration(migrations.Migration):
    dependencies = [("dunning", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
