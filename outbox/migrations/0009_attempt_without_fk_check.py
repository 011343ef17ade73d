"""Attempt.task keeps its index and Django's cascade, without the database's foreign-key check.

Every attempt written ran that check at commit: a lookup of its task that also locks it
(`SELECT .. FOR KEY SHARE`), about 4 us of the database's 30 us per task on a no-op drain.
Attempts are written only by the engine, for tasks it claimed; tasks are deleted only by
prune, which deletes their attempts in the same transaction, and locks and checks again the
tasks it deletes (a task retried meanwhile is kept). On PostgreSQL dropping a constraint
scans nothing, but it waits for a lock on both tables: run it when no long transaction holds
them. On SQLite Django rebuilds the attempts table, under the database's write lock.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0008_cheaper_task_writes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="attempt",
            name="task",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="attempt_set",
                to="outbox.task",
            ),
        ),
    ]
