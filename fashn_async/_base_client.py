"""BaseClient: what a client is made of, and how it opens and closes.

As httpx keeps a client's configuration in ``BaseClient`` apart from ``AsyncClient``'s
requests, this module builds the parts from the options (transport, engine, the shared
coordination, the batches' task group) and owns their lifecycle; ``_client`` adds the
calls. The options are documented on :class:`~fashn_async.AsyncFashn`.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Self

import aiohttp

from fashn_async._batch import BatchGroup
from fashn_async._coordination import RedisCoordination
from fashn_async._engine import CANCEL_TIMEOUT, Engine
from fashn_async._http import Transport
from fashn_async._limits import Limits
from fashn_async._options import (
    DEFAULT_BASE_URL,
    check_base_url,
    check_coordination,
    check_env_proxy,
    check_flag,
    check_options,
    check_proxy,
    checked_api_key,
)
from fashn_async._polling import Polling
from fashn_async._prepare import ImagePreparation
from fashn_async._redact import Secret, safe_repr, shown_url
from fashn_async._retry import RetryPolicy
from fashn_async._tls import check_verify
from fashn_async._version import __version__

if TYPE_CHECKING:
    from types import TracebackType

    from fashn_async._coordination._coordinator import Coordinator

__all__ = ["BaseClient"]


class BaseClient:
    """The options made parts, and their lifecycle; see :class:`~fashn_async.AsyncFashn`."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        limits: Limits | None = None,
        polling: Polling | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_connections: int = 100,
        proxy: str | None = None,
        trust_env: bool = True,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        coordination: str | RedisCoordination | None = None,
        prepare_images: ImagePreparation | bool | None = None,
    ) -> None:
        try:
            # Held as a Secret from here on: frame locals, which error reporters show,
            # hold only it (the argument itself is cleared below if anything raises).
            key = Secret(
                checked_api_key(api_key if api_key is not None else os.environ.get("FASHN_API_KEY"))
            )
            if base_url is None:
                base_url = os.environ.get("FASHN_BASE_URL") or DEFAULT_BASE_URL
            self.base_url = check_base_url(base_url)
            check_options(
                timeout=timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
                limits=limits,
                polling=polling,
                retry=retry,
            )
            limits = limits if limits is not None else Limits()
            self.prepare_images = ImagePreparation.from_option(prepare_images)
            self.limits = limits
            #: Seconds one HTTP request may take in all.
            self.timeout = timeout
            self.coordination = check_coordination(coordination)
            self._coordinator: Coordinator | None = (
                self.coordination.coordinator(api_key=key, request_timeout=timeout)
                if self.coordination
                else None
            )
            if proxy is None and check_flag("trust_env", trust_env):
                check_env_proxy(self.base_url)
            self._transport = Transport(
                base_url=self.base_url,
                api_key=key,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout),
                connections=max_connections,
                user_agent=f"fashn-async/{__version__}",
                proxy=check_proxy(proxy),
                trust_env=check_flag("trust_env", trust_env),
                verify=check_verify(verify),
            )
            self._engine = Engine(
                self._transport,
                limits=limits,
                polling=polling or Polling(),
                retry=retry or RetryPolicy(),
                backend=self._coordinator,
                preparer=self.prepare_images.preparer() if self.prepare_images else None,
            )
        except BaseException:
            api_key = key = None  # (a traceback's frame locals: not even inside the Secret)
            raise
        #: The task group every batch of this client runs in; closed with the client.
        self._batches = BatchGroup()
        #: While open, one of its loop's async generators (:func:`_closed_with_its_loop`).
        self._with_loop: AsyncGenerator[None, None] | None = None
        self._closed = False  # (once closed, by aclose() or by its loop's end)

    @safe_repr  # (refused while being built, it is in a traceback's frame locals)
    def __repr__(self) -> str:
        engine = self._engine
        shared = f" coordination={self._coordinator!r}" if self._coordinator else ""
        return (
            f"<{type(self).__name__} {shown_url(self.base_url)} api_key='***' "
            f"in_flight={engine.in_flight.in_use}/{self.limits.in_flight}{shared} "
            f"transport={self._transport!r}>"
        )

    async def __aenter__(self) -> Self:
        self._transport.check_loop()
        if self._coordinator is not None:
            await self._coordinator.start()
        try:
            await self._transport.open()
        except BaseException:
            if self._coordinator is not None:
                await self._coordinator.aclose()
            raise
        if self._with_loop is None:
            self._with_loop = _closed_with_its_loop(self)
            await anext(self._with_loop)  # (now one of the loop's async generators)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close open batches (cancelling their predictions on the server, awaited), end
        every ``run()``, ``submit()`` and ``wait()`` in progress as a cancel would (a
        POST on the wire let finish, what it created cancelled on the server; the call
        raises ClientClosedError), stop the latency models' refits, close the HTTP
        session, leave Redis. Closed already (its loop's end included), it does nothing,
        from any loop."""
        if self._closed:
            return
        self._transport.check_loop()
        await self._close()
        ending, self._with_loop = self._with_loop, None
        if ending is not None:
            await ending.aclose()  # (it finds the client closed: nothing left to do)

    async def _close(self) -> None:
        async with contextlib.AsyncExitStack() as closing:  # each step even if one before fails
            if self._coordinator is not None:
                closing.push_async_callback(self._coordinator.aclose)
            closing.push_async_callback(self._transport.close)
            closing.push_async_callback(self._engine.poller.aclose)
            closing.callback(self._engine.in_flight.close)
            # First of all: every call in progress ends as a cancel would (its POST let
            # finish, what it created cancelled on the server) while the session is open.
            closing.push_async_callback(self._engine.calls.end_all, self.timeout + CANCEL_TIMEOUT)
            await self._batches.aclose()
        self._closed = True  # (another loop's aclose() then does nothing)


async def _closed_with_its_loop(client: BaseClient) -> AsyncGenerator[None, None]:
    """Suspended while the client is open, as one of its loop's async generators: a loop
    that ends (``asyncio.run()`` closes them after cancelling its tasks) with the client
    still open closes it there, its calls ended as a cancel would, rather than leave
    aiohttp's sessions to warn at garbage collection (a startup hook's client, say, with
    no shutdown hook, or one on another loop, which could no longer close it)."""
    try:
        yield
    finally:
        if not client._closed:
            await client._close()
