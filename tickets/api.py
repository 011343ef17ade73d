"""The operators' read API of the tickets domain: a ticket, its receipt and its outbox tasks."""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from outbox.console.api import AUTH_ERRORS, ErrorSerializer, StaffApiView, not_found
from outbox.models import Task, TaskState
from tickets.intake.answers import invalid_request
from tickets.intake.validation import ticket_id_error
from tickets.models import Ticket, TicketStatus
from tickets.selectors import ticket_tasks


@dataclass(frozen=True, slots=True)
class TicketDetail:
    ticket: Ticket
    tasks: list[Task]

    @property
    def receipt(self) -> Ticket | None:
        """The ticket when its receipt is known, else None."""
        return self.ticket if self.ticket.receipt_number else None


def ticket_detail(ticket_id: str) -> TicketDetail | None:
    """The ticket and every outbox task it caused; two queries."""
    ticket = Ticket.objects.filter(ticket_id=ticket_id).first()
    if ticket is None:
        return None
    return TicketDetail(ticket=ticket, tasks=ticket_tasks([ticket_id])[ticket_id])


class TicketDetailApi(StaffApiView):
    """GET /api/tickets/{ticket_id}: the ticket, its receipt and the state of its tasks."""

    # Names the model whose view permission is needed (tickets.view_ticket); never evaluated.
    queryset = Ticket.objects.none()

    class OutputSerializer(serializers.Serializer):
        class PriceSerializer(serializers.Serializer):
            amount = serializers.DecimalField(
                max_digits=12, decimal_places=2, source="price_amount", coerce_to_string=True
            )
            currency = serializers.CharField(source="price_currency")

            class Meta:
                ref_name = "TicketPrice"

        class ReceiptSerializer(serializers.Serializer):
            number = serializers.CharField(source="receipt_number")
            issued_at = serializers.DateTimeField(source="receipt_issued_at", allow_null=True)

            class Meta:
                ref_name = "TicketReceipt"

        class TaskSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            kind = serializers.CharField()
            state = serializers.ChoiceField(choices=TaskState.choices)
            attempts = serializers.IntegerField()
            last_error = serializers.CharField()

            class Meta:
                ref_name = "TicketTask"

        ticket_id = serializers.CharField(source="ticket.ticket_id")
        status = serializers.ChoiceField(choices=TicketStatus.choices, source="ticket.status")
        customer_email = serializers.EmailField(source="ticket.customer_email")
        price = PriceSerializer(source="ticket")
        booking_id = serializers.CharField(source="ticket.booking_id")
        receipt = ReceiptSerializer(allow_null=True, help_text="null until a receipt is issued.")
        tasks = TaskSerializer(many=True, help_text="Every outbox task the ticket caused, by id.")

        class Meta:
            ref_name = "TicketDetail"

    @extend_schema(
        operation_id="ticket_detail",
        summary="A ticket, its receipt and its outbox tasks",
        responses={
            200: OutputSerializer,
            400: ErrorSerializer,
            404: ErrorSerializer,
            **AUTH_ERRORS,
        },
        tags=["operators"],
    )
    def get(self, request: Request, ticket_id: str) -> Response:
        # The webhook's rule: an id no ticket can have is a 400 before any query (a NUL
        # would otherwise reach PostgreSQL and fail as a 500).
        if (reason := ticket_id_error(ticket_id)) is not None:
            return invalid_request([{"field": "ticket_id", "message": reason}])
        detail = ticket_detail(ticket_id)
        if detail is None:
            return not_found(f"there is no ticket {ticket_id!r}")
        return Response(self.OutputSerializer(detail).data)
