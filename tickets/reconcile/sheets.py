"""The sheets as the reconcile reads them: in pages, at a bounded rate, through the gateway
client (tickets.gateway), so every read has the relay's timeouts and respects its circuit.

Only reads: the reconcile never writes to an API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tickets.gateway import SpreadsheetsClient
from tickets.verdicts import READ_ROWS

PAGE_ROWS = 5000
PAGES_PER_SECOND = 20.0


@dataclass(frozen=True, slots=True)
class SheetRow:
    """A row as read: its place on the sheet (1 = first) and its columns."""

    number: int
    columns: list[str]

    @property
    def ticket_id(self) -> str:
        return str(self.columns[0]) if self.columns else ""


def rows_page(
    client: SpreadsheetsClient, sheet: str, *, offset: int, limit: int, correlation_id: str
) -> tuple[list[list[str]], int | None]:
    """One page of a sheet's rows and where the next starts (None: this was the last).

    The contract reads the whole sheet; a gateway that pages (ours does) answers
    `?offset=&limit=` with `next_offset`. One that ignores the query answers every row and no
    `next_offset`, which reads as a single, last page.
    """
    body = client.call(
        READ_ROWS,
        f"/spreadsheets-api/sheets/{sheet}/rows?offset={offset}&limit={limit}",
        correlation_id=correlation_id,
    )
    rows: list[list[str]] = body["rows"]
    following = body.get("next_offset")
    if not isinstance(following, int) or isinstance(following, bool) or following <= offset:
        return rows, None
    return rows, following


@dataclass
class SheetReader:
    """Reads one sheet page by page, waiting between pages so the API sees at most
    `pages_per_second` reads from us."""

    page_rows: int = PAGE_ROWS
    pages_per_second: float = PAGES_PER_SECOND
    correlation_id: str = ""
    client_factory: Callable[[], SpreadsheetsClient] = SpreadsheetsClient
    sleep: Callable[[float], None] = time.sleep
    pages_read: int = field(default=0, init=False)

    def pages(self, sheet: str) -> Iterator[list[SheetRow]]:
        client = self.client_factory()
        offset: int | None = 0
        number = 1
        last_read = 0.0
        gap = 1.0 / self.pages_per_second if self.pages_per_second > 0 else 0.0
        while offset is not None:
            wait = last_read + gap - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            last_read = time.monotonic()
            rows, following = rows_page(
                client,
                sheet,
                offset=offset,
                limit=self.page_rows,
                correlation_id=self.correlation_id,
            )
            self.pages_read += 1
            page = [SheetRow(number + i, list(columns)) for i, columns in enumerate(rows)]
            number += len(page)
            offset = following
            yield page
