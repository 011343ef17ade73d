from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"
    verbose_name = "Tickets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import outbox
        from tickets import checks, handlers  # noqa: F401  (registers checks and handlers)
        from tickets.gateway import check_destinations
        from tickets.webhook_auth import WebhookVerifier

        outbox.register_preflight(check_destinations)  # qcluster runs it once at start-up

        # A malformed WEBHOOK_SECRET stops start-up, rather than refusing every webhook later.
        WebhookVerifier.from_settings()
