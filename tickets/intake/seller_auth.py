"""Who may call `PUT /ticket-refund/{id}` and `GET /tickets` once WEBHOOK_SECRET is set.

By the wire contract both endpoints are open, and they stay open while no
secret is set (development, the seller's test harness; `check --deploy` warns, tickets.W002).
With a secret, a request needs one of:

- the seller's Standard Webhooks signature, made with the webhook's key and checked by the
  webhook's verifier (same headers, same 5-minute freshness window). The signed content is
  `{webhook-id}.{webhook-timestamp}.{METHOD} {path}`, e.g.
  `msg_1.1767225600.PUT /ticket-refund/t-1`: the method and path take the place of the body,
  so a signature made for one request (a read of the list, a refund of t-1) cannot be
  replayed as another (a refund of t-2). The query string is not signed: `limit` and
  `cursor` only pick a page of what the signature already allows;
- `Authorization: Token <key>` of an active staff user holding the view's permission
  (`tickets.request_refund` for a refund, `tickets.view_ticket` for the list).

Anything else is 401 (no credentials, a bad token or signature) or 403 (a user without the
permission), answered before the view runs, so nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, TokenAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from tickets.intake.signature import HEADERS, SVIX_HEADERS, WebhookAuthError, WebhookVerifier

SIGNATURE_HEADERS = HEADERS


@dataclass(frozen=True, slots=True)
class SellerSignature:
    """`request.auth` of a request the seller signed; `request.user` is then None."""

    webhook_id: str


def signed_content(method: str, path: str) -> bytes:
    """What the seller signs for a request without a body: `PUT /ticket-refund/t-1`.

    `path` is the path as Django decodes it (`request.path`): percent-escapes are undone,
    so `t%201` is signed as `t 1`, in UTF-8.
    """
    return f"{method.upper()} {path}".encode()


class SellerSignatureAuthentication(BaseAuthentication):
    """The seller's signature over the request line; None when no signature header is sent
    (another authenticator, or the 401, decides)."""

    def authenticate(self, request: Request) -> tuple[None, SellerSignature] | None:
        verifier = WebhookVerifier.from_settings()
        sent = any(request.headers.get(h) for h in (*SIGNATURE_HEADERS, *SVIX_HEADERS))
        if verifier is None or not sent:
            return None
        try:
            webhook_id = verifier.verify(
                headers=request.headers,
                body=signed_content(request.method or "", request.path),
            )
        except WebhookAuthError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return None, SellerSignature(webhook_id)


class SellerOrStaffPermission(BasePermission):
    """Open without a secret; with one, the seller's signature or a staff user holding
    `view.staff_permission`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not settings.WEBHOOK_SECRET:
            return True
        if isinstance(request.auth, SellerSignature):
            return True
        user = request.user
        if user is None or not user.is_authenticated:
            return False  # the view answers 401, naming what is needed
        if not user.is_staff:
            self.message = f"user {user.get_username()!r} is not staff"
            return False
        if not user.has_perm(view.staff_permission):
            self.message = f"this needs the permission {view.staff_permission}"
            return False
        return True


class SellerEndpointView(APIView):
    """A seller's endpoint that is open by contract and guarded once WEBHOOK_SECRET is set.

    The setting is read per request (authenticators included), so without a secret even a
    malformed `Authorization` header is ignored, exactly as the open contract has it.
    """

    # The permission a staff token needs here, `app_label.codename`.
    staff_permission: str = ""
    permission_classes = [SellerOrStaffPermission]

    def get_authenticators(self) -> list[BaseAuthentication]:
        if not settings.WEBHOOK_SECRET:
            return []
        # Token first: DRF takes the first authenticator's challenge for its 401s.
        return [TokenAuthentication(), SellerSignatureAuthentication()]

    def permission_denied(
        self, request: Request, message: str | None = None, code: str | None = None
    ) -> NoReturn:
        if request.successful_authenticator is None:
            raise exceptions.NotAuthenticated(self.credentials_needed())
        raise exceptions.PermissionDenied(message)

    def credentials_needed(self) -> str:
        return (
            "this needs the seller's Standard Webhooks signature ("
            + ", ".join(SIGNATURE_HEADERS)
            + f") or 'Authorization: Token <key>' of a staff user with the permission "
            f"{self.staff_permission}"
        )


def seller_endpoint_auth_note(permission: str) -> str:
    """The OpenAPI description of how such an endpoint is authenticated."""
    return (
        "Open while WEBHOOK_SECRET is unset (the wire contract). With it: the seller's "
        "Standard Webhooks signature over `{webhook-id}.{webhook-timestamp}.{METHOD} {path}`, "
        f"or a staff user's token with the permission `{permission}`; else 401/403."
    )
