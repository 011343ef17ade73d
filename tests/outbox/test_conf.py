from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import override_settings

from outbox.conf import DEFAULTS, outbox_settings
from project.settings import OUTBOX_ENV, OUTBOX_WEIGHT_QUEUES, outbox_from_env

GATEWAY_MD = Path(__file__).resolve().parents[2] / "docs" / "GATEWAY.md"
ROW = re.compile(r"^\| `(OUTBOX_[A-Z_]+)`(?P<more>[^|]*)\| (?P<default>[^|]+) \|", re.M)


def documented_defaults() -> dict[str, str]:
    return {m[1]: m["default"].strip() for m in ROW.finditer(GATEWAY_MD.read_text())}


def as_number(text: str) -> float:
    return float(text.replace(",", ""))


def test_the_operators_table_shows_the_defaults_outbox_settings_has():
    documented = documented_defaults()

    for name, (key, _kind, _minimum) in OUTBOX_ENV.items():
        assert name in documented, f"{name} has no row in docs/GATEWAY.md"
        assert as_number(documented[name]) == getattr(DEFAULTS, key.lower()), name
    assert documented["OUTBOX_AUTOSTART"] == ("on" if DEFAULTS.autostart else "off")
    weights = [as_number(w) for w in documented["OUTBOX_WEIGHT_CRITICAL"].split(",")]
    assert weights == [DEFAULTS.queue_weights[q] for q in OUTBOX_WEIGHT_QUEUES]


def test_an_unset_variable_adds_nothing_to_the_settings(monkeypatch):
    for name in [*OUTBOX_ENV, "OUTBOX_AUTOSTART", "OUTBOX_WEIGHT_LOW"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OUTBOX_THREADS", "4")

    assert outbox_from_env() == {"THREADS": 4}


@pytest.mark.parametrize(("raw", "expected"), [("off", False), ("1", True)])
def test_autostart_comes_from_the_environment_when_set(monkeypatch, raw, expected):
    monkeypatch.setenv("OUTBOX_AUTOSTART", raw)

    assert outbox_from_env()["AUTOSTART"] is expected


def test_one_queue_weight_set_keeps_the_others_defaults(monkeypatch):
    for queue in OUTBOX_WEIGHT_QUEUES:
        monkeypatch.delenv(f"OUTBOX_WEIGHT_{queue.upper()}", raising=False)
    monkeypatch.setenv("OUTBOX_WEIGHT_LOW", "2")

    with override_settings(OUTBOX=outbox_from_env()):
        assert outbox_settings().queue_weights == {**DEFAULTS.queue_weights, "low": 2}
