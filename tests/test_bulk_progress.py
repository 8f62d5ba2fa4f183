"""Progress displays: the figures, the pace and ETA, log lines and the live bar."""

from __future__ import annotations

import io

from rich.console import Console

from fashn_async.bulk._progress import Figures, LineDisplay, RichDisplay, make_display

COUNTS = {"pending": 80, "submitting": 1, "submitted": 5, "completed": 1, "done": 10,
          "failed": 1, "invalid": 1, "uncertain": 1}  # fmt: skip


def test_figures_from_row_states() -> None:
    """Submitted: every row past pending (invalid rows never are); failed: all the bad ends."""
    figures = Figures.of(COUNTS, 100)
    assert figures == Figures(total=100, submitted=19, running=7, done=10, failed=3, pending=80)
    assert figures.text() == "submitted 19 · running 7 · done 10 · failed 3"


def test_log_lines_are_throttled_and_show_pace_and_eta() -> None:
    """One progress line per interval; the pace counts rows done in this run only."""
    lines: list[str] = []
    now = [0.0]
    display = LineDisplay(lines.append, interval=10.0, clock=lambda: now[0])
    display.update({**COUNTS, "done": 10}, 100)  # first update: printed
    now[0] = 5.0
    display.update({**COUNTS, "done": 12}, 100)  # within the interval: not printed
    now[0] = 60.0
    display.update({**COUNTS, "done": 40, "pending": 50}, 100)  # 30 done in 60 s
    display.note("row 3 (line 4) failed: PoseError: no pose")
    assert len(lines) == 3
    assert lines[0].endswith("progress 13/100: submitted 19 · running 7 · done 10 · failed 3; "
                             "rate -, ETA -")  # fmt: skip
    assert lines[1].endswith("progress 43/100: submitted 49 · running 7 · done 40 · failed 3; "
                             "30.0/min, ETA 1m54s")  # fmt: skip
    assert lines[2].endswith(" row 3 (line 4) failed: PoseError: no pose")
    with display:
        pass
    assert len(lines) == 4  # the last figures once more when it closes


def test_the_live_bar_draws_figures_and_notes() -> None:
    """On a terminal: a bar with the figures, notes printed above it."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160)
    display = make_display("auto", console)
    assert isinstance(display, RichDisplay)
    with display:
        display.update(COUNTS, 100)
        display.note("2 uncertain row(s), not re-sent")
    text = buffer.getvalue()
    assert "2 uncertain row(s), not re-sent" in text
    assert "13/100" in text
    assert "submitted 19 · running 7 · done 10 · failed 3" in text
    assert isinstance(make_display("auto", Console(file=io.StringIO())), LineDisplay)
