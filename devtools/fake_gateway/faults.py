"""What the fake gateway gets wrong on purpose: the failure-injection settings, validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

APIS = ("receipts", "payments", "spreadsheets")
MAX_LATENCY_MS = 600_000

_RATES = (
    "failure_rate",
    "fail_after_write_rate",
    "rate_limit_rate",
    "fake_success_rate",
    "redirect_rate",
)


class ConfigError(ValueError):
    """A bad failure-injection setting; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """What goes wrong, and how often. Rates are shares of API calls, from 0 to 1."""

    failure_rate: float = 0.0
    fail_after_write_rate: float = 0.0
    latency_ms: float = 0.0
    # Extra wait before a sheet append is written: the row lands after a client that gave up.
    append_latency_ms: float = 0.0
    # 5xx answers carry an HTML page with NUL and bytes that are not UTF-8, as a broken proxy's.
    garbage_bodies: bool = False
    rate_limit_rate: float = 0.0
    retry_after_seconds: int = 1
    # Writes answered by something in front of the API that did nothing: a load balancer's
    # maintenance page (200, text/html), or a 301 to another host.
    fake_success_rate: float = 0.0
    redirect_rate: float = 0.0
    # Unknown paths answer 404 with a JSON error object, as Google's APIs do, instead of a
    # web server's plain-text page: a wrong base URL then looks like an API's own answer.
    json_404s: bool = False
    down: tuple[str, ...] = ()
    seed: int | None = None

    def merged(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with `changes` applied, each one validated; unknown fields are errors."""
        known = {name for name in FaultConfig.__dataclass_fields__}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(
                unknown[0],
                f"unknown field {unknown[0]!r}; known fields: {', '.join(sorted(known))}",
            )
        values: dict[str, Any] = {}
        for name, value in changes.items():
            values[name] = _validated(name, value)
        return replace(self, **values)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["down"] = list(self.down)
        return data


def _validated(name: str, value: Any) -> Any:
    def number() -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(name, f"{name} must be a number, got {value!r}")
        return float(value)

    if name in _RATES:
        rate = number()
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(name, f"{name} must be between 0 and 1, got {value!r}")
        return rate
    if name in ("latency_ms", "append_latency_ms"):
        latency = number()
        if not 0.0 <= latency <= MAX_LATENCY_MS:
            raise ConfigError(name, f"{name} must be between 0 and {MAX_LATENCY_MS}, got {value!r}")
        return latency
    if name in ("garbage_bodies", "json_404s"):
        if not isinstance(value, bool):
            raise ConfigError(name, f"{name} must be true or false, got {value!r}")
        return value
    if name == "retry_after_seconds":
        # Retry-After carries whole seconds (RFC 9110 delay-seconds).
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                name, f"retry_after_seconds must be a whole number >= 0, got {value!r}"
            )
        return value
    if name == "down":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(name, f"down must be a list of API names ({', '.join(APIS)})")
        unknown = [v for v in value if v not in APIS]
        if unknown:
            raise ConfigError(
                name, f"down names an unknown API {unknown[0]!r}; known APIs: {', '.join(APIS)}"
            )
        return tuple(dict.fromkeys(value))
    if name == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(name, f"seed must be a whole number or null, got {value!r}")
        return value
    raise ConfigError(name, f"unknown field {name!r}")
