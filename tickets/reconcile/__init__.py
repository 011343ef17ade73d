"""The reconcile: our records against the APIs' own, a stored drift report, fixes that cannot
double anything. One module per job:

- `sheets`: the sheets read in pages at a bounded rate through the gateway client;
- `facts`: our tickets and tasks, read by keys a chunk at a time, and the run's scope;
- `compare`: the comparison itself (pure: what was read in, findings out);
- `run`: a run, its items stored as they are found, its counts;
- `report`: a stored run as JSON or lines;
- `fixes`: a missing effect's task enqueued through its own keys, an item acknowledged;
- `schedule`: the nightly run, the dashboard's note and `outbox_status --check`'s check.

`python manage.py reconcile` and the admin's reconcile pages use it (docs/OPERATORS.md).
"""

from tickets.reconcile.facts import Scope
from tickets.reconcile.fixes import CannotFix, drift_acknowledge, drift_fix, fix_run
from tickets.reconcile.run import ReconcileFailed, Reconciler

__all__ = [
    "CannotFix",
    "ReconcileFailed",
    "Reconciler",
    "Scope",
    "drift_acknowledge",
    "drift_fix",
    "fix_run",
]
