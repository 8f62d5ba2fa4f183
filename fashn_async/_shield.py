"""Letting work finish while the task awaiting it is cancelled.

asyncio's ``task.cancel()`` goes through anyio's shielded scopes (they hold off anyio's
own cancellations only), and a task may be cancelled more than once: a timeout, then a
shutdown. A POST on the wire and the remote cancel of what it created must outlive both,
or a prediction is left running and charged with no id to cancel it by. So must a
write to disk in a worker thread (:func:`to_the_end`): a thread cannot be stopped.
So must the close of a batch (:func:`until_set`): it promises every task has ended.

The other way round, a ``CancelledError`` that code we call raises while nothing cancels
the task running it (:func:`foreign_cancel`) is that code's failure, not a cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

__all__ = ["foreign_cancel", "outlive_cancels", "to_the_end", "until_set"]

_T = TypeVar("_T")


def foreign_cancel(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``CancelledError`` that nothing asked of the running task.

    Code we call (an input iterable, an event hook, a file object's ``read()`` awaiting a
    future someone else cancelled) may raise one of its own. Propagated, it would end our
    work silently, as if we had been cancelled (a task group takes it for its own
    cancellation); it is that code's failure, to report as one. A real cancellation, by
    a cancel scope (anyio's, ours) or ``task.cancel()``, counts in the task's
    ``cancelling()`` until it is caught: call this where ``exc`` is caught.
    """
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


async def outlive_cancels(task: asyncio.Future[Any]) -> bool:
    """Wait for ``task`` to end, through any number of cancellations of the waiting task
    (anyio's cancellations are held off by a shielded scope, asyncio's outlived).

    Returns:
        Whether the waiting task was cancelled meanwhile (then it is the caller's to
        raise ``asyncio.CancelledError`` once done with the task's outcome).
    """
    return await _outlive(task.done, lambda: asyncio.wait({task}))


async def until_set(event: anyio.Event) -> bool:
    """Wait until ``event`` is set, through any number of cancellations of the waiting
    task, as :func:`outlive_cancels` does.

    Returns:
        Whether the waiting task was cancelled meanwhile (the caller's to raise).
    """
    return await _outlive(event.is_set, event.wait)


async def _outlive(done: Callable[[], bool], wait: Callable[[], Awaitable[object]]) -> bool:
    cancelled = False
    with anyio.CancelScope(shield=True):
        while not done():
            try:
                await wait()
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
