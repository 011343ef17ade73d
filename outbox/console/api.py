"""The operators' read API of the outbox: a staff user's token, whatever the global defaults.

The project's DRF defaults are unauthenticated (the seller's webhook is, by contract), so
every view here names its authentication and permission classes itself. Being staff is not
enough: each read needs the model's `view_*` permission, as the admin's changelist does.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.permissions import DjangoModelPermissions, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from outbox.history import history, task_with_history
from outbox.models import Attempt, AttemptOutcome, Queue, Task, TaskState
from outbox.tracing import trace_id_of


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


class DjangoModelViewPermissions(DjangoModelPermissions):
    """DjangoModelPermissions with reads guarded too: GET needs `<app>.view_<model>`.

    DRF's own class lets any authenticated user read; here a staff user without the view
    permission is refused, and the 403 names the permission that is missing.
    """

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not super().has_permission(request, view):
            queryset = self._queryset(view)
            missing = [
                perm
                for perm in self.get_required_permissions(request.method or "GET", queryset.model)
                if request.user is None or not request.user.has_perm(perm)
            ]
            self.message = f"this needs the permission {', '.join(missing)}"
            return False
        return True


class StaffApiView(APIView):
    """A view for staff users presenting `Authorization: Token <key>`, with the model's
    `view_*` permission (`queryset` names the model).

    TokenAuthentication is the first (only) authenticator, so DRF answers an anonymous
    request 401 with a `WWW-Authenticate: Token` header; a valid token of a user who is not
    staff, or lacks the view permission, gets 403.
    """

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAdminUser, DjangoModelViewPermissions]


def not_found(message: str) -> Response:
    return Response({"error": message}, status=status.HTTP_404_NOT_FOUND)


class _History(serializers.ListSerializer):
    """A task's tries as `outbox.history` reads them: the success kept on its row included."""

    def get_attribute(self, instance: Task) -> list[Attempt]:
        return history(instance)


class TaskDetailApi(StaffApiView):
    """GET /api/tasks/{id}: one task, its state and every attempt so far."""

    # Names the model whose view permission is needed (outbox.view_task); never evaluated.
    queryset = Task.objects.none()

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
                list_serializer_class = _History

        id = serializers.IntegerField()
        kind = serializers.CharField()
        state = serializers.ChoiceField(choices=TaskState.choices)
        queue = serializers.ChoiceField(choices=Queue.choices)
        attempts = serializers.IntegerField(help_text="Attempts made so far.")
        max_attempts = serializers.IntegerField()
        last_error = serializers.CharField()
        result = serializers.JSONField(allow_null=True)
        correlation_id = serializers.CharField()
        trace_id = serializers.SerializerMethodField(
            help_text="The W3C trace id of the request that caused the task (or of the "
            "operator's retry since), as a tracing backend searches it; null when it was "
            "enqueued without tracing."
        )
        created_at = serializers.DateTimeField()
        available_at = serializers.DateTimeField()
        finished_at = serializers.DateTimeField(allow_null=True)
        attempt_history = AttemptSerializer(
            many=True,
            source="pk",
            help_text="One entry per try, in the order they happened.",
        )

        class Meta:
            ref_name = "TaskDetail"

        @extend_schema_field(serializers.CharField(allow_null=True))
        def get_trace_id(self, task: Task) -> str | None:
            return trace_id_of(task.trace_context)

    @extend_schema(
        operation_id="task_detail",
        summary="A task and its attempts",
        responses={200: OutputSerializer, 404: ErrorSerializer, **AUTH_ERRORS},
        tags=["operators"],
    )
    def get(self, request: Request, task_id: int) -> Response:
        task = task_with_history(task_id)
        if task is None:
            return not_found(f"there is no task {task_id}")
        return Response(self.OutputSerializer(task).data)
