"""Showing a job's progress: a live rich display on a terminal, plain log lines elsewhere.

Both show the same figures, in the words of the summary and the report: rows per state
(``5 done, 2 submitted, 1 invalid``), the rate of done rows per minute in this run, and
the time left at that rate. Against an emulator run with ``--time-scale``, the rate is
in API time (done per API minute, comparable with the API's 25/min) and says so; the
time left is real time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

import attrs

from fashn_async._redact import safe_repr
from fashn_async._validators import visible
from fashn_async.bulk._rows import State
from fashn_async.bulk._words import counted

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DisplayMode", "Figures", "LineDisplay", "QuietDisplay", "RichDisplay", "make_display"]

DisplayMode = Literal["auto", "bar", "lines", "quiet"]


@attrs.frozen
class Figures:
    """What a progress display shows, from the row counts per state."""

    total: int
    counts: Mapping[str, int]

    @classmethod
    def of(cls, counts: Mapping[str, int], total: int) -> Figures:
        """The figures for ``counts`` (rows per journal state)."""
        return cls(total=total, counts=dict(counts))

    @property
    def done(self) -> int:
        """Rows done."""
        return self.counts.get(State.DONE, 0)

    @property
    def finished(self) -> int:
        """Rows in a final state (done, failed, invalid, uncertain). A canceled row is
        not: a run sends it again, so counting it would make the count go back."""
        return sum(self.counts.get(s, 0) for s in State.FINAL)

    def text(self) -> str:
        """``118 done, 6 submitted, 1 failed``: the summary's words."""
        return counted(self.counts, always=(State.DONE,))


class _Pace:
    """Done rows per minute in this run, and the time the rest will take at that pace.

    Args:
        clock: Seconds, real time.
        time_scale: The emulator's time factor: the rate is shown per API minute.
    """

    def __init__(self, clock: Callable[[], float], time_scale: float = 1.0) -> None:
        self._clock = clock
        self._scale = time_scale
        self._start: tuple[float, int] | None = None

    def text(self, figures: Figures) -> str:
        now = self._clock()
        if self._start is None:
            self._start = (now, figures.done)
        started, done_before = self._start
        elapsed, done = now - started, figures.done - done_before
        if elapsed <= 0 or done <= 0:
            return "rate -, ETA -"
        per_second = done / elapsed
        left = figures.total - figures.finished
        unit = "/min" if self._scale == 1.0 else "/min in API time"
        rate = per_second * 60 * self._scale
        return f"{rate:.1f}{unit}, ETA {_duration(left / per_second)}"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class LineDisplay:
    """Timestamped lines on stderr: a progress line when the counts change, at most one
    per ``interval`` seconds (a change inside the interval shows in the next line), and
    a last one at the end; notes at once."""

    def __init__(
        self,
        write: Callable[[str], None] | None = None,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
    ) -> None:
        self._write = write or _stderr
        self._interval = interval
        self._clock = clock
        self._pace = _Pace(clock, time_scale)
        self._shown: Figures | None = None
        self._last: float | None = None
        self._figures: Figures | None = None

    @safe_repr
    def __repr__(self) -> str:
        return f"<LineDisplay {self._figures}>"

    def __enter__(self) -> LineDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._figures is not None and self._figures != self._shown:
            self._line(self._figures)

    def update(self, counts: Mapping[str, int], total: int) -> None:
        """Print a progress line if the counts changed and the last line is ``interval``
        seconds old."""
        self._figures = figures = Figures.of(counts, total)
        if figures == self._shown:
            return
        now = self._clock()
        if self._last is None or now - self._last >= self._interval:
            self._last = now
            self._line(figures)

    def note(self, text: str) -> None:
        """Print a line at once."""
        self._write(f"{time.strftime('%H:%M:%S')} {text}")

    def _line(self, figures: Figures) -> None:
        self._shown = figures
        self.note(
            f"progress {figures.finished}/{figures.total}: {figures.text()}; "
            f"{self._pace.text(figures)}"
        )


class RichDisplay:
    """A live progress bar on the terminal (rich), notes printed above it."""

    def __init__(self, console: Console, time_scale: float = 1.0) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("[bold]try-ons"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
            TextColumn("[cyan]{task.fields[pace]}"),
            console=console,
        )
        self._task = self._progress.add_task("try-ons", total=None, figures="", pace="")
        self._pace = _Pace(time.monotonic, time_scale)

    @safe_repr
    def __repr__(self) -> str:
        return f"<RichDisplay {self._progress.tasks[0].completed}>"

    def __enter__(self) -> RichDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, counts: Mapping[str, int], total: int) -> None:
        """Redraw the figures."""
        figures = Figures.of(counts, total)
        self._progress.update(
            self._task,
            total=total,
            completed=figures.finished,
            figures=figures.text(),
            pace=self._pace.text(figures),
        )

    def note(self, text: str) -> None:
        """Print a line above the live display."""
        self._progress.console.print(visible(text), markup=False, highlight=False)


class QuietDisplay:
    """No progress; notes (warnings, a row that failed, why the job stops) still go to
    ``write`` (stderr by default): a quiet job never hides what a person must read."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write or _stderr

    def __repr__(self) -> str:
        return "<QuietDisplay>"

    def __enter__(self) -> QuietDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, counts: Mapping[str, int], total: int) -> None:
        """Nothing."""

    def note(self, text: str) -> None:
        """Print a line at once."""
        self._write(text)


def make_display(
    mode: DisplayMode, console: Console, interval: float = 10.0, time_scale: float = 1.0
) -> RichDisplay | LineDisplay | QuietDisplay:
    """The display for ``mode``; ``auto`` is a live bar on a terminal, else log lines
    (see :class:`LineDisplay`); rates in API time for an emulator's ``time_scale``."""

    def write(text: str) -> None:
        console.print(visible(text), markup=False, highlight=False, soft_wrap=True)

    if mode == "quiet":
        return QuietDisplay(write)
    if mode == "bar" or (mode == "auto" and console.is_terminal):
        return RichDisplay(console, time_scale)
    return LineDisplay(write, interval=interval, time_scale=time_scale)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
