"""Signals that stop a bulk command cleanly: Ctrl-C, SIGTERM, and SIGHUP from a closed
terminal, from the command's first line to its last (its first line runs once Python has
loaded the package and click has read the options: nothing is read or sent before)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fashn_async._redact import safe_repr
from fashn_async.bulk._outcome import EXIT_INTERRUPTED

__all__ = ["STOP_SIGNALS", "StopOnSignals", "stopped_by_signals"]


#: The signals that stop a job cleanly: Ctrl-C, a service manager's stop, and a closed
#: terminal (SIGHUP, where the system has it).
STOP_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGINT,
    signal.SIGTERM,
    *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()),
)


class StopOnSignals:  # used like a function, as contextlib's helpers are
    """Call :attr:`stop` on the first SIGINT/SIGTERM; a second one ends the process at once.

    :attr:`stop` changes as the command goes on (cancel the start-up, then stop the
    job). At once means ``os._exit``: every journal step is committed when it happens,
    so the journal is as consistent as after a ``kill -9``, and a re-run resumes from it.
    On exit, each signal's handler is what it was before (asyncio would leave SIGTERM at
    its default, which kills the process without a word).
    """

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop
        self.received = 0
        self._signals: Sequence[signal.Signals] = STOP_SIGNALS
        self._loop: asyncio.AbstractEventLoop | None = None
        self._before: dict[signal.Signals, Any] = {}

    @safe_repr
    def __repr__(self) -> str:
        return f"<StopOnSignals received={self.received}>"

    def _received_one(self) -> None:
        self.received += 1
        if self.received == 1:
            self.stop()
            return
        sys.stderr.write("stopped at once: run the same command again to resume\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    def __enter__(self) -> StopOnSignals:
        self._loop = asyncio.get_running_loop()
        try:
            for signum in self._signals:
                self._before[signum] = signal.getsignal(signum)
                self._loop.add_signal_handler(signum, self._received_one)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not main
            self._loop = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None:
            for signum in self._signals:
                self._loop.remove_signal_handler(signum)
                if self._before.get(signum) is not None:
                    signal.signal(signum, self._before[signum])


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """For the synchronous start of a command: SIGTERM and SIGHUP raise KeyboardInterrupt
    as SIGINT does (rather than killing the process with exit 143 or 129), so all stop it
    the same way; the handlers are restored after."""
    before: dict[signal.Signals, Any] = {}
    try:
        for signum in STOP_SIGNALS[1:]:
            before[signum] = signal.signal(signum, signal.default_int_handler)
    except ValueError:  # pragma: no cover - not the main thread
        pass
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
