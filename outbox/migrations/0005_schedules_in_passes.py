from django.db import migrations

# The relay's django-q2 entry points moved from outbox.relay to outbox.passes. The schedules
# store the dotted path; outbox.relay keeps aliases for tasks queued before this migration.
MOVED = {"outbox.relay.keep_passes_alive": "outbox.passes.keep_passes_alive"}


def rewrite(apps, mapping):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in mapping.items():
        Schedule.objects.filter(func=old).update(func=new)


def forwards(apps, schema_editor):
    rewrite(apps, MOVED)


def backwards(apps, schema_editor):
    rewrite(apps, {new: old for old, new in MOVED.items()})


class Migration(migrations.Migration):
    dependencies = [("outbox", "0004_attempt_canceled")]

    operations = [migrations.RunPython(forwards, backwards)]
