"""A one-line progress bar for management commands, drawn only on a terminal.

Redrawn in place with a carriage return, which a terminal understands and a log file does
not: written to a pipe or a CI log, every frame would stay as a line. So it draws nothing
unless its stream is a terminal.
"""

from __future__ import annotations

from django.core.management.base import OutputWrapper

WIDTH = 30


def bar(done: int, total: int, *, label: str = "", unit: str = "", suffix: str = "") -> str:
    """The bar as text: `Label    [#####.....] 5/10 unit  suffix`."""
    filled = WIDTH * done // total if total else WIDTH
    text = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total}"
    if label:
        text = f"{label:<8} {text}"
    if unit:
        text = f"{text} {unit}"
    return f"{text}  {suffix}" if suffix else text


class ProgressBar:
    """Redraws `bar(...)` in place on `stream` (a command's self.stdout); silent off a terminal."""

    def __init__(self, stream: OutputWrapper, *, label: str = "", unit: str = "") -> None:
        self.stream = stream
        self.label = label
        self.unit = unit
        self.drawing = stream.isatty()
        self._shown = ""

    def update(self, done: int, total: int, suffix: str = "") -> None:
        if not self.drawing:
            return
        text = bar(done, total, label=self.label, unit=self.unit, suffix=suffix)
        if text != self._shown:
            self.stream.write(f"\r{text}", ending="")
            self.stream.flush()
            self._shown = text

    def end(self) -> None:
        """End the bar's line, so what is written next starts on a line of its own."""
        if self._shown:
            self.stream.write("")
            self.stream.flush()
            self._shown = ""
