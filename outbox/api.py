"""The operators' read API of the outbox: a staff user's token, whatever the global defaults.

The project's DRF defaults are unauthenticated (the seller's webhook is, by contract), so
every view here names its authentication and permission classes itself.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from outbox.models import AttemptOutcome, Queue, TaskState
from outbox.selectors import task_with_attempts


class ApiTokenRefused(Exception):
    """The user cannot have an API token: missing, inactive or not staff."""


def api_token_issue(*, username: str) -> Token:
    """The API token of a staff user, created on first use; the same key every time after."""
    user_model = get_user_model()
    try:
        user = user_model._default_manager.get_by_natural_key(username)
    except user_model.DoesNotExist:
        raise ApiTokenRefused(f"there is no user named {username!r}") from None
    if not user.is_active:
        raise ApiTokenRefused(f"user {username!r} is not active")
    if not user.is_staff:
        raise ApiTokenRefused(f"user {username!r} is not staff: only staff users may use the API")
    token, _ = Token.objects.get_or_create(user=user)
    return token


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()

    class Meta:
        ref_name = "Error"


# What a protected view may answer besides its own 200 and 404.
AUTH_ERRORS = {
    401: ErrorSerializer,
    403: ErrorSerializer,
}


class StaffApiView(APIView):
    """A view for staff users presenting `Authorization: Token <key>`.

    TokenAuthentication is the first (only) authenticator, so DRF answers an anonymous
    request 401 with a `WWW-Authenticate: Token` header; a valid token of a user who is not
    staff gets 403.
    """

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAdminUser]


def not_found(message: str) -> Response:
    return Response({"error": message}, status=status.HTTP_404_NOT_FOUND)


class TaskDetailApi(StaffApiView):
    """GET /api/tasks/{id}: one task, its state and every attempt so far."""

    class OutputSerializer(serializers.Serializer):
        class AttemptSerializer(serializers.Serializer):
            number = serializers.IntegerField()
            started_at = serializers.DateTimeField()
            duration_ms = serializers.FloatField()
            outcome = serializers.ChoiceField(choices=AttemptOutcome.choices)
            http_status = serializers.IntegerField(allow_null=True)
            error = serializers.CharField()

            class Meta:
                ref_name = "TaskAttempt"

        id = serializers.IntegerField()
        kind = serializers.CharField()
        state = serializers.ChoiceField(choices=TaskState.choices)
        queue = serializers.ChoiceField(choices=Queue.choices)
        attempts = serializers.IntegerField(help_text="Attempts made so far.")
        max_attempts = serializers.IntegerField()
        last_error = serializers.CharField()
        result = serializers.JSONField(allow_null=True)
        correlation_id = serializers.CharField()
        created_at = serializers.DateTimeField()
        available_at = serializers.DateTimeField()
        finished_at = serializers.DateTimeField(allow_null=True)
        attempt_history = AttemptSerializer(
            many=True,
            source="attempt_set.all",
            help_text="One entry per try, in the order they happened.",
        )

        class Meta:
            ref_name = "TaskDetail"

    @extend_schema(
        operation_id="task_detail",
        summary="A task and its attempts",
        responses={200: OutputSerializer, 404: ErrorSerializer, **AUTH_ERRORS},
        tags=["operators"],
    )
    def get(self, request: Request, task_id: int) -> Response:
        task = task_with_attempts(task_id)
        if task is None:
            return not_found(f"there is no task {task_id}")
        return Response(self.OutputSerializer(task).data)
