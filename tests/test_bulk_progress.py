"""Progress displays: the figures, the pace and ETA, log lines and the live bar; one
vocabulary with the summary and the report."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fashn_async.bulk._progress import (
    DisplayMode,
    Figures,
    LineDisplay,
    RichDisplay,
    make_display,
)
from fashn_async.bulk._rows import State
from fashn_async.bulk._words import counted, plural

COUNTS = {"pending": 80, "submitting": 1, "submitted": 5, "completed": 1, "done": 10,
          "failed": 1, "invalid": 1, "uncertain": 1}  # fmt: skip
WORDS = (
    "80 pending, 1 submitting, 5 submitted, 1 completed, 10 done, 1 failed, 1 invalid, 1 uncertain"
)


def test_figures_use_the_state_names() -> None:
    """The progress figures name every state as the journal, summary and report do."""
    figures = Figures.of(COUNTS, 100)
    assert figures.finished == 13
    assert figures.text() == WORDS
    for state in State.ALL:  # every state, in the one vocabulary
        assert f"2 {state}" in Figures.of({state: 2}, 2).text().split(", ")
    assert Figures.of({}, 0).text() == "0 done"
    assert (plural(1, "row"), plural(2, "row"), plural(0, "row")) == ("1 row", "2 rows", "0 rows")
    assert counted({"done": 1, "canceled": 2}) == "1 done, 2 canceled"


def test_log_lines_come_when_counts_change_at_most_once_per_interval() -> None:
    """A line when something changed, at most one per interval; nothing when nothing
    changed; the pace counts rows done in this run only; one last line on close."""
    lines: list[str] = []
    now = [0.0]
    display = LineDisplay(lines.append, interval=10.0, clock=lambda: now[0])
    display.update({**COUNTS, "done": 10}, 100)  # first update: printed
    now[0] = 5.0
    display.update({**COUNTS, "done": 12}, 100)  # within the interval: not printed
    now[0] = 60.0
    display.update({**COUNTS, "done": 40, "pending": 50}, 100)  # 30 done in 60 s
    now[0] = 120.0
    display.update({**COUNTS, "done": 40, "pending": 50}, 100)  # no change: no line
    display.note("line 4: failed: PoseError: no pose")
    assert len(lines) == 3
    assert lines[0].endswith(f"progress 13/100: {WORDS}; rate -, ETA -")
    assert lines[1].endswith("progress 43/100: 50 pending, 1 submitting, 5 submitted, "
                             "1 completed, 40 done, 1 failed, 1 invalid, 1 uncertain; "
                             "30.0/min, ETA 1m54s")  # fmt: skip
    assert lines[2].endswith(" line 4: failed: PoseError: no pose")
    with display:
        pass
    assert len(lines) == 3  # the last figures were shown already
    display.update({**COUNTS, "done": 41, "pending": 49}, 100)  # inside the interval
    with display:
        pass
    assert len(lines) == 4  # shown when it closes
    assert "41 done" in lines[3]


def test_rates_on_a_time_scaled_emulator_are_in_api_time() -> None:
    """x50 emulator: 30 done in 60 real seconds is 0.6 per API minute, and says so."""
    lines: list[str] = []
    now = [0.0]
    display = LineDisplay(lines.append, interval=1.0, clock=lambda: now[0], time_scale=0.02)
    display.update({"pending": 100}, 100)
    now[0] = 60.0
    display.update({"pending": 70, "done": 30}, 100)
    assert lines[-1].endswith("0.6/min in API time, ETA 2m20s")


def test_the_live_bar_draws_figures_and_notes() -> None:
    """On a terminal: a bar with the figures, notes printed above it."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200)
    display = make_display("auto", console)
    assert isinstance(display, RichDisplay)
    with display:
        display.update(COUNTS, 100)
        display.note("2 uncertain rows, not re-sent")
    text = buffer.getvalue()
    assert "2 uncertain rows, not re-sent" in text
    assert "13/100" in text
    assert "10 done, 1 failed" in text
    assert isinstance(make_display("auto", Console(file=io.StringIO())), LineDisplay)


@pytest.mark.parametrize("mode", ["auto", "bar", "lines", "quiet"])
def test_every_display_mode_shows_the_notes(mode: DisplayMode) -> None:
    """Whatever --progress says (quiet too), a note (a catalog-edit warning, a failed row)
    reaches the console; quiet shows no progress figures."""
    buffer = io.StringIO()
    with make_display(mode, Console(file=buffer, width=200), interval=0.0) as display:
        display.update(COUNTS, 100)
        display.note("line 3, id 'sku-1' changed after it was sent (done)")
    text = buffer.getvalue()
    assert "line 3, id 'sku-1' changed after it was sent (done)" in text
    assert ("10 done" in text) is (mode != "quiet")
