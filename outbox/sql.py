"""Small SQL pieces the ORM does not offer portably (PostgreSQL and SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, models

from outbox.errors import ValueTooLong

# Both PostgreSQL (65535) and SQLite >= 3.32 (32766) take far more than Django's default 999.
_MAX_PARAMS = 30000


def db_now_sql() -> str:
    """The database clock, as Django's Now() renders it (statement time on PostgreSQL)."""
    if connection.vendor == "postgresql":
        return "STATEMENT_TIMESTAMP()"
    return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW')"


def insert_ignoring_conflicts(
    model: type[models.Model],
    rows: list[dict[str, Any]],
    *,
    conflict_field: str,
    returning: list[str],
    db_now_if_null: tuple[str, ...] = (),
) -> list[tuple[Any, ...]]:
    """INSERT .. ON CONFLICT (field) DO NOTHING RETURNING ..: one statement per ~30k values.

    Unlike `bulk_create(ignore_conflicts=True)`, it ignores only the named unique conflict
    (SQLite's INSERT OR IGNORE would swallow any constraint error) and reports which rows
    were inserted. Columns in `db_now_if_null` take the database clock when given None.
    """
    if not rows:
        return []
    columns = list(rows[0])
    fields = {name: field_of(model, name) for name in columns}
    _refuse_too_long(model, rows, fields)
    table = connection.ops.quote_name(model._meta.db_table)
    quoted = ", ".join(connection.ops.quote_name(fields[name].column or name) for name in columns)
    tail = (
        f"ON CONFLICT ({connection.ops.quote_name(conflict_field)}) DO NOTHING "
        f"RETURNING {', '.join(returning)}"
    )
    if connection.vendor == "postgresql":
        return _insert_unnest(table, quoted, tail, rows, columns, fields, db_now_if_null)
    row_sql = []
    for name in columns:
        if name in db_now_if_null:
            row_sql.append(f"COALESCE(%s, {db_now_sql()})")
        else:
            row_sql.append("%s")
    one_row = f"({', '.join(row_sql)})"
    chunk = max(1, _MAX_PARAMS // len(columns))
    returned: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            params = [
                fields[name].get_db_prep_save(row[name], connection)
                for row in part
                for name in columns
            ]
            cursor.execute(
                f"INSERT INTO {table} ({quoted}) VALUES {', '.join([one_row] * len(part))} {tail}",
                params,
            )
            returned.extend(cursor.fetchall())
    return returned


def insert_rows(model: type[models.Model], rows: list[dict[str, Any]]) -> None:
    """INSERT many rows in one statement, as `bulk_create` but cheaper on PostgreSQL.

    Django's bulk_create renders its arrays into the SQL text, quoting every element through
    a regex; here they travel bound, in binary. It is a quarter of the relay's time per
    no-op batch (the Attempt rows); SQLite takes bulk_create.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create([model(**row) for row in rows])
        return
    columns = list(rows[0])
    fields = {name: field_of(model, name) for name in columns}
    _refuse_too_long(model, rows, fields)
    table = connection.ops.quote_name(model._meta.db_table)
    quoted = ", ".join(connection.ops.quote_name(fields[name].column or name) for name in columns)
    _insert_unnest(table, quoted, "", rows, columns, fields, (), returning=False)


def _insert_unnest(
    table: str,
    quoted: str,
    tail: str,
    rows: list[dict[str, Any]],
    columns: list[str],
    fields: dict[str, models.Field[Any, Any]],
    db_now_if_null: tuple[str, ...],
    *,
    returning: bool = True,
) -> list[tuple[Any, ...]]:
    types, arrays = unnest_arrays([(fields[name], [row[name] for row in rows]) for name in columns])
    selected = [
        f"COALESCE(c{index}, {db_now_sql()})" if name in db_now_if_null else f"c{index}"
        for index, name in enumerate(columns)
    ]
    aliases = ", ".join(f"c{index}" for index in range(len(columns)))
    with server_binding_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({quoted}) SELECT {', '.join(selected)} "
            f"FROM unnest({types}) AS u({aliases}) {tail}",
            arrays,
        )
        return cursor.fetchall() if returning else []


def unnest_arrays(
    columns: Sequence[tuple[models.Field[Any, Any], list[Any]]],
) -> tuple[str, list[list[Any]]]:
    """The arguments of a PostgreSQL `unnest(..)` for these columns: its placeholders and one
    array per column, for a `server_binding_cursor`.

    One array per column keeps a statement a few hundred characters whatever the row count,
    so psycopg never re-parses thousands of placeholders. Each travels as `%b`, in binary:
    the text format quotes every element through a regex (psycopg's array dumper), ~3 ms of
    CPU for a 200-task webhook. JSON values are dumped by their field (None stays NULL);
    psycopg adapts the rest (str, int, Decimal, datetime, UUID).
    """
    types = []
    arrays = []
    for field, values in columns:
        if isinstance(field, models.JSONField):
            values = [field.get_db_prep_save(value, connection) for value in values]
        arrays.append(values)
        types.append(f"%b::{field.db_type(connection)}[]")
    return ", ".join(types), arrays


def field_of(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """The concrete field `name` of `model`."""
    found = model._meta.get_field(name)
    assert isinstance(found, models.Field)
    return found


def own_connection_params() -> dict[str, Any]:
    """`psycopg.connect()` arguments for a connection of its own to the default PostgreSQL
    database, outside Django's pool: Django's parameters, without its cursor class and its
    adapters (which plain psycopg connections do not need)."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return params


def server_binding_cursor(*, binary: bool = False) -> Any:
    """A cursor that sends the arrays as bound parameters (binary), not as SQL text.

    Django's PostgreSQL cursors bind client-side: the arrays would be rendered and escaped
    into the statement. With `binary`, rows come back in binary and are read by psycopg's own
    (C) loaders: a jsonb column is a Python value, a timestamptz an aware datetime. Nothing is
    prepared (Django connects with prepare_threshold=None). Wrapped by Django, it is still
    logged and counted like any other.
    """
    import psycopg

    connection.ensure_connection()
    raw: Any = psycopg.Cursor(connection.connection)
    if binary:
        raw.format = psycopg.pq.Format.BINARY
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)
    return connection.make_cursor(raw)


def _refuse_too_long(
    model: type[models.Model], rows: list[dict[str, Any]], fields: dict[str, models.Field[Any, Any]]
) -> None:
    # PostgreSQL's `::varchar(n)[]` cast truncates silently and SQLite stores any length: two
    # long keys sharing a prefix would collide on one database and not the other. Refuse.
    limits = {
        name: field.max_length
        for name, field in fields.items()
        if isinstance(field, models.CharField) and field.max_length
    }
    for row in rows:
        for name, limit in limits.items():
            value = row[name]
            if isinstance(value, str) and len(value) > limit:
                raise ValueTooLong(
                    f"{model._meta.label}.{name} is {len(value)} characters long, more than "
                    f"its {limit}: {value[:40]!r}..."
                )


class Retraced(models.Func):
    """A task's trace context after an operator's retry: the retry span's `traceparent`, and
    `origin`, the first trace's (kept through later retries), which each try links to."""

    output_field = models.JSONField()

    def __init__(self, traceparent: str) -> None:
        super().__init__(models.F("trace_context"), models.Value(traceparent))

    def as_sql(  # type: ignore[override]
        self, compiler: Any, connection: Any, **extra: Any
    ) -> tuple[str, list[Any]]:
        stored, value = self.get_source_expressions()
        column, column_params = compiler.compile(stored)
        placeholder, value_params = compiler.compile(value)
        if connection.vendor == "postgresql":
            origin = f"COALESCE({column} -> 'origin', {column} -> 'traceparent')"
            sql = (
                f"jsonb_strip_nulls(jsonb_build_object('traceparent', {placeholder}::text, "
                f"'origin', {origin}))"
            )
        else:
            origin = (
                f"COALESCE(json_extract({column}, '$.origin'), "
                f"json_extract({column}, '$.traceparent'))"
            )
            sql = f"json_object('traceparent', {placeholder}, 'origin', {origin})"
        return sql, [*value_params, *column_params, *column_params]
