"""One keep-alive `requests.Session` per thread, for the workshop's HTTP clients.

A session is not safe to share between threads, and a new one per call would open a new
connection per call: each thread keeps its own, for as long as the thread lives.
"""

from __future__ import annotations

import threading

import requests

_local = threading.local()


def thread_session() -> requests.Session:
    """This thread's session, made on first use."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session
