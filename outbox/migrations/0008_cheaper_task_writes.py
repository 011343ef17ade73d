"""Fewer index entries per task write on PostgreSQL.

- `finished_at`'s index becomes partial (finished rows only): its readers all compare it with
  a time, which implies NOT NULL. Built under a new name before the old one is dropped, so
  prune and the dashboard always have one.
- The `varchar_pattern_ops` index Django adds beside a unique CharField (for prefix LIKE) is
  dropped from `dedupe_key`: no query uses a prefix match on it, and the unique index serves
  ON CONFLICT, `=` and `IN`.
- The attempts' `started_at` index holds failed tries only (`retry`, `failed`), which is all
  its one reader, the dashboard's failures per hour, asks for.

Both without blocking writes (CONCURRENTLY), so the migration is not atomic.
"""

from django.db import migrations, models

from outbox.migration_operations import (
    AddIndexWithoutBlockingWrites,
    RemoveIndexWithoutBlockingWrites,
)

LIKE_INDEX = (
    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
    "AND tablename = 'outbox_task' AND indexdef LIKE '%%(dedupe_key varchar_pattern_ops)%%'"
)


def drop_like_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(LIKE_INDEX)
        names = [row[0] for row in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")


def restore_like_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(LIKE_INDEX)
        if cursor.fetchall():
            return
    task = apps.get_model("outbox", "Task")
    schema_editor.execute(
        schema_editor._create_like_index_sql(task, task._meta.get_field("dedupe_key"))
    )


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("outbox", "0007_correlation_index")]

    operations = [
        AddIndexWithoutBlockingWrites(
            model_name="task",
            index=models.Index(
                condition=models.Q(finished_at__isnull=False),
                fields=["finished_at"],
                name="outbox_task_finished_only",
            ),
        ),
        RemoveIndexWithoutBlockingWrites(model_name="task", name="outbox_task_finished"),
        AddIndexWithoutBlockingWrites(
            model_name="attempt",
            index=models.Index(
                condition=models.Q(outcome__in=["retry", "failed"]),
                fields=["started_at"],
                name="outbox_attempt_failed_started",
            ),
        ),
        RemoveIndexWithoutBlockingWrites(model_name="attempt", name="outbox_attempt_started"),
        migrations.RunPython(drop_like_index, restore_like_index),
    ]
