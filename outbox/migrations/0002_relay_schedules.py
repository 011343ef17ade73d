from django.db import migrations

SCHEDULES = [
    # Keeps a relay pass alive after a crash; passes chain themselves the rest of the time.
    {"name": "outbox-keep-relay-alive", "func": "outbox.relay.keep_passes_alive", "minutes": 1},
    {"name": "outbox-prune", "func": "outbox.services.prune_finished_tasks", "minutes": 60},
]


def create_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for spec in SCHEDULES:
        Schedule.objects.update_or_create(
            name=spec["name"],
            defaults={
                "func": spec["func"],
                "schedule_type": "I",
                "minutes": spec["minutes"],
                "repeats": -1,
            },
        )


def delete_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=[s["name"] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedules, delete_schedules)]
