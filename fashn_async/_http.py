"""HTTP: the aiohttp session, auth, proxies, and the one place aiohttp errors become ours.

A request either returns a :class:`Response` (any HTTP status, its body read in full) or
raises a :class:`~fashn_async.errors.TransportError` that says how far it got:
:class:`ConnectError` (its subclass :class:`ConnectTimeoutError` included) means no
connection was made, so nothing was sent and even POST /v1/run may be sent again; a
timeout, a dropped connection, a cut-off body or a malformed answer
(:class:`RemoteProtocolError`) came after sending. :func:`outcome_of` turns either into
the :class:`~fashn_async._decisions.Outcome` that ``_decisions.decide`` reads.

Whether anything was sent is known, not guessed: aiohttp tells (its trace signal
``on_request_headers_sent``) when it is about to write a request's headers, and a failure
before that (a proxy that answers its CONNECT with garbage, or closes it) is a
:class:`ConnectError` whatever aiohttp raised: nothing reached the API.

Secrets: aiohttp's errors carry the request's headers (``request_info``), and so the
``Authorization`` header. None of them is kept: each is translated into one of ours,
raised outside the ``except`` block that caught it, so neither ``__cause__`` nor
``__context__`` (nor anything they hold) reaches the caller. Bodies that are not JSON
(a gateway's HTML page, which might echo request headers) are not kept either.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDict

from fashn_async._decisions import Happened, Outcome, Route, Shape, body_shape, unexpected
from fashn_async._error_map import api_error_from_response
from fashn_async._payload import JsonBody
from fashn_async._redact import Secret, safe_repr, shown_url
from fashn_async._retry import parse_retry_after
from fashn_async._tls import Verify, context_for
from fashn_async.errors import (
    APIError,
    CertificateError,
    ClientClosedError,
    ConnectError,
    ConnectionDroppedError,
    ConnectTimeoutError,
    EventLoopError,
    NetworkTimeoutError,
    RemoteProtocolError,
    TransportError,
)

__all__ = ["Response", "Transport", "outcome_of"]


@attrs.frozen
class Response:
    """An HTTP answer, its body parsed when it is JSON.

    Attributes:
        status: The HTTP status.
        data: The parsed JSON body; ``None`` when the body is not JSON (or empty).
        headers: The answer's headers.
        is_json: Whether the body parsed as JSON (an empty body does not).
        size: Length of the body in bytes.
        sends: How many times the request went out for it: aiohttp sends a GET again,
            at once, when a kept-alive connection turns out closed (RFC 9112 9.3.1), and
            the server may have counted the first too.
    """

    status: int
    data: Any
    headers: Mapping[str, str]
    is_json: bool = True
    size: int = 0
    sends: int = 1

    @property
    def retry_after(self) -> float | None:
        """The Retry-After header in seconds, if present and readable."""
        return parse_retry_after(self.headers.get("Retry-After"))

    def error(self, route: Route | None = None) -> APIError:
        """The typed error this answer stands for (a non-2xx or an unreadable one);
        ``route`` names what a 2xx JSON answer lacks."""
        data = self.data
        if not self.is_json:  # the text is not kept: it is not the API's own
            kind = self.headers.get("Content-Type", "no content type").split(";")[0]
            data = {"message": f"HTTP {self.status}, not JSON ({kind}, {self.size} bytes)"}
        elif route is not None and 200 <= self.status < 300:
            shape, _ = body_shape(route, data, is_json=True)
            if shape is not Shape.API_ERROR:
                data = {"message": f"HTTP {self.status}, but {unexpected(route, data)}"}
        return api_error_from_response(self.status, data, retry_after=self.retry_after)


def outcome_of(route: Route, result: Response | TransportError) -> Outcome:
    """What happened, in the terms of the decision table."""
    if isinstance(result, CertificateError):
        return Outcome(Happened.UNTRUSTED)
    if isinstance(result, ConnectError):  # connect timeouts included
        return Outcome(Happened.NOT_SENT)
    if isinstance(result, NetworkTimeoutError):
        return Outcome(Happened.TIMEOUT)
    if isinstance(result, TransportError):
        return Outcome(Happened.LOST)
    shape, name = body_shape(route, result.data, is_json=result.is_json)
    return Outcome.answer(result.status, shape, name, result.retry_after)


class Transport:
    """One aiohttp session for one client; opened and closed with the client.

    Args:
        base_url: The API's address.
        api_key: Sent as ``Authorization: Bearer``; never shown.
        timeout: aiohttp's timeouts (``total``, ``sock_connect``).
        connections: Size of the connection pool.
        user_agent: The User-Agent header.
        proxy: A proxy URL for every request; ``None`` leaves it to ``trust_env``.
        trust_env: Read ``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY`` (and ``.netrc``)
            from the environment (``NO_PROXY`` by urllib's rules: README "Proxies").
        verify: The TLS certificates trusted: ``True`` (the system's store) or a
            context (``_tls.check_verify``).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Secret | str,
        timeout: aiohttp.ClientTimeout,
        connections: int,
        user_agent: str,
        proxy: str | None = None,
        trust_env: bool = True,
        verify: Verify = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._verify = verify
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self._timeout = timeout
        self._connections = connections
        self._user_agent = user_agent
        self._proxy = proxy
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @safe_repr
    def __repr__(self) -> str:
        state = "open" if self._session else ("closed" if self._closed else "new")
        proxy = f" proxy={shown_url(self._proxy)!r}" if self._proxy else ""
        return f"<Transport {shown_url(self.base_url)} {state}{proxy} trust_env={self._trust_env}>"

    def new_session(self) -> aiohttp.ClientSession:
        """A new aiohttp session with this client's settings: the one place sessions are made.

        Pool size, timeouts, User-Agent, ``proxy`` and ``trust_env`` are the client's; no
        key is in it (``Authorization`` is added per API request). :meth:`open` makes the
        client's session with it, and ``Result.save()`` a short-lived one when the client
        is closed or belongs to another event loop. Call on the loop that will use it.
        """
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, ssl=context_for(self._verify)),
            timeout=self._timeout,
            trace_configs=[_SENDING],
            headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            proxy=self._proxy,
            trust_env=self._trust_env,
            # raise_for_status stays off: every status is mapped here, without the
            # request headers (and so the key) that aiohttp's errors would carry.
        )

    async def open(self) -> None:
        """Create the session, on the running event loop."""
        if self._closed:
            raise ClientClosedError("this client was closed; create a new AsyncFashn")
        if self._session is None:
            self._loop = asyncio.get_running_loop()
            self._session = self.new_session()

    async def close(self) -> None:
        """Close the session and wait for its connections to go."""
        if self._session is not None:
            self.check_loop()
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def check_loop(self) -> None:
        """Raise EventLoopError unless called on the event loop the client was opened on."""
        if self._loop is not None and self._loop is not _running_loop():
            raise EventLoopError(
                "this AsyncFashn was opened on another event loop (a client belongs to the "
                "loop of its 'async with'); create one client per event loop"
            )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session; ClientClosedError, or EventLoopError on a foreign loop."""
        if self._session is None:
            why = "was closed" if self._closed else "is not open: use 'async with AsyncFashn()'"
            raise ClientClosedError(f"the client {why}")
        self.check_loop()
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request, once; map every failure to our errors (none chained)."""
        session = self.session
        data: Any = None
        if isinstance(body, bytes | bytearray):  # encoded already (off the loop if large)
            data = JsonBody(body)
        elif body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
        failure: TransportError
        sending = _Sending()
        try:
            answer = await self._exchange(session, method, path, data, params, sending)
            if answer is not None:
                return answer
            failure = RemoteProtocolError(
                f"{method} {path}: an answer over {MAX_ANSWER_BYTES >> 20} MiB, not read"
            )
        except aiohttp.ClientConnectorCertificateError as exc:  # (a ValueError too)
            failure = CertificateError(
                f"{method} {path}: {shown_url(self.base_url)} showed a TLS certificate not "
                f"trusted ({_verify_message(exc)}); nothing was sent. Behind a proxy that "
                "inspects TLS, trust its CA: AsyncFashn(verify='ca.pem') or SSL_CERT_FILE"
            )
        except (aiohttp.InvalidURL, ValueError):  # (its text may quote a proxy's password)
            failure = ConnectError(
                f"{method} {path}: a URL to go through cannot be read, not sent (a proxy "
                "in HTTP_PROXY or HTTPS_PROXY without its http:// scheme?)"
            )
        except aiohttp.ClientHttpProxyError as exc:  # the proxy refused to connect us
            failure = ConnectError(f"{method} {path}: the proxy answered HTTP {exc.status}")
        except aiohttp.ClientProxyConnectionError as exc:  # (its host and port: no password)
            failure = ConnectError(
                f"{method} {path}: cannot connect to the proxy {_host_port(exc)}: {exc.os_error}"
            )
        except aiohttp.ClientConnectorError as exc:
            failure = ConnectError(f"cannot connect to {shown_url(self.base_url)}: {exc.os_error}")
        except aiohttp.ConnectionTimeoutError:
            failure = ConnectTimeoutError(f"{method} {path}: no connection within the timeout")
        except TimeoutError:
            failure = NetworkTimeoutError(f"{method} {path}: no answer in time")
        except aiohttp.ServerDisconnectedError:
            failure = ConnectionDroppedError(
                f"{method} {path}: the server closed the connection without answering"
            )
        except aiohttp.ClientPayloadError:
            failure = ConnectionDroppedError(f"{method} {path}: the answer was cut off")
        except aiohttp.ClientResponseError as exc:  # malformed status line or headers
            failure = RemoteProtocolError(
                f"{method} {path}: the answer broke HTTP ({self._safe(exc.message)})"
            )
        except aiohttp.ClientOSError as exc:
            failure = ConnectionDroppedError(
                f"{method} {path}: connection error: {self._safe(exc.strerror)}"
            )
        except aiohttp.ClientError as exc:
            failure = ConnectionDroppedError(f"{method} {path}: {type(exc).__name__}")
        if not sending.started and not isinstance(failure, ConnectError):
            # It failed before its headers were written (setting up a proxy's tunnel,
            # say): nothing was sent, whatever the error looked like.
            failure = ConnectError(f"nothing was sent: {failure.message}")
        # Raised here, outside the except blocks: no aiohttp error in __context__.
        raise failure

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        data: Any,
        params: Mapping[str, str] | None,
        sending: _Sending,
    ) -> Response | None:
        """One request and its answer, read whole (None: over MAX_ANSWER_BYTES).

        A server or proxy may repeat the request's Authorization: the key goes no
        further than here (:meth:`Secret.scrub_json`; a body that is not JSON is not
        kept). aiohttp's
        response, whose repr shows the raw headers, is a local of this frame only, which
        no error :meth:`request` raises holds.
        """
        async with session.request(
            method,
            f"{self.base_url}{path}",
            data=data,
            # Built inline, never a local: a traceback formatted with its locals shows
            # no key.
            headers=self._headers(json_body=data is not None),
            params=params,
            allow_redirects=False,
            trace_request_ctx=sending,
        ) as response:
            body = await _read_capped(response)
            if body is None:
                return None
            parsed, is_json = _parse_json(body)
            return Response(
                response.status,
                self._key.scrub_json(parsed),
                _answer_headers(response.headers, self._key),
                is_json,
                len(body),
                sends=max(sending.sends, 1),
            )

    def _safe(self, text: object) -> str:
        """A short, single-line description from a library error's text field, which
        may quote what the server sent (a bad status line, a header): the key scrubbed."""
        return " ".join(self._key.scrub_text(str(text or "")).split())[:200]

    def _headers(self, *, json_body: bool) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._key.reveal()}"}
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers


