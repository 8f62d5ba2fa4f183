"""Letting work finish while the task awaiting it is cancelled.

asyncio's ``task.cancel()`` goes through anyio's shielded scopes (they hold off anyio's
own cancellations only), and a task may be cancelled more than once: a timeout, then a
shutdown. A POST on the wire and the remote cancel of what it created must outlive both,
or a prediction is left running and charged with no id to cancel it by. So must a
write to disk in a worker thread (:func:`to_the_end`): a thread cannot be stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

__all__ = ["outlive_cancels", "to_the_end"]

_T = TypeVar("_T")


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


async def to_the_end(run: Callable[..., Awaitable[_T]], *args: Any) -> _T:
    """``await run(*args)`` (a call in a worker thread, say) to its end, through any
    cancellation of the caller; the cancel then reaches the caller. A caller canceled
    before starting it starts nothing.

    A canceled caller must not return while its thread still writes: the thread would
    go on taking disk space behind its back, and could make again a file that the
    caller's cleanup has just removed.
    """
    await anyio.lowlevel.checkpoint_if_cancelled()
    task = asyncio.ensure_future(run(*args))
    if await outlive_cancels(task):
        if not task.cancelled():
            task.exception()  # retrieved: the cancel is what the caller hears of
        raise asyncio.CancelledError
    result = task.result()
    await anyio.lowlevel.checkpoint_if_cancelled()  # a cancel held off by the wait
    return result
