"""The "Accounting" group: sees tickets, tasks and their attempts, and may retry tasks.

It may not change or delete anything, cancel or re-run tasks, or pause kinds.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Accounting"
PERMISSIONS = [
    ("tickets", "view_ticket"),
    ("tickets", "view_webhookdelivery"),
    ("outbox", "view_task"),
    ("outbox", "view_attempt"),
    ("outbox", "view_pausedkind"),
    ("outbox", "retry_task"),
]


def create_group(apps, schema_editor):
    alias = schema_editor.connection.alias
    # Permissions are normally made after migrate (post_migrate); make them now so a fresh
    # database gets a complete group in one migrate.
    for label in sorted({label for label, _ in PERMISSIONS}):
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=alias, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(alias).get_or_create(name=GROUP)
    for label, codename in PERMISSIONS:
        permission = Permission.objects.using(alias).get(
            content_type__app_label=label, codename=codename
        )
        group.permissions.add(permission)


def delete_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0002_relay_schedules"),
        ("tickets", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
