"""The command line's parameter types, shared options and exit-code rules (click).

Kept apart from :mod:`fashn_async.cli` (the commands) so that each stays short; imported
only by it (click comes with the ``cli`` extra).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import click

from fashn_async import Rate
from fashn_async._options import checked_api_key
from fashn_async.bulk._command import EXIT_CANNOT_START
from fashn_async.bulk._journal import JOURNAL_NAME
from fashn_async.bulk._outcome import EXIT_SOME_FAILED
from fashn_async.bulk._rows import disk_problem, disk_remedy
from fashn_async.errors import (
    ConfigurationError,
    DeadlineExceededError,
    DownloadError,
    FashnError,
    PredictionCanceledError,
    PredictionError,
    SubmissionUncertainError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "Finite",
    "RateType",
    "api_options",
    "folder_problem",
    "run_exit_code",
]

DEFAULT_BASE_URL = "https://api.fashn.ai"


class RateType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """``N/SECONDS`` (e.g. ``25/60``), or ``off``: N a whole number of at least 1,
    SECONDS a finite number above 0 (anything else is refused, exit 2, before anything
    is sent: a rate of 2/inf would wait forever)."""

    name = "N/SECONDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, Rate):
            return value
        text = str(value).strip()
        if text.lower() == "off":
            return None
        expected = f"expected N/SECONDS such as 25/60, or off; got {value!r}"
        limit, slash, period = text.partition("/")
        try:
            count = int(limit)
        except ValueError:
            self.fail(f"{expected} (N must be a whole number)" if slash else expected, param, ctx)
        try:
            seconds = float(period)
        except ValueError:
            self.fail(f"{expected} (SECONDS must be a number)" if slash else expected, param, ctx)
        if count < 1:
            self.fail(f"{expected} (N must be at least 1)", param, ctx)
        if not (math.isfinite(seconds) and seconds > 0):
            self.fail(f"{expected} (SECONDS must be a finite number above 0)", param, ctx)
        try:
            return Rate(count, seconds)
        except FashnError as error:
            self.fail(f"{expected} ({error})", param, ctx)


class Finite(click.FloatRange):
    """A float range that refuses ``nan`` and infinities (click's range lets nan by)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        return number


def api_options(function: Any) -> Any:
    function = click.option(
        "--base-url",
        envvar="FASHN_BASE_URL",
        show_envvar=True,
        default=DEFAULT_BASE_URL,
        show_default=True,
        help="The API's address (an emulator's, for tests).",
    )(function)
    return click.option(
        "--api-key",
        envvar="FASHN_API_KEY",
        show_envvar=True,
        default=None,
        callback=_api_key,
        help="The API key (never printed; surrounding whitespace, such as a Windows line "
        "end, is dropped).",
    )(function)


def _api_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The key as the client takes it: stripped; one with a control character inside is
    refused (exit 2) before anything is sent, without being shown."""
    if value is None or not value.strip():
        return None  # the command says how to give one, when it needs one
    try:
        return checked_api_key(value)
    except ConfigurationError as error:
        raise click.BadParameter(error.message, ctx, param) from None


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot take output files, and what to do, or None; a missing one is
    made here.

    A file is written and deleted in it: that proves it on a read-only file system or
    under a read-only parent, where permission bits alone say nothing (root ignores them).
    """
    if folder.exists() and not folder.is_dir():
        return f"{folder} exists and is not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        problem = disk_problem(exc, folder)
        resumable = (folder / JOURNAL_NAME).exists()
        return f"cannot write to {folder}: {problem}; {disk_remedy(problem, resumable=resumable)}"
    return None


def run_exit_code(error: FashnError) -> int:
    """1 when the prediction started (it failed, was canceled, ran out of time, may have
    landed, or its output could not be saved); 2 when nothing was started."""
    started = error.prediction_id is not None or isinstance(
        error,
        PredictionError
        | PredictionCanceledError
        | SubmissionUncertainError
        | DeadlineExceededError
        | DownloadError,
    )
    return EXIT_SOME_FAILED if started else EXIT_CANNOT_START
