from django.db import migrations, models

from outbox.migration_operations import AddIndexWithoutBlockingWrites


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tickets", "0004_ticket_permissions")]

    operations = [
        # The search by Correlation-ID (tickets' list, the deliveries' list).
        AddIndexWithoutBlockingWrites(
            model_name="webhookdelivery",
            index=models.Index(fields=["correlation_id"], name="tickets_delivery_correlation"),
        ),
    ]
