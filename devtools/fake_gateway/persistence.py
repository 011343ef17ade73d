"""The fake gateway's state file (`fake_gateway --state-file`): its records saved and loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

from devtools.fake_gateway.apis import FakeGateway, GatewayState
from devtools.fake_gateway.faults import ConfigError

# Persistence (`fake_gateway --state-file`): the APIs' records survive a restart, so receipt
# numbers keep counting instead of starting again at R-000001 for new tickets. Calls, stats
# and the failure config are not kept: they describe one run.

_PERSISTED_RECORDS = {
    "receipts": ("receipts_by_key", "idempotency_key"),
    "voids": ("voids_by_id", "idempotent_id"),
    "refunds": ("refunds_by_id", "deduplication_id"),
}


def save_state(gateway: FakeGateway, path: Path) -> None:
    """Write the records to `path` atomically (a temporary file renamed over it)."""
    with gateway._lock:
        state = gateway._state
        document = json.dumps(
            {
                "receipts": state.receipts,
                "voids": state.voids,
                "refunds": state.refunds,
                "sheets": state.sheets,
                "sheet_rows": state.sheet_rows,
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(document)
    os.replace(temporary, path)


def load_state(gateway: FakeGateway, path: Path) -> int:
    """Read the records `save_state` wrote, if the file exists; returns the receipts loaded."""
    if not path.exists():
        return 0
    try:
        document = json.loads(path.read_text())
        state = GatewayState(sheets=document["sheets"], sheet_rows=document["sheet_rows"])
        for name, (index, key) in _PERSISTED_RECORDS.items():
            records = document[name]
            setattr(state, name, records)
            setattr(state, index, {record[key]: record for record in records})
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("state_file", f"{path} is not a fake gateway state file: {exc}") from exc
    with gateway._lock:
        gateway._state = state
    return len(state.receipts)
