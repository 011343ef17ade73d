"""HTTP views of the seller's endpoints: read, check, validate, call one service, answer."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from outbox.correlation import HEADER as CORRELATION_HEADER
from outbox.correlation import clean_correlation_id
from project.startup import not_migrated_message, unapplied_migrations
from tickets.intake import contract
from tickets.intake.answers import (
    _CREATED_TASKS_SCHEMA,
    _ERROR_SCHEMA,
    _error,
    _plain_text_headers,
    invalid_request,
)
from tickets.intake.body import parse_json, read_body
from tickets.intake.seller_auth import SellerEndpointView, seller_endpoint_auth_note
from tickets.intake.serializers import (
    TicketsStatusRequest,
    flatten_errors,
    validate_tickets,
)
from tickets.intake.signature import WebhookAuthError, webhook_authenticate
from tickets.intake.validation import (
    ticket_id_error,
)
from tickets.selectors import MAX_PAGE_SIZE, active_tickets_page
from tickets.services import (
    IdempotencyKeyReused,
    TicketCanceled,
    TicketNotFound,
    WebhookIdReused,
    body_hash,
    ticket_refund_request,
    tickets_status_receive,
)

logger = logging.getLogger(__name__)

_JSON = "application/json"


def seller_header_parameters() -> list[OpenApiParameter]:
    """The headers every seller endpoint reads: Correlation-ID and the signature headers."""
    correlation = OpenApiParameter(
        CORRELATION_HEADER,
        contract.correlation_id_schema(),
        OpenApiParameter.HEADER,
        description=(
            "Kept on everything the request causes when it is 1 to 64 of "
            "`A-Z a-z 0-9 . _ : -`; else (or when missing) a fresh one is made. Either "
            "way it is answered back. A control character in it is a 400."
        ),
    )
    signature = [
        OpenApiParameter(
            p["name"],
            p["schema"],
            OpenApiParameter.HEADER,
            required=False,
            description=p["description"],
        )
        for p in contract.signature_header_parameters()
    ]
    return [correlation, *signature]


class TicketsStatusView(APIView):
    """POST /tickets-status: the seller's webhook (docs/API.md)."""

    InputSerializer = TicketsStatusRequest

    @extend_schema(
        operation_id="tickets_status",
        summary="The seller's webhook: confirmed and canceled tickets",
        description=(
            "Unsigned while WEBHOOK_SECRET is unset (the wire contract); with it, signed as "
            "Standard Webhooks says (the `webhook-*` headers). Records the tickets and the work "
            "they cause in one transaction. A repeat (same Idempotency-Key, same body) gets the "
            "first answer, byte for byte, and writes nothing."
        ),
        # The body and headers as the validator takes them (tickets/contract.py).
        request={"application/json": contract.webhook_request_schema()},
        parameters=[
            OpenApiParameter(
                contract.IDEMPOTENCY_KEY_HEADER,
                contract.idempotency_key_schema(),
                OpenApiParameter.HEADER,
                required=True,
                description=(
                    f"Plain text, at most {contract.MAX_IDEMPOTENCY_KEY_LENGTH} characters. The "
                    "same key with the same body answers the first answer again; with another "
                    "body it is refused (422)."
                ),
            ),
            *seller_header_parameters(),
        ],
        responses={
            200: inline_serializer(
                "TicketsStatusAnswer",
                {
                    "correlation_id": serializers.CharField(),
                    "tickets": inline_serializer(
                        "TicketStatusAnswer",
                        {"ticket_id": serializers.CharField(), "status": serializers.CharField()},
                        many=True,
                    ),
                    "tasks": _CREATED_TASKS_SCHEMA,
                },
            ),
            400: _ERROR_SCHEMA,
            401: OpenApiResponse(
                _ERROR_SCHEMA, description="With WEBHOOK_SECRET: no valid signature."
            ),
            413: OpenApiResponse(_ERROR_SCHEMA, description="Over WEBHOOK_MAX_BODY_BYTES."),
            415: OpenApiResponse(_ERROR_SCHEMA, description="Not application/json."),
            422: _ERROR_SCHEMA,
        },
        auth=[],
        tags=["seller"],
    )
    def post(self, request: Request) -> HttpResponse:
        # The size is bounded and the signature checked on the raw bytes before any parsing;
        # a refusal (413, 401, 415, 400) writes nothing (docs/SECURITY.md).
        body = read_body(request._request, limit=settings.WEBHOOK_MAX_BODY_BYTES)
        try:
            webhook_id = webhook_authenticate(headers=request.headers, body=body)
        except WebhookAuthError as exc:
            return _error(status.HTTP_401_UNAUTHORIZED, str(exc))
        raw_key = request.headers.get("Idempotency-Key", "")
        if (refused := _plain_text_headers(request, raw_key=raw_key)) is not None:
            return refused
        key = raw_key.strip()
        if not key:
            return _error(status.HTTP_400_BAD_REQUEST, "the Idempotency-Key header is required")
        if len(key) > contract.MAX_IDEMPOTENCY_KEY_LENGTH:
            return _error(
                status.HTTP_400_BAD_REQUEST,
                f"Idempotency-Key is longer than {contract.MAX_IDEMPOTENCY_KEY_LENGTH}",
            )
        data = parse_json(body, content_type=request.content_type)
        tickets, errors = validate_tickets(data)
        if errors:
            return invalid_request(errors)
        correlation_id = getattr(request._request, "correlation_id", "") or clean_correlation_id(
            None
        )
        try:
            answer = tickets_status_receive(
                idempotency_key=key,
                body_digest=body_hash(data),
                tickets=tickets,
                correlation_id=correlation_id,
                webhook_id=webhook_id or None,
            )
        except (IdempotencyKeyReused, WebhookIdReused) as exc:
            return _error(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc))
        # The stored text, not the dict re-rendered: a repeat answers the first answer's very
        # bytes (the database's JSON column reorders keys).
        response = HttpResponse(answer.text, status=status.HTTP_200_OK, content_type=_JSON)
        response[CORRELATION_HEADER] = answer.correlation_id
        return response


