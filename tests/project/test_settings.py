from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from project.settings import (
    BASE_DIR,
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_url,
)


def test_env_bool_reads_the_usual_spellings(monkeypatch):
    for raw, expected in [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False)]:
        monkeypatch.setenv("FLAG", raw)
        assert env_bool("FLAG", not expected) is expected


def test_env_bool_refuses_anything_else_naming_the_variable(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")

    with pytest.raises(ImproperlyConfigured, match="FLAG='maybe' is not a boolean"):
        env_bool("FLAG", False)


def test_env_int_refuses_words_and_values_below_the_minimum(monkeypatch):
    monkeypatch.setenv("SIZE", "ten")
    with pytest.raises(ImproperlyConfigured, match="SIZE='ten' is not an integer"):
        env_int("SIZE", 1)

    monkeypatch.setenv("SIZE", "0")
    with pytest.raises(ImproperlyConfigured, match="SIZE=0 must be at least 1"):
        env_int("SIZE", 1, minimum=1)


def test_env_float_and_list_and_defaults(monkeypatch):
    monkeypatch.delenv("MISSING", raising=False)
    monkeypatch.setenv("RATE", "0.5")
    monkeypatch.setenv("HOSTS", " a.example , b.example ,")

    assert env_float("RATE", 1.0) == 0.5
    assert env_float("MISSING", 2.5) == 2.5
    assert env_list("HOSTS", []) == ["a.example", "b.example"]
    with pytest.raises(ImproperlyConfigured, match="is not a number"):
        monkeypatch.setenv("RATE", "fast")
        env_float("RATE", 1.0)


def test_env_url_accepts_http_urls_and_strips_the_trailing_slash(monkeypatch):
    monkeypatch.setenv("GATEWAY", "http://gateway:8080/")
    assert env_url("GATEWAY", "") == "http://gateway:8080"

    monkeypatch.setenv("GATEWAY", "gateway:8080")
    with pytest.raises(ImproperlyConfigured, match="must be an http"):
        env_url("GATEWAY", "")


def test_a_sqlite_url_gets_wal_a_busy_timeout_and_immediate_transactions(tmp_path):
    config = database_from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert config["OPTIONS"]["timeout"] >= 5
    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]


def test_a_postgres_url_gets_a_bounded_connection_pool(monkeypatch):
    monkeypatch.setenv("DATABASE_POOL_SIZE", "5")

    config = database_from_url("postgres://app:secret@db.example:5432/tickets")

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["HOST"], config["PORT"]) == ("tickets", "db.example", 5432)
    assert config["CONN_MAX_AGE"] == 0  # the pool keeps the connections
    assert config["OPTIONS"]["pool"]["max_size"] == 5


def test_an_unsupported_database_url_is_refused():
    with pytest.raises(ImproperlyConfigured, match="not supported"):
        database_from_url("mysql://root@localhost/tickets")


def test_without_debug_a_secret_key_is_required():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_a_bad_setting_stops_start_up_with_its_name():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "1", "OUTBOX_THREADS": "many"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "OUTBOX_THREADS='many' is not an integer" in result.stderr
