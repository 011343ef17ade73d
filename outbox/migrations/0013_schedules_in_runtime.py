from django.db import migrations

# The relay's django-q2 entry points moved from outbox.passes to outbox.runtime.passes. The
# schedules store the dotted path; outbox.passes and outbox.relay keep aliases for tasks queued
# before this migration.
MOVED = {"outbox.passes.keep_passes_alive": "outbox.runtime.passes.keep_passes_alive"}


def rewrite(apps, mapping):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in mapping.items():
        Schedule.objects.filter(func=old).update(func=new)


def forwards(apps, schema_editor):
    rewrite(apps, MOVED)


def backwards(apps, schema_editor):
    rewrite(apps, {new: old for old, new in MOVED.items()})


class Migration(migrations.Migration):
    dependencies = [("outbox", "0012_partial_state_kind_index")]

    operations = [migrations.RunPython(forwards, backwards)]
