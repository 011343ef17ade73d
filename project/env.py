"""The settings' readers of the environment: each fails with one line naming the variable.

Also the development `.env` loader (`load_env_file`), and the rule that keeps a development
file from switching production off (`refuse_debug_from_file`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false.")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, default).strip().lower()
    if raw not in choices:
        raise ImproperlyConfigured(f"{name}={raw!r} must be one of {', '.join(choices)}.")
    return raw


# `scheme://user:password@`: everything between the first ':' after the scheme and the last
# '@' of the authority is the password, whatever it holds (an unencoded '/', '#' or '@' even
# makes urlsplit read part of it as the host, port or path, so the mask works on the text).
_USERINFO = re.compile(r"^(?P<head>[^:/?#]*://[^:@]*:)(?P<password>.*)@", re.DOTALL)
_SECRET_QUERY = re.compile(r"(?i)((?:pass|password|secret|token|key)[^=&]*=)[^&]*")
MASK = "***"


def mask_url(url: str) -> str:
    """The URL with its password (and any password-like query value) replaced by ***.

    Configuration errors quote the URL so the operator sees which value is wrong; they
    must never quote the secret in it (docs/SECURITY.md).
    """
    masked = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", url, count=1)
    return _SECRET_QUERY.sub(lambda m: f"{m[1]}{MASK}", masked)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def env_log_level(name: str, default: str) -> str:
    raw = os.environ.get(name, default)
    if raw.strip().upper() not in LOG_LEVELS:
        raise ImproperlyConfigured(f"{name}={raw!r} must be one of {', '.join(LOG_LEVELS)}.")
    return raw.strip().upper()


def load_env_file(path: Path) -> set[str]:
    """Development settings from the `.env` file ENV_FILE names; the names it set.

    Read only when ENV_FILE names it (scripts/serve.sh exports it for its processes): a `.env`
    that merely lies in the directory, baked into an image say, is never read. The real
    environment wins, variable by variable; and the file is not read at all when the real
    environment says DEBUG is off, so a production process never picks up a development key.
    """
    if not path.is_file():
        raise ImproperlyConfigured(
            f"ENV_FILE={str(path)!r} is not a file; unset ENV_FILE to read none."
        )
    if os.environ.get("DEBUG", "1").strip().lower() in _FALSE:
        return set()
    found: set[str] = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ImproperlyConfigured(f"{path}:{number}: {line!r} is not NAME=value.")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name not in os.environ:
            os.environ[name] = value
            found.add(name)
    return found


def is_loopback_host(host: str) -> bool:
    """An ALLOWED_HOSTS entry that only this machine can reach: localhost, 127.0.0.0/8, ::1."""
    name = host.strip().lower().lstrip(".")  # `.localhost`: the name and its subdomains
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:  # another name, or `*`
        return False


def refuse_debug_from_file(
    *, debug: bool, allowed_hosts: list[str], from_file: set[str], env_file: str
) -> None:
    """A development file may turn DEBUG on only for a service that answers this machine alone.

    DEBUG=1 from the real environment is the operator's explicit choice and stays allowed.
    """
    public = [host for host in allowed_hosts if not is_loopback_host(host)]
    if debug and "DEBUG" in from_file and public:
        raise ImproperlyConfigured(
            f"DEBUG=1 came from ENV_FILE={env_file!r}, a development file, while ALLOWED_HOSTS "
            f"names {public[0]!r}: set DEBUG in the real environment, or unset ENV_FILE."
        )
