"""Index operations for migrations that must not stop writes on a big table.

On PostgreSQL they build and drop indexes CONCURRENTLY: enqueues, the webhook and the relay go
on while an index over millions of tasks is built. Elsewhere (SQLite) they are the plain
operations. A migration that uses them sets `atomic = False`: the concurrent forms cannot run
in a transaction.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


class AddIndexWithoutBlockingWrites(migrations.AddIndex):
    """`AddIndex`, as CREATE INDEX CONCURRENTLY on PostgreSQL.

    Safe to run again after an interrupted migration (a deploy timeout, a lost connection): a
    concurrent build that did not finish leaves an invalid index behind, which is dropped and
    built again; a valid one of the same name is kept.
    """

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            valid = _index_valid(schema_editor, self.index.name)
            if valid:
                return
            if valid is False:
                schema_editor.execute(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}"
                )
        schema_editor.add_index(model, self.index, **_concurrently(schema_editor))

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, **_concurrently(schema_editor))


class RemoveIndexWithoutBlockingWrites(migrations.RemoveIndex):
    """`RemoveIndex`, as DROP INDEX CONCURRENTLY on PostgreSQL."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            schema_editor.remove_index(model, index, **_concurrently(schema_editor))

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = to_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            schema_editor.add_index(model, index, **_concurrently(schema_editor))


def _index_valid(schema_editor: Any, name: str) -> bool | None:
    """PostgreSQL: whether the index `name` exists and is valid; None when it does not exist."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(i.indrelid)",
            [name],
        )
        row = cursor.fetchone()
    return None if row is None else bool(row[0])


def _concurrently(schema_editor: Any) -> dict[str, bool]:
    return {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}