#: Largest answer read, bytes: a status answer with base64 outputs (``return_base64``,
#: up to 4 samples) is some MiB; a server or proxy that sends far more is not the API.
MAX_ANSWER_BYTES = 64 << 20


async def _read_capped(response: aiohttp.ClientResponse) -> bytes | None:
    """The answer's body, or None (the connection dropped) past MAX_ANSWER_BYTES."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            response.close()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _Sending:
    """One request's trace context: how many times aiohttp began to send its headers."""

    __slots__ = ("sends",)

    def __init__(self) -> None:
        self.sends = 0

    @property
    def started(self) -> bool:
        return self.sends > 0


async def _headers_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    sending = context.trace_request_ctx
    if isinstance(sending, _Sending):
        sending.sends += 1


#: The one trace of every session: it marks each request whose headers went out.
_SENDING = aiohttp.TraceConfig()
_SENDING.on_request_headers_sent.append(_headers_sent)
_SENDING.freeze()


def _answer_headers(headers: Mapping[str, str], key: Secret) -> CIMultiDict[str]:
    """An answer's headers (names in any case), the key scrubbed from names and values; of
    Retry-After sent more than once, the longest wait (a second, longer one must not be
    lost to a first ``0``)."""
    kept = CIMultiDict(
        (key.scrub_text(name), key.scrub_text(value)) for name, value in headers.items()
    )
    waits = kept.getall("Retry-After", [])
    if len(waits) > 1:
        kept["Retry-After"] = max(waits, key=lambda value: parse_retry_after(value) or 0.0)
    return kept


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _verify_message(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """OpenSSL's words for why the certificate failed (``self-signed certificate in
    certificate chain``, ``Hostname mismatch...``)."""
    error = exc.certificate_error
    return str(getattr(error, "verify_message", None) or getattr(error, "reason", None) or error)


def _host_port(exc: aiohttp.ClientConnectorError) -> str:
    """``host:port`` of the address a connection failed to (``[v6]:port``)."""
    host = exc.host
    return f"[{host}]:{exc.port}" if ":" in host else f"{host}:{exc.port}"


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    if not raw:
        return None, False
    try:
        return json.loads(raw), True
    except (ValueError, RecursionError):
        return None, False
