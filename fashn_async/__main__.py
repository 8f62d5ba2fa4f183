"""The program: ``fashn-async`` and ``python -m fashn_async`` (see ``fashn_async.cli``)."""

from __future__ import annotations

import signal

from fashn_async.bulk._signals import STOP_SIGNALS
from fashn_async.cli import main

__all__ = ["entry"]


def entry() -> None:
    """:func:`~fashn_async.cli.main`, then the stop signals held until the process is
    gone. A SIGTERM in the interpreter's last moments (a second one, just after a clean
    stop) otherwise killed it with 143, which a scheduler reads as a crash, though the
    job had stopped as it should (exit 130)."""
    try:
        main()
    finally:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


if __name__ == "__main__":
    entry()
