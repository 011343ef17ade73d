"""The operators' console: everything an operator sees or runs, beside the engine.

The admin pages (task list and page, dashboard, triage), the staff API, /metrics and the relay's
health, the audit log of operators' actions, the links other apps register, and the operator
commands (outbox_status, outbox_pause/resume, replay_tasks, prune_outbox). It owns no models:
it reads and changes the engine's through outbox.models and outbox.services. It imports the
engine; the engine and its runtime never import it.
"""
