"""The built wheel: without the workshop, with every template, serving the admin when installed.

A checkout finds templates and apps beside the code whatever the packaging says; an installed
wheel finds only what it carries. So the wheel is built, installed (not editable) into a fresh
virtualenv and run from a directory outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("project", "outbox", "tickets")
LEFT_OUT = {".git", ".venv", "var", "build", "tests", "__pycache__", ".pytest_cache"}

pytestmark = pytest.mark.e2e

# Run inside the fresh virtualenv: migrate, make a superuser and a ticket, fetch the pages.
SMOKE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import django

    django.setup()

    import outbox
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from outbox.models import Task, TaskState
    from tickets.models import Ticket

    venv = Path(sys.prefix).resolve()
    assert venv in Path(outbox.__file__).resolve().parents, f"not the wheel: {outbox.__file__}"
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("admin", "admin@example.com", "secret")
    ticket = Ticket.objects.create(
        ticket_id="t-1", status="confirmed", customer_email="c@example.com", price_amount="5.00"
    )
    task = Task.objects.create(kind="wheel.smoke", state=TaskState.SUCCEEDED, attempts=1)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    pages = {
        "home": client.get("/"),
        "dashboard": client.get(reverse("admin:outbox_task_dashboard")),
        "task list": client.get(reverse("admin:outbox_task_changelist")),
        "rerun confirmation": client.post(
            reverse("admin:outbox_task_changelist"),
            {"action": "rerun_succeeded", "_selected_action": [task.pk], "index": 0},
        ),
        "ticket": client.get(reverse("admin:tickets_ticket_change", args=[ticket.pk])),
    }
    for name, response in pages.items():
        print(name, response.status_code)
    # The site-wide templates come from the wheel's templates/, not from a checkout.
    from django.template.loader import get_template, render_to_string

    print("404 page", "There is no page at <code>/nowhere</code>" in render_to_string(
        "404.html", {"request_path": "/nowhere"}
    ))
    print("500 page", "Server error" in render_to_string("500.html"))
    print("admin header", b'<a href="/admin/">Tickets outbox</a>' in pages["dashboard"].content)
    print("from the wheel", venv in Path(get_template("home.html").origin.name).resolve().parents)
    """
)


def build_wheel(into: Path) -> Path:
    # From a copy: building in the checkout would leave build/ and *.egg-info behind.
    source = into / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=lambda _dir, names: {n for n in names if n in LEFT_OUT or n.endswith(".egg-info")},
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(into), "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    [wheel] = into.glob("*.whl")
    return wheel


def templates_in_checkout() -> set[str]:
    """The apps' templates and the site-wide ones in the top-level templates/."""
    return {
        str(path.relative_to(ROOT))
        for folder in (*PACKAGES, "templates")
        for path in (ROOT / folder).glob("**/*.html")
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_leaves_the_workshop_out(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()

    assert [name for name in names if name.startswith("devtools/")] == []
    assert "tickets/fake_gateway.py" not in names


def test_the_wheel_carries_every_template_the_apps_render(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = templates_in_checkout()

    assert "outbox/console/templates/admin/outbox/task/dashboard.html" in templates
    assert "tickets/templates/admin/tickets/ticket/outbox_tasks.html" in templates
    assert {"templates/home.html", "templates/404.html", "templates/500.html"} <= templates
    assert "templates/admin/base_site.html" in templates
    assert templates - names == set()


def test_the_installed_wheel_serves_the_admin_pages(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies come from this test's environment, after the wheel's own directory. A
    # plain path line: the .pth files there (the checkout's editable install) are not run.
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            purelib,
            wheel,
        ],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "DATABASE_URL", "VIRTUAL_ENV"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DEBUG="1",
        ENV_FILE="",
        DATABASE_URL=f"sqlite:///{elsewhere / 'db.sqlite3'}",
    )

    run = subprocess.run(
        [python, "-c", SMOKE], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == [
        "home 200",
        "dashboard 200",
        "task list 200",
        "rerun confirmation 200",
        "ticket 200",
        "404 page True",
        "500 page True",
        "admin header True",
        "from the wheel True",
    ]
