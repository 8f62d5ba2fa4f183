"""Letting work finish while the task awaiting it is cancelled.

asyncio's ``task.cancel()`` goes through anyio's shielded scopes (they hold off anyio's
own cancellations only), and a task may be cancelled more than once: a timeout, then a
shutdown. A POST on the wire and the remote cancel of what it created must outlive both,
or a prediction is left running and charged with no id to cancel it by.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio

__all__ = ["outlive_cancels"]


async def outlive_cancels(task: asyncio.Future[Any]) -> bool:
    """Wait for ``task`` to end, through any number of cancellations of the waiting task
    (anyio's cancellations are held off by a shielded scope, asyncio's outlived).

    Returns:
        Whether the waiting task was cancelled meanwhile (then it is the caller's to
        raise ``asyncio.CancelledError`` once done with the task's outcome).
    """
    cancelled = False
    with anyio.CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                cancelled = True
    return cancelled
