from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("outbox", "0005_schedules_in_passes")]

    operations = [
        migrations.AddField(
            model_name="circuit",
            name="down_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="circuit",
            name="last_error",
            field=models.TextField(blank=True, default=""),
        ),
    ]
