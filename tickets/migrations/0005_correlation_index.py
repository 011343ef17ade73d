from django.db import migrations, models


class AddIndexWithoutBlockingWrites(migrations.AddIndex):
    """CREATE INDEX CONCURRENTLY on PostgreSQL, so enqueues and the relay's writes go on while a
    big table is indexed; a plain CREATE INDEX elsewhere. The migration is not atomic: the
    concurrent form cannot run in a transaction."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.add_index(model, self.index, concurrently=True)
            else:
                schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.remove_index(model, self.index, concurrently=True)
            else:
                schema_editor.remove_index(model, self.index)


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
