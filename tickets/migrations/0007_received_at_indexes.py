from django.db import migrations, models

from outbox.migration_operations import AddIndexWithoutBlockingWrites


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tickets", "0006_webhookdelivery_response_body")]

    operations = [
        # The prune of deliveries and messages by age (tickets.retention).
        AddIndexWithoutBlockingWrites(
            model_name="webhookdelivery",
            index=models.Index(fields=["received_at"], name="tickets_delivery_received"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="webhookmessage",
            index=models.Index(fields=["received_at"], name="tickets_message_received"),
        ),
    ]
