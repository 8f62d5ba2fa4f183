"""The console the commands speak through, and what ``batch`` does once its options are
read. Kept apart from :mod:`fashn_async.cli` (the commands and their options) so that
each stays short; imported only by it (click and rich come with the ``cli`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from fashn_async import Limits, Rate
from fashn_async._emulator_clock import learn_time_scale, scaled_timing
from fashn_async._validators import visible
from fashn_async.bulk._command import BatchSettings, run_batch
from fashn_async.bulk._command import dry_run as check_catalog
from fashn_async.bulk._outcome import LONGEST_LATENCY, SERVER_ACTS_WITHIN, JobOptions

__all__ = ["batch_command", "console", "say"]


class _BestEffortStderr:
    """``sys.stderr`` (looked up at each write, as click's test runner swaps it) that a
    closed pipe or terminal cannot crash: what a person is told is best effort, and a
    job goes on to record its stop (``batch ... | head -3`` must not end it).

    A live display (rich's ``Live``) may put a proxy in ``sys.stderr`` that writes to
    this very console: the stream under it is used, or each write would come back here
    (rich 15 recursed without end, the command hung)."""

    @staticmethod
    def _stream() -> Any:
        stream = sys.stderr
        return getattr(stream, "rich_proxied_file", stream)

    def write(self, text: str) -> int:
        try:
            return int(self._stream().write(text))
        except (OSError, ValueError):  # a broken pipe, a closed terminal or file
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream().flush()

    def isatty(self) -> bool:
        try:
            return bool(self._stream().isatty())
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return int(self._stream().fileno())

    @property
    def encoding(self) -> str:
        return getattr(self._stream(), "encoding", None) or "utf-8"


console = Console(file=_BestEffortStderr(), soft_wrap=True)  # type: ignore[arg-type]


def say(text: str) -> None:
    console.print(visible(text), markup=False, highlight=False)


def batch_command(
    *,
    catalog: Path,
    out: Path,
    api_key: str | None,
    base_url: str,
    dry_run: bool,
    in_flight: int,
    submit_rate: Rate | None,
    status_rate: Rate | None,
    model_name: str | None,
    output_format: str | None,
    prepare_images: bool,
    downloads: int,
    resend_uncertain: bool,
    retry_failed: bool,
    leave_running: bool,
    progress: Any,
    log_interval: float,
    no_report: bool,
    time_scale: float | None,
) -> int:
    if time_scale is None:
        time_scale = 1.0 if dry_run else learn_time_scale(base_url, api_key, say)
    limits = Limits(submit=submit_rate, status=status_rate, in_flight=in_flight)
    timing = scaled_timing(time_scale, limits=limits)
    settings = BatchSettings(
        catalog=catalog,
        options=JobOptions(
            out=out,
            resend_uncertain=resend_uncertain,
            retry_failed=retry_failed,
            leave_running=leave_running,
            downloads=downloads,
            longest_latency=timing.seconds(LONGEST_LATENCY),
            server_acts_within=timing.seconds(SERVER_ACTS_WITHIN),
        ),
        api_key=api_key,
        base_url=base_url,
        limits=timing.limits,
        polling=timing.polling,
        retry=timing.retry,
        model_name=model_name,
        output_format=output_format,
        prepare_images=prepare_images,
        display=progress,
        log_interval=log_interval,
        report=not no_report,
        time_scale=time_scale,
    )
    if dry_run:  # the bad rows on stdout, one per line, shown as every line is
        return check_catalog(settings, lambda text: click.echo(visible(text)))
    return asyncio.run(run_batch(settings, console))
