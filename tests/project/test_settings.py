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
    mask_url,
)

PASSWORD = "Tr0ub4dor-s3cret"


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


# A bad DATABASE_URL is quoted so the operator sees which value is wrong; the password in it
# is not. Each URL below is wrong in a way that used to echo it whole.
BAD_DATABASE_URLS = [
    pytest.param(f"mysql://app:{PASSWORD}@db.example/tickets", id="unsupported-scheme"),
    pytest.param(f"postgres://app:{PASSWORD}@db.example:port/tickets", id="port-not-a-number"),
    # '#' unencoded: urlsplit reads the password's first part as the port and the rest as a
    # fragment, and the parser's message quoted that part.
    pytest.param(f"postgres://app:{PASSWORD[:4]}#{PASSWORD[4:]}@db/tickets", id="unencoded-hash"),
    pytest.param(f"postgres://app:{PASSWORD}@[db.example/tickets", id="unbalanced-bracket"),
    pytest.param(f"redis://db.example/0?password={PASSWORD}", id="password-in-the-query"),
]


def _password_parts(url: str) -> list[str]:
    # The password and each piece of it a parser could split off (at '#').
    return [PASSWORD, PASSWORD[:4], PASSWORD[4:]] if "#" in url else [PASSWORD]


@pytest.mark.parametrize("url", BAD_DATABASE_URLS)
def test_a_bad_database_url_is_reported_on_one_line_with_its_password_masked(url):
    with pytest.raises(ImproperlyConfigured) as raised:
        database_from_url(url)

    message = str(raised.value)
    assert message.startswith("DATABASE_URL=")
    assert "\n" not in message
    assert "***" in message
    for part in _password_parts(url):
        assert part not in message


@pytest.mark.parametrize("url", BAD_DATABASE_URLS)
def test_the_start_up_error_of_a_bad_database_url_never_shows_its_password(url):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "1", "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "Configuration error: DATABASE_URL=" in result.stderr
    for part in _password_parts(url):
        assert part not in result.stdout + result.stderr


def test_a_database_that_does_not_answer_logs_no_password():
    # Port 9 (discard) refuses the connection: the driver's error and Django's log of it
    # name the host and port, never the password.
    url = f"postgres://app:{PASSWORD}@127.0.0.1:9/tickets"
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "1", "DATABASE_URL": url, "LOG_LEVEL": "DEBUG"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "127.0.0.1" in result.stderr  # the error was printed, and it is the connection's
    assert PASSWORD not in result.stdout + result.stderr


def manage(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "1", "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", [["outbox_status"], ["migrate", "--noinput"]])
def test_a_command_against_a_database_that_refuses_it_says_so_in_one_line(command):
    # Before, it waited out the pool's 30 s (twice) and printed a traceback.
    url = f"postgres://app:{PASSWORD}@127.0.0.1:9/tickets"

    result = manage(*command, url=url)

    assert result.returncode == 4
    assert result.stderr.splitlines() == [
        "Cannot connect to the database in DATABASE_URL (postgres://app:***@127.0.0.1:9/tickets): "
        'connection to server at "127.0.0.1", port 9 failed: Connection refused'
    ]
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["outbox_status", "qcluster"])
def test_a_database_that_does_not_exist_stops_even_the_cluster_at_start(command):
    # A service rides out a database that does not answer yet; a missing database will not
    # appear by itself: the cluster says so and exits instead of retrying forever.
    url = f"postgres://postgres:{PASSWORD}@127.0.0.1:5432/outbox_no_such_database"

    result = manage(command, url=url)

    assert result.returncode == 4
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "Cannot connect to the database in DATABASE_URL "
        "(postgres://postgres:***@127.0.0.1:5432/outbox_no_such_database): "
    )
    assert 'database "outbox_no_such_database" does not exist' in line
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgres://app:pw@db:5432/t", "postgres://app:***@db:5432/t"),
        ("postgres://app:p@ss/w#rd@db/t", "postgres://app:***@db/t"),
        ("postgres://app@db/t", "postgres://app@db/t"),
        ("sqlite:///var/db.sqlite3", "sqlite:///var/db.sqlite3"),
        (
            "postgres://db/t?sslmode=require&password=pw",
            "postgres://db/t?sslmode=require&password=***",
        ),
        ("http://gateway:8081", "http://gateway:8081"),
    ],
)
def test_mask_url_hides_the_password_and_keeps_the_rest(url, masked):
    assert mask_url(url) == masked


def test_without_debug_a_database_url_is_required():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "0", "SECRET_KEY": "x" * 60},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "Configuration error: DATABASE_URL must be set when DEBUG is off" in result.stderr


def test_with_debug_the_database_defaults_to_the_development_sqlite_file():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.DATABASES['default']['NAME'])",
        ],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.strip() == str(BASE_DIR / "db.sqlite3")


def test_a_gateway_url_with_credentials_is_refused_without_quoting_them(monkeypatch):
    monkeypatch.setenv("GATEWAY", f"ftp://user:{PASSWORD}@gateway")

    with pytest.raises(ImproperlyConfigured) as raised:
        env_url("GATEWAY", "")

    assert PASSWORD not in str(raised.value)


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


def test_the_benchmark_checks_the_database_it_is_pointed_at_not_the_environments(tmp_path):
    # DATABASE_URL names a database that refuses; --database-url another one. The command runs
    # itself again with the second in DATABASE_URL, so only that one may stop it.
    scratch = f"sqlite:///{tmp_path / 'bench.sqlite3'}"

    result = manage(
        "outbox_benchmark",
        "--database-url",
        scratch,
        "--only",
        "zz",
        url=f"postgres://app:{PASSWORD}@127.0.0.1:9/tickets",
    )

    assert result.returncode == 1
    assert "Cannot connect" not in result.stderr
    assert "--only takes figures among a-p" in result.stderr
