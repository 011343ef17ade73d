"""Figure (p): a seller's mixed load on real processes, the relay's CPU per API call.

The fake gateway without failures, gunicorn as scripts/serve.sh runs it (2 workers, 4 threads),
one `qcluster` and locust's 20 users (devtools/benchmark/locustfile.py) posting signed webhooks
of 1-5 tickets, 10% of them repeats, 5% refunds and 5% reads of the ticket list. Three loads of
the same length, in one run: the plain one-INSERT view (the baseline), the mixed load without a
cluster, then with one. The cluster's CPU is its whole process tree's (/proc: utime + stime of
every process, and of its children already reaped), from before the loaded phase to the drain
of what it enqueued, over the API calls the gateway received meanwhile.

And where a request's CPU goes, by part, during the loads without and with the cluster: the web,
the cluster, the gateway, PostgreSQL (the backends of the benchmark's database, and the server's
own processes apart), locust, and the rest of the machine (/proc/stat's busy time less the
parts: other work, other databases' backends). On two CPUs, a request whose parts cost `c`
seconds of CPU in all caps the intake at `2 / c` requests a second.
"""

from __future__ import annotations

import base64
import csv
import os
import resource
import secrets
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from django.db import connection

from devtools.bad_day import wipe as wipe_everything
from devtools.benchmark.base import ROOT, Options, any_task_left, unfinished
from devtools.benchmark.cluster import process_tree
from devtools.benchmark.report import Report
from devtools.benchmark.web import create_plain_table, drop_plain_table
from devtools.processes import VENV_BIN, Services, child_env, wait_for
from outbox.models import RelayPass

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USERS = 20
IDLE_SECONDS = 5.0
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Load:
    requests: int
    failures: int
    per_second: float
    webhooks_per_second: float
    seconds: float


