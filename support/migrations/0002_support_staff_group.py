"""Create the "Support staff" group holding every support permission.

Permissions are normally created after all migrations ran (post_migrate); the group needs them
now, so this migration creates the content type and permissions itself (get_or_create, so the
later post_migrate pass finds them and changes nothing).
"""

from django.db import migrations

GROUP_NAME = "Support staff"
PERMISSIONS = [
    ("view_support_console", "Can search accounts and open them in the support console"),
    ("add_support_note", "Can add a support note to an account"),
    ("retry_payment", "Can retry a past-due invoice now"),
    ("record_bank_transfer", "Can record a received bank transfer"),
    ("extend_grace", "Can extend a subscription's grace period"),
    ("view_recovery_dashboard", "Can see the recovery dashboard"),
]


def create_group(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="support", model="supportconsole")
    group, _ = Group.objects.get_or_create(name=GROUP_NAME)
    for codename, name in PERMISSIONS:
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        group.permissions.add(permission)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("support", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
