"""The calls in progress on a client (``run()``, ``submit()``, ``wait()``), so that closing
it ends each as a cancellation would before its session closes.

A session closed under a call leaves what it started running and charged, with nobody
to collect it: a POST on the wire cut off (the prediction created, its id never known), a
poll cut short (the prediction runs on), a remote cancel that meets the closed session
(a web server's shutdown cancels its handlers, then closes the client, or the other way
round). So :meth:`Calls.end_all` cancels every call's own scope (never its task): each
lets its POST finish and cancels what it created on the server (``_shield``), then
raises :class:`~fashn_async.errors.ClientClosedError`; the session closes once all are
done, or the time allowed has passed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import anyio

from fashn_async._shield import outlive_cancels
from fashn_async.errors import ClientClosedError

__all__ = ["Calls", "a_call"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


class Calls:
    """The calls in progress, each in a cancel scope of its own (see the module)."""

    def __init__(self) -> None:
        #: Each call's scope, with the future it ends.
        self._scopes: dict[anyio.CancelScope, asyncio.Future[None]] = {}
        self._closing = False

    async def run(self, call: Awaitable[_T]) -> _T:
        """``await call``, counted in progress until it ends.

        Raises:
            ClientClosedError: the client was closing (then ``call`` is not run), or
                closed while it ran (what it started was cancelled on the server first).
        """
        if self._closing:
            if isinstance(call, Coroutine):
                call.close()
            raise ClientClosedError("this client is closing; create a new AsyncFashn")
        ended = asyncio.get_running_loop().create_future()
        with anyio.CancelScope() as scope:
            self._scopes[scope] = ended
            try:
                return await call
            finally:
                del self._scopes[scope]
                ended.set_result(None)
        raise ClientClosedError(
            "the client was closed while this call was in progress; a prediction it had "
            "created was cancelled on the server (best effort; unless cancel_on_exit=False)"
        )

    async def end_all(self, limit: float) -> None:
        """End every call in progress as a cancellation would, and wait for them, up to
        ``limit`` seconds, through any cancellation of the waiting task (raised once
        done); calls made from now on raise ClientClosedError."""
        self._closing = True
        for scope in self._scopes:
            scope.cancel()
        task = asyncio.ensure_future(self._wait(limit))
        if await outlive_cancels(task):
            raise asyncio.CancelledError
        task.result()

    async def _wait(self, limit: float) -> None:
        with anyio.move_on_after(limit):
            while pending := list(self._scopes.values()):
                await asyncio.wait(pending)


class _Calling(Protocol):
    calls: Calls


_S = TypeVar("_S", bound=_Calling)


def a_call(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Count each call of ``method`` in its object's :class:`Calls`."""

    async def counted(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self.calls.run(method(self, *args, **kwargs))

    functools.update_wrapper(counted, method)
    return counted
