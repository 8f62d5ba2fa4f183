"""Reading request bodies so that slow senders cannot stall the emulator.

Every body must arrive within a time limit, and only so many are read at once: one more
arriving ends the read that has been waiting longest. A held-open connection trickling a
body (or never finishing it) is answered 400 and closed, never waited on for ever.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["BodyReaders", "BodyTooSlow"]


class BodyTooSlow(Exception):
    """A body did not arrive in time, or was pushed out by newer ones; answered 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BodyReaders:
    """The request bodies being read now: at most ``limit``, each within ``timeout`` s.

    Args:
        limit: Bodies read at once; one more ends the read waiting longest.
        timeout: Loop seconds one body may take to arrive.
    """

    __slots__ = ("_evicted", "_limit", "_reading", "_timeout", "evictions", "timeouts")

    def __init__(self, *, limit: int, timeout: float) -> None:
        self._limit = limit
        self._timeout = timeout
        self._reading: dict[object, asyncio.Timeout] = {}  # oldest first
        self._evicted: set[object] = set()
        self.timeouts = 0
        self.evictions = 0

    def __repr__(self) -> str:
        return f"<BodyReaders reading={len(self._reading)}/{self._limit} timeout={self._timeout}>"

    @property
    def reading(self) -> int:
        """Bodies being read now."""
        return len(self._reading)

    def _make_room(self) -> None:
        loop = asyncio.get_running_loop()
        while len(self._reading) >= self._limit:
            oldest = next(iter(self._reading))
            self._evicted.add(oldest)
            self._reading.pop(oldest).reschedule(loop.time())

    async def read(self, request: web.Request) -> bytes:
        """Return the whole body of ``request``.

        Raises:
            BodyTooSlow: It did not arrive within the timeout, or newer bodies pushed it
                out while it was the one waiting longest.
            ConnectionError: The client left mid-body.
            web.HTTPRequestEntityTooLarge: It is over the application's size cap.
        """
        token = object()
        try:
            async with asyncio.timeout(self._timeout) as scope:
                self._make_room()
                self._reading[token] = scope
                return await request.read()
        except TimeoutError:
            if token in self._evicted:
                self.evictions += 1
                raise BodyTooSlow(
                    f"The request body was still arriving when {self._limit} newer ones "
                    "came in; the slowest is dropped."
                ) from None
            self.timeouts += 1
            raise BodyTooSlow(
                f"The request body did not arrive within {self._timeout:g} s."
            ) from None
        finally:
            self._reading.pop(token, None)
            self._evicted.discard(token)
