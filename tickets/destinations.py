"""The start-up check of GATEWAY_ADDR: does each API answer where the relay will call it?"""

from __future__ import annotations

import requests
from django.conf import settings

from tickets.gateway import CONNECT_TIMEOUT, _refused

# One harmless GET per API: the route exists even where it takes only PUT (405) or POST.
PROBES = {
    "receipts": "/receipts-api/receipts",
    "payments": "/payments-api/refunds",
    "spreadsheets": "/spreadsheets-api/sheets/tickets-to-print/rows",
}


def check_destinations() -> list[str]:
    """A warning per API whose route GATEWAY_ADDR does not reach (outbox.preflight)."""
    warnings = []
    for api, path in PROBES.items():
        url = f"{settings.GATEWAY_ADDR}{path}"
        try:
            response = requests.get(url, timeout=(CONNECT_TIMEOUT, 5.0), allow_redirects=False)
        except requests.RequestException as exc:
            reason = "connection refused" if _refused(exc) else exc.__class__.__name__
            warnings.append(
                f"the {api} API does not answer at {url} ({reason}): check GATEWAY_ADDR; "
                "its tasks wait pending until it does"
            )
            continue
        status = response.status_code
        # The same rule as the relay's: no probed route's contract defines a 404, and a
        # redirect means the API answers somewhere else.
        if status == 404 or 300 <= status < 400:
            location = response.headers.get("Location", "no Location")
            moved = f", to {location}" if status != 404 else ""
            warnings.append(
                f"the {api} API is not at {url} ({status}{moved}): check GATEWAY_ADDR "
                f"({settings.GATEWAY_ADDR}); its tasks wait pending until it is right"
            )
    return warnings
