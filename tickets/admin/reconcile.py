"""The reconcile's pages: the last runs, and each run's drift items (filter by kind and state)
linked to their ticket and tasks, with the two things an accountant does about them: fix a
missing effect (its task enqueued through its own keys), acknowledge a row corrected by hand,
with a note. Both go through tickets.reconcile's services and into the admin's history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from outbox.console.admin_mixins import ReadOnlyMixin, pretty_json
from tickets.models import FIXABLE_KINDS, DriftItem, DriftKind, ReconcileRun
from tickets.reconcile import CannotFix, drift_acknowledge, drift_fix


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    # What an accountant scans the list for; the trigger, rows read and duration are on the
    # run's page (the list must fit a laptop's 1366 px with the filter column open).
    list_display = (
        "__str__",
        "status",
        "by",
        "scope",
        "tickets_checked",
        "drift_open",
        "items_link",
    )
    list_filter = ("status", "trigger")
    ordering = ("-started_at", "-pk")
    fields = (
        "status",
        "error",
        "by",
        "trigger",
        "started_at",
        "finished_at",
        "seconds",
        "scope",
        "tickets_checked",
        "rows_read",
        "drift_open",
        "counts_by_kind",
        "items_link",
        "notes_list",
    )
    readonly_fields = fields

    @admin.display(description="scope")
    def scope(self, run: ReconcileRun) -> str:
        if run.ticket_ids:
            return f"{len(run.ticket_ids)} ticket(s): {', '.join(run.ticket_ids[:5])}"
        since = run.since.strftime("%Y-%m-%d %H:%M") if run.since else "start"
        until = run.until.strftime("%Y-%m-%d %H:%M") if run.until else "now"
        return f"{since} to {until}"

    @admin.display(description="items")
    def items_link(self, run: ReconcileRun) -> SafeString:
        url = reverse("admin:tickets_driftitem_changelist")
        return format_html('<a href="{}?run__id__exact={}">drift items</a>', url, run.pk)

    @admin.display(description="by kind")
    def counts_by_kind(self, run: ReconcileRun) -> SafeString | str:
        if not run.counts:
            return "no drift"
        labels = dict(DriftKind.choices)
        url = reverse("admin:tickets_driftitem_changelist")
        return format_html_join(
            ", ",
            '<a href="{}?run__id__exact={}&kind__exact={}">{}: {}</a>',
            (
                (url, run.pk, kind, labels.get(kind, kind), n)
                for kind, n in sorted(run.counts.items())
            ),
        )

    @admin.display(description="notes")
    def notes_list(self, run: ReconcileRun) -> SafeString:
        return format_html_join("", "<p>{}</p>", ((note,) for note in run.notes))


@admin.register(DriftItem)
class DriftItemAdmin(ReadOnlyMixin, admin.ModelAdmin):
    # The run is the filter the run's page links with, and the summary names the sheet: both
    # stay on the item's page, so the list fits a laptop's 1366 px with the filters open.
    list_display = (
        "id",
        "kind",
        "state",
        "ticket_link",
        "customer_email",
        "money",
        "summary",
        "task_links",
    )
    list_filter = ("kind", "state", "run")
    list_select_related = ("run",)
    search_fields = ("seller_ticket_id__exact",)
    search_help_text = "Ticket id (whole value)."
    ordering = ("-run_id", "pk")
    actions = ("fix_missing", "acknowledge")
    fields = (
        "run",
        "kind",
        "state",
        "ticket_link",
        "customer_email",
        "money",
        "effect",
        "summary",
        "task_links",
        "evidence_pretty",
        "handled_by",
        "handled_at",
        "note",
    )
    readonly_fields = fields

    def has_fix_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tickets.fix_driftitem")

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tickets.acknowledge_driftitem")

    @admin.display(description="ticket")
    def ticket_link(self, item: DriftItem) -> SafeString | str:
        if item.ticket_id is None:
            return f"{item.seller_ticket_id} (not ours)"
        url = reverse("admin:tickets_ticket_change", args=[item.ticket_id])
        return format_html('<a href="{}">{}</a>', url, item.seller_ticket_id)

    @admin.display(description="amount")
    def money(self, item: DriftItem) -> str:
        return "-" if item.amount is None else f"{item.amount:.2f} {item.currency}"

    @admin.display(description="tasks")
    def task_links(self, item: DriftItem) -> SafeString | str:
        ids = [*item.task_ids, *([item.fix_task_id] if item.fix_task_id else [])]
        if not ids:
            return "-"
        return format_html_join(
            " ",
            '<a href="{}">#{}</a>',
            ((reverse("admin:outbox_task_change", args=[i]), i) for i in dict.fromkeys(ids)),
        )

    @admin.display(description="evidence")
    def evidence_pretty(self, item: DriftItem) -> SafeString:
        return pretty_json(item.evidence)

    @admin.action(description="Fix: enqueue the missing effect's task", permissions=["fix"])
    def fix_missing(self, request: HttpRequest, queryset: QuerySet[DriftItem]) -> None:
        ids = list(
            queryset.filter(state=DriftItem.State.OPEN, kind__in=FIXABLE_KINDS)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        by = request.user.get_username()
        done, refused = [], []
        for item_id in ids:
            try:
                done.append(drift_fix(item_id=item_id, by=by))
            except CannotFix as exc:
                refused.append(str(exc))
        left = queryset.count() - len(done)
        message = f"{_plural(len(done), 'missing effect')} fixed: " + (
            "; ".join(f"#{o.item_id} {o.done}" for o in done[:10]) or "none"
        )
        if left:
            message += (
                f". {_plural(left, 'selected item')} left as they were (not an open missing "
                "effect: rows are corrected by hand, then acknowledged)"
            )
        self.message_user(request, message, messages.SUCCESS if done else messages.WARNING)
        for problem in refused[:5]:
            self.message_user(request, problem, messages.ERROR)

    @admin.action(description="Acknowledge with a note…", permissions=["acknowledge"])
    def acknowledge(
        self, request: HttpRequest, queryset: QuerySet[DriftItem]
    ) -> TemplateResponse | None:
        open_items = queryset.filter(state=DriftItem.State.OPEN).order_by("pk")
        note = request.POST.get("note", "").strip()
        if request.POST.get("post") != "yes" or not note:
            context: dict[str, Any] = {
                **self.admin_site.each_context(request),
                "title": "Acknowledge drift items",
                "opts": self.opts,
                "items": open_items[:100],
                "count": open_items.count(),
                "missing_note": request.POST.get("post") == "yes",
                "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/tickets/driftitem/acknowledge_confirmation.html", context
            )
        by = request.user.get_username()
        count = 0
        for item_id in list(open_items.values_list("pk", flat=True)):
            try:
                drift_acknowledge(item_id=item_id, by=by, note=note)
                count += 1
            except CannotFix as exc:
                self.message_user(request, str(exc), messages.ERROR)
        self.message_user(
            request,
            f"{_plural(count, 'drift item')} acknowledged.",
            messages.SUCCESS if count else messages.WARNING,
        )
        return None
