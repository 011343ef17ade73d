"""A success is kept on its task row; it writes no Attempt row from now on.

Three nullable columns without a default or a CHECK: on PostgreSQL adding them changes the
catalog only (no rewrite, no scan), under a short lock of the task table; on SQLite each is
an `ALTER TABLE .. ADD COLUMN`, no rebuild.

The success Attempt rows written before stay as they are, and are not folded into their
tasks: `outbox.history` reads both shapes anyway (a re-run writes the success it replaces as
a row), so folding would buy no reader anything, and would cost an UPDATE of every succeeded
task (a new version of each row and its index entries: about 1.8 KB of WAL and a dead tuple
per task, a million of them on a big table) plus a DELETE of every success row, in one
migration. `prune_outbox` removes those rows with their tasks, on the retention schedule.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0010_settle_and_reply"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="succeeded_started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="succeeded_duration_ms",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="succeeded_http_status",
            field=models.SmallIntegerField(blank=True, null=True),
        ),
    ]
