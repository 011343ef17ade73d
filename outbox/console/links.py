"""Links other apps register so the console can point at their pages.

A task's page links its subject (a ticket, say) to the domain's own page; the dashboard gets a
search box per registered search and a link per registered page; the task list's search asks
the domain which tasks a term names. The domain registers them in its AppConfig.ready(); the
engine never sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

# Where an operator reads about a task's subject (a ticket's admin page, say): given a kind
# and its subject value, a URL or None. The domain registers it; the engine only links it.
SubjectUrl = Callable[[str, str], "str | None"]
_subject_urls: list[SubjectUrl] = []


def register_subject_url(func: SubjectUrl) -> SubjectUrl:
    """Register `func(kind, subject) -> url | None`; the task page links the subject there."""
    if func not in _subject_urls:
        _subject_urls.append(func)
    return func


def subject_url(kind: str, subject: str) -> str | None:
    """The first URL a registered function gives for this subject, or None."""
    for func in _subject_urls:
        url = func(kind, subject)
        if url:
            return url
    return None


# Where the dashboard's search box sends its words (`?q=`): the domain's own list, named by a
# label ("tickets") and a function giving its URL, resolved when the page renders.
SearchUrl = Callable[[], str]
_search_urls: dict[str, SearchUrl] = {}


def register_search_url(label: str, func: SearchUrl) -> SearchUrl:
    """Register a search box on the dashboard: `func()` is the URL its `?q=` is sent to."""
    _search_urls[label] = func
    return func


def search_urls() -> list[tuple[str, str]]:
    """(label, URL) of every registered search, in the order they were registered."""
    return [(label, func()) for label, func in _search_urls.items()]


# Pages of the domain the dashboard links to (the accountants' totals, say), by label.
_dashboard_links: dict[str, SearchUrl] = {}


def register_dashboard_link(label: str, func: SearchUrl) -> SearchUrl:
    """Register a link on the dashboard: `label` shown, `func()` its URL."""
    _dashboard_links[label] = func
    return func


def dashboard_links() -> list[tuple[str, str]]:
    """(label, URL) of every registered dashboard link, in the order they were registered."""
    return [(label, func()) for label, func in _dashboard_links.items()]


@dataclass(frozen=True, slots=True)
class DashboardNote:
    """A line the domain puts on the dashboard ("Last reconcile: ..."); `alarm` shows it red."""

    text: str
    url: str | None = None
    alarm: bool = False


# A function giving the note to show now, or None for none; resolved when the page renders.
NoteSource = Callable[[], "DashboardNote | None"]
_dashboard_notes: list[NoteSource] = []


def register_dashboard_note(func: NoteSource) -> NoteSource:
    """Register `func() -> DashboardNote | None`, shown on the dashboard."""
    if func not in _dashboard_notes:
        _dashboard_notes.append(func)
    return func


def dashboard_notes() -> list[DashboardNote]:
    return [note for note in (func() for func in _dashboard_notes) if note is not None]


# A check `outbox_status --check` runs beside its thresholds: None when it holds, else what is
# wrong. The domain decides (from its own settings) whether its check may fail at all.
StatusCheck = Callable[[], "str | None"]
_status_checks: dict[str, StatusCheck] = {}


def register_status_check(name: str, func: StatusCheck) -> StatusCheck:
    """Register `func() -> problem | None` as the check `name` of `outbox_status --check`."""
    _status_checks[name] = func
    return func


def status_checks() -> list[tuple[str, str | None]]:
    """(name, problem or None) of every registered check, in the order registered."""
    return [(name, func()) for name, func in _status_checks.items()]


# What a search term names, in the domain's own words: the dedupe keys of the tasks a term
# stands for (a ticket id, a customer's email), found by the domain on its own indexes, or
# None when the domain does not know the term. The task list then matches those keys on the
# unique `dedupe_key` index instead of scanning every task's payload, and the task table
# carries no search index of its own: each would take an entry from every claim and outcome.
TaskSearch = Callable[[str], "Iterable[str] | None"]
_task_searches: list[TaskSearch] = []


def register_task_search(func: TaskSearch) -> TaskSearch:
    """Register `func(term) -> dedupe keys | None` for the task list's search box."""
    if func not in _task_searches:
        _task_searches.append(func)
    return func


def task_search_keys(term: str) -> list[str] | None:
    """The dedupe keys every registered search gives for `term`; None when none knows it."""
    keys: list[str] | None = None
    for func in _task_searches:
        found = func(term)
        if found is not None:
            keys = [*(keys or []), *found]
    return keys
