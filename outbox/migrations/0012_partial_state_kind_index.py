"""The `state, kind` index holds failed and canceled tasks only.

Every write of a task row (enqueue, claim, outcome) is a new row version with an entry in
each index it qualifies for; the full index took one on each of them for every task, about
95 B of WAL a write (the benchmark's (m): 2,003 -> 1,718 B per no-op task). Its readers ask
about open tasks (the partial `due` and `lease` indexes answer those) or failed and canceled
ones (this index); the counts of succeeded tasks are estimated (`outbox.selectors`).
Built and dropped `CONCURRENTLY` on PostgreSQL: writes go on meanwhile.
"""

from django.db import migrations, models

from outbox.migration_operations import (
    AddIndexWithoutBlockingWrites,
    RemoveIndexWithoutBlockingWrites,
)


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("outbox", "0011_success_on_task_row")]

    operations = [
        AddIndexWithoutBlockingWrites(
            model_name="task",
            index=models.Index(
                condition=models.Q(("state__in", ["failed", "canceled"])),
                fields=["state", "kind"],
                name="outbox_task_ended_badly",
            ),
        ),
        RemoveIndexWithoutBlockingWrites(model_name="task", name="outbox_task_state_kind"),
    ]
