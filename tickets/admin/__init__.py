"""Tickets in the admin, read-only: the tickets' pages (`tickets`, with what their effects mean
in `effects`), the webhook deliveries' (`deliveries`), and the reconcile's runs and drift
items (`reconcile`). Importing this package (the admin's autodiscovery does) registers them.
"""

from tickets.admin import deliveries, reconcile, tickets

__all__ = ["deliveries", "reconcile", "tickets"]