class TicketRefundView(SellerEndpointView):
    """PUT /ticket-refund/{ticket_id}: void the receipt and refund the payment, once."""

    staff_permission = "tickets.request_refund"

    @extend_schema(
        operation_id="ticket_refund",
        summary="Void a ticket's receipt and refund its payment",
        description=seller_endpoint_auth_note("tickets.request_refund"),
        request=None,
        parameters=seller_header_parameters(),
        responses={
            202: inline_serializer(
                "TicketRefundAnswer",
                {"ticket_id": serializers.CharField(), "tasks": _CREATED_TASKS_SCHEMA},
            ),
            400: _ERROR_SCHEMA,
            401: _ERROR_SCHEMA,
            403: _ERROR_SCHEMA,
            404: _ERROR_SCHEMA,
            409: _ERROR_SCHEMA,
        },
        auth=[],
        tags=["tickets"],
    )
    def put(self, request: Request, ticket_id: str) -> Response:
        if (reason := ticket_id_error(ticket_id)) is not None:
            return invalid_request([{"field": "ticket_id", "message": reason}])
        if (refused := _plain_text_headers(request)) is not None:
            return refused
        correlation_id = getattr(request._request, "correlation_id", "")
        try:
            tasks = ticket_refund_request(ticket_id=ticket_id, correlation_id=correlation_id)
        except TicketNotFound as exc:
            return _error(status.HTTP_404_NOT_FOUND, str(exc))
        except TicketCanceled as exc:
            return _error(status.HTTP_409_CONFLICT, str(exc))
        return Response(
            {
                "ticket_id": ticket_id,
                "tasks": [{"id": task.id, "kind": task.kind} for task in tasks],
            },
            status=status.HTTP_202_ACCEPTED,
        )


class AsciiIntegerField(serializers.IntegerField):
    """A query parameter of ASCII digits: int() alone also reads "١٢" and " 12 "."""

    def to_internal_value(self, data: Any) -> int:
        if not (isinstance(data, str) and data.isascii() and data.isdigit()):
            raise serializers.ValidationError("must be a whole number in ASCII digits")
        return super().to_internal_value(data)


class TicketsListView(SellerEndpointView):
    """GET /tickets: tickets that are not canceled, a page at a time.

    The body keeps the contract's shape, a bare list; the next page is in a `Link` header
    (RFC 8288), so a client that reads only the body still gets the first page.
    """

    staff_permission = "tickets.view_ticket"

    class QuerySerializer(serializers.Serializer):
        limit = AsciiIntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=MAX_PAGE_SIZE)
        cursor = AsciiIntegerField(min_value=0, default=0)

    @extend_schema(
        operation_id="tickets_list",
        summary="Tickets that are not canceled, a page at a time",
        description=seller_endpoint_auth_note("tickets.view_ticket")
        + f' At most {MAX_PAGE_SIZE} a page; `Link: </tickets?...>; rel="next"` names the '
        "next page while there is one.",
        parameters=[QuerySerializer, *seller_header_parameters()],
        responses={
            200: inline_serializer(
                "TicketListEntry",
                {
                    "ticket_id": serializers.CharField(),
                    "customer_email": serializers.EmailField(),
                    "price": inline_serializer(
                        "TicketListPrice",
                        {"amount": serializers.CharField(), "currency": serializers.CharField()},
                    ),
                },
                many=True,
            ),
            400: _ERROR_SCHEMA,
            401: _ERROR_SCHEMA,
            403: _ERROR_SCHEMA,
        },
        auth=[],
        tags=["tickets"],
    )
    def get(self, request: Request) -> Response:
        if (refused := _plain_text_headers(request)) is not None:
            return refused
        # A plain dict, not the QueryDict: DRF reads an empty `?limit=` from a QueryDict as
        # absent (the default) and a repeated one as its last value, each a request the
        # schema does not allow, answered as if it were well formed.
        given = {name: request.query_params.getlist(name) for name in request.query_params}
        repeated = [
            {"field": name, "message": "must be given once"}
            for name, values in given.items()
            if len(values) > 1 and name in self.QuerySerializer().fields
        ]
        if repeated:
            return invalid_request(repeated)
        query = self.QuerySerializer(data={name: values[0] for name, values in given.items()})
        if not query.is_valid():
            return invalid_request(flatten_errors(query.errors))
        limit: int = query.validated_data["limit"]
        page = active_tickets_page(limit=limit, cursor=query.validated_data["cursor"])
        response = Response(page.rows)
        if page.next_cursor is not None:
            next_url = f"{request.path}?{urlencode({'limit': limit, 'cursor': page.next_cursor})}"
            response["Link"] = f'<{next_url}>; rel="next"'
        return response


# A GET-only probe: a POST is a 405 naming GET, never a CSRF refusal (it changes nothing).
@csrf_exempt
@require_GET
def health(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        logger.exception("health check: the database does not answer")
        return HttpResponse("database unavailable", status=503, content_type="text/plain")
    pending = unapplied_migrations()
    if pending:
        return HttpResponse(not_migrated_message(pending), status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")
