from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"
    verbose_name = "Tickets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import outbox
        from outbox.console.links import (
            register_dashboard_link,
            register_dashboard_note,
            register_search_url,
            register_status_check,
            register_subject_url,
            register_task_search,
        )
        from tickets import checks, handlers  # noqa: F401  (registers checks and handlers)
        from tickets.admin_links import (
            ticket_admin_url,
            ticket_search_url,
            ticket_tasks_named_by,
            ticket_totals_url,
        )
        from tickets.destinations import check_destinations
        from tickets.intake.signature import WebhookVerifier
        from tickets.reconcile import schedule
        from tickets.retention import prune_deliveries, prune_messages

        outbox.register_preflight(check_destinations)  # qcluster runs it once at start-up
        # A ticket task's page links its ticket (the engine cannot know tickets).
        register_subject_url(ticket_admin_url)
        # The dashboard's search box finds tickets (by id, email, receipt, Correlation-ID...).
        register_search_url("tickets", ticket_search_url)
        # The task list's search finds a ticket's tasks by its id or email on indexes.
        register_task_search(ticket_tasks_named_by)
        register_dashboard_link("Ticket totals per day", ticket_totals_url)
        # prune_outbox and its schedule prune the webhook's tables by the tasks' cutoff.
        outbox.register_retention(prune_deliveries)
        outbox.register_retention(prune_messages)
        # The nightly reconcile: recreated when deleted, as the relay's schedules are; its
        # last run on the dashboard, and in `outbox_status --check` when configured.
        outbox.register_schedule(
            name=schedule.SCHEDULE_NAME,
            func=schedule.SCHEDULE_FUNC,
            minutes=24 * 60,
            migration=("tickets", "0008_reconcile"),
            hour=2,
        )
        register_dashboard_note(schedule.dashboard_note)
        register_status_check("reconcile_drift", schedule.drift_check)

        # A malformed WEBHOOK_SECRET stops start-up, rather than refusing every webhook later.
        WebhookVerifier.from_settings()
