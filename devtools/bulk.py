"""Fill the outbox table fast, in one INSERT .. SELECT, for benchmarks and tests at scale.

Rows are numbered 1..rows (x); each is finished (`succeeded`) unless `failed_every` or
`retrying_every` picks it. A failing row (failed, or pending and retrying after a first try)
gets an error and one Attempt row (a succeeded one keeps its try on its row, as the relay
records it), `HTTP 503` when x is a multiple of 3, so the triage page and
the dashboard's failure chart have something to group and count. Timestamps are spread over
the last `spread_seconds`, so the dashboard's last day has activity in every hour.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

COLUMNS = (
    "kind, payload, idempotency_key, queue, state, attempts, max_attempts, available_at, "
    "leased_by, last_error, correlation_id, created_at, updated_at, finished_at, "
    "succeeded_started_at, succeeded_duration_ms"
)


def fill_tasks(
    rows: int,
    *,
    kinds: Sequence[str],
    failed_every: int = 0,
    retrying_every: int = 0,
    spread_seconds: int = 0,
) -> None:
    """Insert `rows` tasks of `kinds` (round robin): finished, but every `failed_every`-th
    failed and every `retrying_every`-th retrying (0: none), with their attempts."""
    if not kinds or rows < 1:
        raise ValueError("fill_tasks needs kinds and at least one row")
    postgres = connection.vendor == "postgresql"

    def ago(seconds: str) -> str:
        if postgres:
            return f"now() - ({seconds}) * interval '1 second'"
        return f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || ({seconds}) || ' seconds')"

    in_an_hour = "now() + interval '1 hour'" if postgres else "datetime('now', '+1 hours')"
    failed = f"x %% {failed_every} = 0" if failed_every else "0 = 1"
    retrying = f"x %% {retrying_every} = 1" if retrying_every else "0 = 1"
    kind = f"CASE x %% {len(kinds)} " + " ".join(f"WHEN {i} THEN %s" for i in range(len(kinds)))
    kind += " END"
    kind_params = list(kinds)
    spread = f"x %% {max(spread_seconds, 1)}"
    error = "'timed out after ' || (x %% 7) || '.5s on t-' || x"
    select = (
        f"SELECT {kind}, {'%s::jsonb' if postgres else '%s'}, "
        f"{'md5(x::text)' if postgres else 'hex(randomblob(16))'}, 'default', "
        f"CASE WHEN {failed} THEN 'failed' WHEN {retrying} THEN 'pending' ELSE 'succeeded' END, "
        f"CASE WHEN {failed} THEN 3 ELSE 1 END, 3, "
        f"CASE WHEN {retrying} AND NOT ({failed}) THEN {in_an_hour} ELSE {ago(spread)} END, "
        f"'', CASE WHEN {failed} OR {retrying} THEN {error} ELSE '' END, 'corr-' || x, "
        f"{ago(str(spread_seconds))}, {ago(spread)}, "
        f"CASE WHEN {retrying} AND NOT ({failed}) THEN NULL ELSE {ago(spread)} END, "
        # A success is kept on its task row, as the relay records it: no Attempt row.
        f"CASE WHEN {failed} OR {retrying} THEN NULL ELSE {ago(spread)} END, "
        f"CASE WHEN {failed} OR {retrying} THEN NULL ELSE 1.0 END"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM outbox_task")
        before = cursor.fetchone()[0]
        if postgres:
            cursor.execute(
                f"INSERT INTO outbox_task ({COLUMNS}) {select} FROM generate_series(1, %s) AS g(x)",
                [*kind_params, "{}", rows],
            )
        else:
            cursor.execute(
                "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < %s) "
                f"INSERT INTO outbox_task ({COLUMNS}) {select} FROM g",
                [rows, *kind_params, "{}"],
            )
        if failed_every or retrying_every:
            # x of a row is its id less the first new id, plus one (the ids are one run).
            cursor.execute("SELECT MIN(id) - 1 FROM outbox_task WHERE id > %s", [before])
            before = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO outbox_attempt (task_id, number, started_at, duration_ms, outcome, "
                "http_status, error, worker) SELECT id, 1, updated_at, 1.0, "
                "CASE WHEN state = 'failed' THEN 'failed' ELSE 'retry' END, "
                "CASE WHEN (id - %s) %% 3 = 0 THEN 503 ELSE NULL END, last_error, '' "
                "FROM outbox_task WHERE id > %s AND last_error <> ''",
                [before, before],
            )
