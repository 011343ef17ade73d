from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tickets", "0005_correlation_index")]

    operations = [
        # A constant database default: PostgreSQL 11+ adds the column without rewriting the
        # table, and a process still running the previous release (a rolling deploy) inserts
        # without naming it. Rows without the text are answered from `response`, in the order
        # the first answer had (tickets.services.stored_answer), so no backfill is needed.
        migrations.AddField(
            model_name="webhookdelivery",
            name="response_body",
            field=models.TextField(blank=True, default="", db_default=""),
        ),
    ]
