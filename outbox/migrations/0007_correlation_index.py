from django.db import migrations, models

from outbox.migration_operations import AddIndexWithoutBlockingWrites


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("outbox", "0006_circuit_last_error")]

    operations = [
        # The search by Correlation-ID (tickets' list, the deliveries' list).
        AddIndexWithoutBlockingWrites(
            model_name="task",
            index=models.Index(fields=["correlation_id"], name="outbox_task_correlation"),
        ),
    ]
