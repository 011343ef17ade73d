"""The benchmark: its footprint counts the cluster's processes; it starts on a scratch database."""

from __future__ import annotations

import os
import subprocess
import sys

from devtools.benchmark import process_tree, pss_kib


def test_the_process_tree_holds_a_child_and_not_the_parent():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = process_tree(os.getpid())

        assert tree[0] == os.getpid()
        assert child.pid in tree
        assert os.getppid() not in tree
        assert pss_kib(child.pid) > 0
    finally:
        child.kill()
        child.wait()


def test_the_benchmark_runs_on_its_scratch_database_when_the_default_one_is_not_migrated(
    tmp_path,
):
    # A fresh checkout: the default SQLite file has no tables. The benchmark migrates the
    # database it is pointed at and must not refuse to start because of the other one.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "DEBUG": "1",
        "ENV_FILE": "",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'default.sqlite3'}",
    }
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "outbox_benchmark",
            "--database-url",
            f"sqlite:///{tmp_path / 'scratch.sqlite3'}",
            "--only",
            "d",
            "--enqueue-tasks",
            "200",
            "--no-write",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "(d) enqueue, 100 tasks per transaction" in done.stdout
