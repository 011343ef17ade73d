"""Small SQL pieces the ORM does not offer portably (PostgreSQL and SQLite)."""

from __future__ import annotations

from typing import Any

from django.db import connection, models

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
    fields = {name: _concrete(model, name) for name in columns}
    postgres = connection.vendor == "postgresql"
    row_sql = []
    for name in columns:
        if name in db_now_if_null:
            cast = "::timestamptz" if postgres else ""
            row_sql.append(f"COALESCE(%s{cast}, {db_now_sql()})")
        else:
            row_sql.append("%s")
    one_row = f"({', '.join(row_sql)})"
    table = connection.ops.quote_name(model._meta.db_table)
    quoted = ", ".join(
        connection.ops.quote_name(fields[name].get_attname_column()[1] or name) for name in columns
    )
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
                f"INSERT INTO {table} ({quoted}) VALUES {', '.join([one_row] * len(part))} "
                f"ON CONFLICT ({connection.ops.quote_name(conflict_field)}) DO NOTHING "
                f"RETURNING {', '.join(returning)}",
                params,
            )
            returned.extend(cursor.fetchall())
    return returned


def _concrete(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    found = model._meta.get_field(name)
    assert isinstance(found, models.Field)
    return found
