"""Drift planted on the fake's sheets, as a person editing the spreadsheet would make it.

`POST /fake-gateway/sheets/{sheet}/drift` (and `FakeGateway.plant_drift`) deletes a ticket's
row, duplicates it, changes its data, or adds a row of its own, so the reconcile's tests can
make every kind of difference between our records and the sheet. Runs under the gateway's lock.
"""

from __future__ import annotations

from typing import Any

from devtools.fake_gateway.wire import BadRequest, _now_iso

ACTIONS = ("delete", "duplicate", "change", "add")
# The columns of a row, in the order the service appends them.
COLUMNS = ("ticket_id", "customer_email", "amount", "currency")


def parse_drift(body: dict[str, Any]) -> dict[str, Any]:
    """The drift asked for, validated; a BadRequest naming the field otherwise."""
    unknown = sorted(set(body) - {"action", "ticket_id", "columns", *COLUMNS[1:]})
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    action = body.get("action")
    if action not in ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if action == "add":
        columns = body.get("columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise BadRequest("columns must be a list of strings")
        return {"action": action, "columns": columns}
    ticket_id = body.get("ticket_id")
    if not isinstance(ticket_id, str) or not ticket_id:
        raise BadRequest("ticket_id is required")
    changes = {name: body[name] for name in COLUMNS[1:] if name in body}
    for name, value in changes.items():
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
    if action == "change" and not changes:
        raise BadRequest("change needs at least one of customer_email, amount, currency")
    return {"action": action, "ticket_id": ticket_id, "changes": changes}


def apply_drift(
    sheets: dict[str, list[list[str]]],
    sheet_rows: dict[str, list[dict[str, Any]]],
    sheet: str,
    drift: dict[str, Any],
) -> int:
    """Change the sheet as asked; the number of rows it touched. Raises BadRequest when the
    ticket has no row on the sheet (nothing changes)."""
    rows = sheets.setdefault(sheet, [])
    records = sheet_rows.setdefault(sheet, [])
    if drift["action"] == "add":
        rows.append(list(drift["columns"]))
        records.append({"columns": rows[-1], "correlation_id": None, "appended_at": _now_iso()})
        return 1
    ticket_id = drift["ticket_id"]
    found = [i for i, row in enumerate(rows) if row and row[0] == ticket_id]
    if not found:
        raise BadRequest(f"sheet {sheet!r} has no row for ticket {ticket_id!r}")
    if drift["action"] == "delete":
        for i in reversed(found):
            del rows[i]
        kept = [r for r in records if not (r["columns"] and r["columns"][0] == ticket_id)]
        records[:] = kept
        return len(found)
    if drift["action"] == "duplicate":
        copy = list(rows[found[0]])
        rows.append(copy)
        records.append({"columns": copy, "correlation_id": None, "appended_at": _now_iso()})
        return 1
    for i in found:
        row = list(rows[i])
        while len(row) < len(COLUMNS):
            row.append("")
        for name, value in drift["changes"].items():
            row[COLUMNS.index(name)] = value
        rows[i] = row
    return len(found)
