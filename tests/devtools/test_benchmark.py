"""The benchmark's footprint figure counts every process of the cluster, and only those."""

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
