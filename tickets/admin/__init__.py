"""Tickets in the admin, read-only: the tickets' pages (`tickets`, with what their effects mean
in `effects`) and the webhook deliveries' (`deliveries`). Importing this package (the admin's
autodiscovery does) registers them.
"""

from tickets.admin import deliveries, tickets

__all__ = ["deliveries", "tickets"]