def cpu_seconds(root: int) -> float:
    """CPU time of `root`'s process tree: each live process's, and its reaped children's."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended between the listing and the read
        # Fields 14-17 of stat(5), counted from the state (field 3) here: utime, stime,
        # cutime, cstime.
        total += sum(int(value) for value in fields[11:15])
    return total / _TICKS


def _postgres_processes() -> dict[int, tuple[str, float]]:
    """Every PostgreSQL server process now: its title after `postgres: <cluster>: ` and its CPU
    seconds (a backend's title is `user database host(port) state`)."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not title.startswith("postgres: "):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parts = title.split(": ", 2)
        found[int(entry.name)] = (parts[-1], (int(fields[11]) + int(fields[12])) / _TICKS)
    return found


class PostgresSampler:
    """PostgreSQL's CPU by whose work it is: the backends of one database, the server's own
    processes (WAL writer, checkpointer, autovacuum...), and other databases' backends, which
    other work on the same server runs. Sampled every 0.2 s, so a backend that ends between
    samples loses at most its last 0.2 s."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, first: bool) -> None:
        for pid, (title, cpu) in _postgres_processes().items():
            if first:
                self._first[pid] = cpu
            self._first.setdefault(pid, 0.0)  # born since the start: all of its time counts
            self._last[pid] = (title, cpu)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample(first=False)

    def start(self) -> None:
        self._sample(first=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample(first=False)
        spent = {"ours": 0.0, "server": 0.0, "others": 0.0}
        for pid, (title, cpu) in self._last.items():
            words = title.split()
            if len(words) >= 3 and "(" in words[2]:
                part = "ours" if words[1] == self.database else "others"
            elif "autovacuum worker" in title and not title.endswith(self.database):
                part = "others"
            else:
                part = "server"
            spent[part] += cpu - self._first[pid]
        return spent


def _machine_busy() -> float:
    """The machine's busy CPU time so far, all CPUs (/proc/stat: all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS


def _children_cpu() -> float:
    """CPU time of this process's reaped children (a locust run, once it has ended)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Vacuumer:
    """What autovacuum does for a queue's tables, on a server where it is off (this machine's
    CI configuration turns it off): every second, `VACUUM` each table of the database with more
    than `DEAD_ROWS` dead rows. Without it, every claim and every update walks the dead versions
    of the rows before it, and PostgreSQL's part of the load doubles; no production server runs
    so. Its backend is one of the database's: its CPU counts in PostgreSQL's part."""

    DEAD_ROWS = 500

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.vacuums = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def needed() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            return cursor.fetchone()[0] == "off"

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stop.wait(1.0):
                rows = conn.execute(
                    "SELECT relname FROM pg_stat_user_tables WHERE n_dead_tup > %s",
                    [self.DEAD_ROWS],
                ).fetchall()
                for (table,) in rows:
                    conn.execute(f'VACUUM "{table}"')
                    self.vacuums += 1

    def __enter__(self) -> Vacuumer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Budget:
    """CPU seconds by part between `start()` and `stop()`: process trees by their root's pid,
    PostgreSQL's work for `database` (its backends and the server's own processes), locust,
    and the machine's busy time. Other databases' backends on the same server are apart."""

    def __init__(self, parts: dict[str, int], database: str | None = None) -> None:
        self.parts = parts
        self.spent: dict[str, float] = {}
        self.others = 0.0
        self._postgres = PostgresSampler(database) if database else None

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.parts.items()}
        now["locust"] = _children_cpu()
        now["machine"] = _machine_busy()
        return now

    def start(self) -> None:
        self._from = self._now()
        if self._postgres is not None:
            self._postgres.start()

    def stop(self) -> None:
        now = self._now()
        self.spent = {name: now[name] - self._from[name] for name in now}
        if self._postgres is not None:
            postgres = self._postgres.stop()
            self.spent["PostgreSQL"] = postgres["ours"]
            self.spent["PostgreSQL's own processes"] = postgres["server"]
            self.others = postgres["others"]

    def per_request(self, count: int) -> str:
        parts = {name: spent for name, spent in self.spent.items() if name != "machine"}
        shown = ", ".join(f"{name} {spent * 1000 / count:.2f}" for name, spent in parts.items())
        ours = sum(parts.values()) * 1000 / count
        rest = self.spent["machine"] * 1000 / count - ours
        cap = os.cpu_count() or 1
        return (
            f"{ours:.2f} ms of CPU a request ({shown}); the rest of the machine {rest:.2f} more "
            f"(other databases on this server {self.others * 1000 / count:.2f} of it); "
            f"{cap} CPUs at {ours:.2f} ms: at most {cap * 1000 / ours:,.0f} req/s"
        )


def gateway_calls(gateway_url: str) -> int:
    stats = requests.get(f"{gateway_url}/fake-gateway/state", params={"calls": 0}, timeout=10)
    return int(stats.json()["stats"]["calls"])


def locust(services: Services, user_class: str, seconds: int, run: str, logs: Path) -> Load:
    """Run locust headless against the web; its totals from its CSV."""
    prefix = logs / f"locust-{run}"
    env = {
        **os.environ,
        "LOAD_WEBHOOK_SECRET": services.env["WEBHOOK_SECRET"],
        "LOAD_RUN": run,
        "PYTHONPATH": str(ROOT),
    }
    with (logs / f"locust-{run}.log").open("wb") as log:
        subprocess.run(
            [str(VENV_BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "-u", str(USERS),
             "-r", str(USERS), "-t", f"{seconds}s", "--host", services.web_url, "--csv",
             str(prefix), "--only-summary", "--stop-timeout", "10", user_class],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False,
            timeout=seconds + 120,
        )  # fmt: skip
    with open(f"{prefix}_stats.csv", newline="") as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    total = rows["Aggregated"]
    webhooks = sum(
        float(row["Requests/s"]) for name, row in rows.items() if "/tickets-status" in name
    )
    return Load(
        requests=int(total["Request Count"]),
        failures=int(total["Failure Count"]),
        per_second=float(total["Requests/s"]),
        webhooks_per_second=webhooks,
        seconds=float(seconds),
    )


def _checked(load: Load, what: str) -> Load:
    if load.failures or not load.requests:
        raise RuntimeError(
            f"(p) {what}: {load.failures} of {load.requests} requests failed "
            "(var/benchmark-load/ has the logs)"
        )
    return load


def mixed_load(options: Options, report: Report) -> None:
    if connection.vendor != "postgresql":
        report.add("(p) mixed load, relay CPU per API call", "not measured", "(PostgreSQL only)")
        return
    logs = ROOT / "var" / "benchmark-load"
    logs.mkdir(parents=True, exist_ok=True)
    seconds = options.load_seconds
    wipe_everything()
    create_plain_table()
    database_url = os.environ["DATABASE_URL"]
    services = Services(logs=logs, env=child_env(database_url, None))
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    services.env["WEBHOOK_SECRET"] = f"whsec_{key}"
    web_env = {"DJANGO_SETTINGS_MODULE": "devtools.benchmark_settings"}
    run = uuid.uuid4().hex[:6]
    vacuumer: Vacuumer | None = Vacuumer(database_url) if Vacuumer.needed() else None
    if vacuumer is not None:
        vacuumer.__enter__()
    try:
        services.gateway(["--failure-rate", "0", "--fail-after-write-rate", "0"])
        services.env.update(web_env)
        services.web()
        web = services.processes[-1]
        gateway = services.processes[0]
        for name in web_env:
            del services.env[name]
        plain = _checked(locust(services, "PlainInsert", seconds, f"{run}-plain", logs), "plain")
        database = connection.settings_dict["NAME"]
        budget_alone = Budget({"web": web.pid, "gateway": gateway.pid}, database)
        budget_alone.start()
        alone = _checked(locust(services, "MixedLoad", seconds, f"{run}-alone", logs), "alone")
        budget_alone.stop()
        cluster = services.cluster("cluster")
        report.log(f"(p) cluster pid {cluster.pid}, draining the first load's backlog")
        wait_for(RelayPass.objects.exists, timeout=60, what="a relay pass to start")
        wait_for(lambda: not any_task_left(), timeout=600, what="the first backlog to drain")
        time.sleep(1.0)
        idle_from = cpu_seconds(cluster.pid)
        time.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(cluster.pid) - idle_from) / IDLE_SECONDS
        cpu_before, calls_before = cpu_seconds(cluster.pid), gateway_calls(services.gateway_url)
        web_before = cpu_seconds(web.pid)
        budget_with = Budget(
            {"web": web.pid, "cluster": cluster.pid, "gateway": gateway.pid}, database
        )
        budget_with.start()
        started = time.monotonic()
        report.log(f"(p) the load with the cluster starts ({seconds} s)")
        loaded = _checked(locust(services, "MixedLoad", seconds, f"{run}-with", logs), "with")
        budget_with.stop()
        load_cpu = cpu_seconds(cluster.pid) - cpu_before
        load_calls = gateway_calls(services.gateway_url) - calls_before
        web_cpu = cpu_seconds(web.pid) - web_before
        backlog = unfinished()
        wait_for(lambda: not any_task_left(), timeout=600, what="the load's tasks to drain")
        drained = time.monotonic() - started
        cpu = cpu_seconds(cluster.pid) - cpu_before
        calls = gateway_calls(services.gateway_url) - calls_before
    finally:
        if vacuumer is not None:
            vacuumer.__exit__()
        services.stop_all()
        drop_plain_table()
        wipe_everything()
    vacuumed = (
        "the server's autovacuum is on"
        if vacuumer is None
        else f"the server's autovacuum is off: the benchmark vacuumed {vacuumer.vacuums:,} "
        f"times a table with more than {Vacuumer.DEAD_ROWS} dead rows, checking every second"
    )
    report.add(
        "(p) mixed load: intake without a cluster, with one, plain one-INSERT view",
        f"{alone.per_second:,.0f} req/s without, {loaded.per_second:,.0f} req/s with "
        f"({loaded.per_second / alone.per_second:.0%}); plain view {plain.per_second:,.0f} req/s",
        f"(locust, {USERS} users, {seconds} s each, no failures; webhooks "
        f"{alone.webhooks_per_second:,.0f}/s and {loaded.webhooks_per_second:,.0f}/s; web's CPU "
        f"while loaded with the cluster {web_cpu / loaded.requests * 1000:.2f} ms a request)",
    )
    report.add(
        "(p) mixed load: CPU per request by part, without the cluster",
        budget_alone.per_request(alone.requests),
        f"({alone.requests:,} requests in {seconds} s; ms of CPU per request)",
    )
    report.add(
        "(p) mixed load: CPU per request by part, with the cluster",
        budget_with.per_request(loaded.requests),
        f"({loaded.requests:,} requests in {seconds} s; the cluster's share is what it spent "
        "during the load, not its drain after; " + vacuumed + ")",
    )
    intake_postgres = budget_alone.spent["PostgreSQL"] / alone.requests * loaded.requests
    relay_postgres = budget_with.spent["PostgreSQL"] - intake_postgres
    report.add(
        "(p) mixed load: PostgreSQL CPU per API call, the relay's share",
        f"{relay_postgres * 1000 / load_calls:.2f} ms",
        f"(PostgreSQL's part during the load with the cluster less the intake's, at its cost per "
        f"request without the cluster, over the {load_calls:,} API calls made meanwhile)",
    )
    report.add(
        "(p) mixed load: relay CPU per API call",
        f"{cpu * 1000 / calls:.2f} ms",
        f"({cpu:.1f} s of the cluster's CPU for {calls:,} API calls, from the load's start to "
        f"its drain in {drained:.0f} s; during the load alone {load_cpu / seconds:.0%} of a "
        f"core for {load_calls / seconds:,.0f} calls/s, {backlog:,} tasks left at its end; the "
        f"idle cluster before it {idle:.1%} of a core, so "
        f"{(cpu - idle * drained) * 1000 / calls:.2f} ms a call above idle)",
    )
