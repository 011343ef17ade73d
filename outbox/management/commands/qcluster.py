"""django-q2's `qcluster`, plus a shutdown event every relay pass of this cluster can see."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from django.conf import settings
from django.core.checks import Tags
from django.core.checks.registry import registry
from django.db import DatabaseError
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as QClusterCommand

from outbox import preflight
from outbox.runtime import shutdown
from outbox.runtime.passes import ensure_schedules, keep_passes_alive

logger = logging.getLogger("outbox.relay")

# The checks of what only the web serves: the URLconf (importing it imports every view, the API
# and its schema), the templates and the admin (whose checks load every template tag library
# of every app), about 0.2 s of each start. `migrate` and `check` run them; the cluster runs
# the rest, the relay's own (`outbox`) and the database's included.
NOT_CHECKED_BY_THE_CLUSTER = frozenset({Tags.urls, Tags.templates, Tags.admin})


class Command(QClusterCommand):
    help = (
        "Starts a django-q2 cluster that also runs the outbox relay. On SIGTERM or SIGINT its "
        "relay passes stop claiming, finish their running attempts and give back the rest; a "
        "second signal, or OUTBOX_STOP_GRACE_SECONDS running out, stops it at once."
    )

    def get_check_kwargs(self, options: dict[str, Any]) -> dict[str, Any]:
        # By tag: an untagged check would not run (Django runs only tagged ones when given
        # tags), so the relay's own checks carry the `outbox` tag.
        tags = sorted(set(registry.tags_available()) - NOT_CHECKED_BY_THE_CLUSTER)
        return {"tags": tags}

    def handle(self, *args: Any, **options: Any) -> None:
        settings.SECRET_KEY  # noqa: B018  (fail before forking when settings are broken)
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        # Schedules deleted in the admin come back before the scheduler first reads them.
        try:
            ensure_schedules()
        except DatabaseError:
            # Not fatal: the cluster retries its database; outbox.W001 keeps saying so.
            logger.exception("could not check the relay's django-q2 schedules")
        # The first pass goes on the broker before the pusher starts, so its first read takes
        # it: queued from the workers' post_spawn hook (which stays, for a restarted worker),
        # it waited for the pusher's next poll, a tenth of a second of every start.
        try:
            keep_passes_alive()
        except DatabaseError:
            logger.exception("could not queue the first relay pass; the workers try again")
        # What is loaded so far (Django, the apps, their imports) is shared with every forked
        # process. The garbage collector of a worker walking those objects would write to their
        # pages and copy them, about 25 MiB per worker after its first pass; frozen, the
        # collector leaves them alone (the `gc.freeze()` recipe of the gc module's docs).
        gc.collect()  # what is garbage now would otherwise be frozen in every process
        gc.freeze()
        cluster = Cluster()  # installs django-q2's own signal handlers
        # ... which ours now run after setting the event
        shutdown.install(grace_seconds=settings.OUTBOX_STOP_GRACE_SECONDS)
        cluster.start()
        # After the fork (a thread running across it could leave a lock held in the child):
        # the main process only waits from here on.
        preflight.run()
        if options.get("run_once", False):
            cluster.stop()
