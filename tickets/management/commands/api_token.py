"""Print the API token of a staff user, creating it on first use."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbox.console.api import ApiTokenRefused, api_token_issue


class Command(BaseCommand):
    help = (
        "Print the token a staff user sends to the operators' API as "
        "'Authorization: Token <key>' (/api/tasks/ID, /api/tickets/ID). The token is created "
        "on first use; later runs print the same one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="An existing, active staff user.")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        try:
            token = api_token_issue(username=username)
        except ApiTokenRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token.key)
