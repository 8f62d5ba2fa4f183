"""HTTP: the aiohttp session, auth, and the one place aiohttp errors become ours.

A request either returns a :class:`Response` (any HTTP status) or raises a
:class:`~fashn_async.errors.TransportError` that says whether the request can have
reached the server: :class:`ConnectError` means it never left, so even POST /v1/run may
be re-sent; anything after sending is a timeout or a dropped connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs

from fashn_async._payload import JsonBody
from fashn_async._retry import parse_retry_after
from fashn_async.errors import (
    APIError,
    ClientClosedError,
    ConnectError,
    ConnectionDroppedError,
    NetworkTimeoutError,
    api_error_from_response,
)

__all__ = ["Response", "Transport"]


@attrs.frozen
class Response:
    """An HTTP answer, its body parsed as JSON when it is JSON."""

    status: int
    data: Any
    headers: Mapping[str, str]

    @property
    def retry_after(self) -> float | None:
        """The Retry-After header in seconds, if present and readable."""
        return parse_retry_after(self.headers.get("Retry-After"))

    def error(self) -> APIError:
        """The typed error this non-200 answer stands for."""
        return api_error_from_response(self.status, self.data, retry_after=self.retry_after)


class _Secret:
    """Holds the API key; its repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "'***'"

    def reveal(self) -> str:
        return self._value


class Transport:
    """One aiohttp session for one client; opened and closed with the client."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: aiohttp.ClientTimeout,
        connections: int,
        user_agent: str,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = _Secret(api_key)
        self._timeout = timeout
        self._connections = connections
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "open" if self._session else ("closed" if self._closed else "new")
        return f"<Transport {self.base_url} {state}>"

    async def open(self) -> None:
        """Create the session."""
        if self._closed:
            raise ClientClosedError("this client was closed; create a new AsyncFashn")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=self._timeout,
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
                # raise_for_status stays off: every status is mapped here, without the
                # request headers (and so the key) that aiohttp's errors would carry.
            )

    async def close(self) -> None:
        """Close the session and wait for its connections to go."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session, or ClientClosedError."""
        if self._session is None:
            why = "was closed" if self._closed else "is not open: use 'async with AsyncFashn()'"
            raise ClientClosedError(f"the client {why}")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request, once; map every failure to our errors."""
        session = self.session
        url = f"{self.base_url}{path}"
        headers = {"Authorization": f"Bearer {self._key.reveal()}"}
        data: Any = None
        if isinstance(body, bytes):  # already encoded (off the loop, for large bodies)
            data = JsonBody(body)
            headers["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with session.request(
                method, url, data=data, headers=headers, params=params
            ) as response:
                raw = await response.read()
                return Response(response.status, _parse_json(raw), dict(response.headers))
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(f"cannot connect to {self.base_url}: {exc.os_error}") from None
        except TimeoutError as exc:
            raise NetworkTimeoutError(f"{method} {path}: no answer in time") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise ConnectionDroppedError(
                f"{method} {path}: the server closed the connection without answering"
            ) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise ConnectionDroppedError(f"{method} {path}: the answer was cut off") from exc
        except aiohttp.ClientOSError as exc:
            raise ConnectionDroppedError(
                f"{method} {path}: connection error: {exc.strerror}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ConnectionDroppedError(f"{method} {path}: {type(exc).__name__}") from exc


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:500].decode("utf-8", "replace")
