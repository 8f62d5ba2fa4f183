"""HTTP: the aiohttp session, auth, proxies, and the one place aiohttp errors become ours.

A request either returns a :class:`Response` (any HTTP status, its body read in full) or
raises a :class:`~fashn_async.errors.TransportError` that says how far it got:
:class:`ConnectError` (its subclass :class:`ConnectTimeoutError` included) means no
connection was made, so nothing was sent and even POST /v1/run may be sent again; a
timeout, a dropped connection, a cut-off body or a malformed answer
(:class:`RemoteProtocolError`) came after sending. :func:`outcome_of` turns either into
the :class:`~fashn_async._decisions.Outcome` that ``_decisions.decide`` reads.

Whether anything was sent is known, not guessed: aiohttp tells (``on_request_headers_sent``)
when it writes a request's headers; a failure before that (a proxy's CONNECT answered
with garbage) is a :class:`ConnectError` whatever aiohttp raised: nothing reached the API.

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
from typing import Any
from urllib.parse import unquote

import aiohttp
import attrs

from fashn_async._decisions import Happened, Outcome, Route, Shape, body_shape, unexpected
from fashn_async._error_map import api_error_from_response
from fashn_async._payload import JsonBody
from fashn_async._redact import Secret, safe_repr, shown_url
from fashn_async._retry import parse_retry_after
from fashn_async._shield import outlive_cancels
from fashn_async._tls import Verify, context_for
from fashn_async._wire import (
    MAX_ANSWER_BYTES,
    SENDING,
    Sending,
    answer_headers,
    failed_to,
    host_port,
    parse_json,
    proxy_passwords,
    read_capped,
    sending_once,
    verify_message,
)
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
        key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        # A proxy may echo its Proxy-Authorization: its password is scrubbed as the key is.
        self._key = key.also(proxy_passwords(proxy, trust_env))
        self._timeout = timeout
        self._connections = connections
        self._user_agent = user_agent
        self._proxy = proxy
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._posts: aiohttp.ClientSession | None = None  # POST /v1/run: fresh connections
        self._retired: list[aiohttp.ClientSession] = []  # out of step (:meth:`_retire`)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @safe_repr
    def __repr__(self) -> str:
        state = "open" if self._session else ("closed" if self._closed else "new")
        proxy = f" proxy={shown_url(self._proxy)!r}" if self._proxy else ""
        return f"<Transport {shown_url(self.base_url)} {state}{proxy} trust_env={self._trust_env}>"

    def new_session(self, *, fresh: bool = False) -> aiohttp.ClientSession:
        """A new aiohttp session with this client's settings: the one place sessions are made.

        Pool size, timeouts, User-Agent, ``proxy``, ``trust_env``: the client's; no key
        (added per API request). :meth:`open` makes the client's, ``Result.save()`` a
        short-lived one (the client closed or another loop's). Call on its loop.

        ``fresh``: every request on a connection of its own, closed after its answer
        (POST /v1/run's): a kept-alive one may hold what a broken server or proxy sent
        unasked (an answer twice, an idle ``408``), read as the next request's answer
        (README "A connection out of step"). aiohttp never sends a GET twice by itself
        (:func:`sending_once`)."""
        return sending_once(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._connections, ssl=context_for(self._verify), force_close=fresh
                ),
                timeout=self._timeout,
                trace_configs=[SENDING],
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
                proxy=self._proxy,
                trust_env=self._trust_env,
                # raise_for_status stays off: every status is mapped here, without the
                # request headers (and so the key) that aiohttp's errors would carry.
            )
        )

    async def open(self) -> None:
        """Create the session, on the running event loop."""
        if self._closed:
            raise ClientClosedError("this client was closed; create a new AsyncFashn")
        if self._session is None:
            self.check_loop()
            self._loop = _running_loop()
            self._session = self.new_session()
            self._posts = self.new_session(fresh=True)

    def _retire(self, session: aiohttp.ClientSession) -> None:
        """Use a new session from now on: one of ``session``'s kept-alive connections is
        out of step (aiohttp cannot drop one connection of a pool). Requests on it
        finish; it is closed with the client."""
        if session is self._session:
            self._retired.append(session)
            self._session = self.new_session()

    async def close(self) -> None:
        """Close the sessions and wait for their connections to go, all of them, through
        any cancellation of the caller (raised once done)."""
        if self._session is not None:
            self.check_loop()
        self._closed = True
        sessions = [s for s in (self._session, self._posts, *self._retired) if s is not None]
        self._session = self._posts = None
        self._retired = []
        closing = asyncio.ensure_future(asyncio.gather(*(s.close() for s in sessions)))
        cancelled = await outlive_cancels(closing)
        closing.result()  # (a session that failed to close says so)
        if cancelled:
            raise asyncio.CancelledError

    def check_loop(self) -> None:
        """Raise EventLoopError unless called on an asyncio loop (under trio none runs),
        the one the client was opened on."""
        if (running := _running_loop()) is None:
            raise EventLoopError("AsyncFashn needs a running asyncio loop (trio is not one)")
        if self._loop is not None and self._loop is not running:
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
        fresh: bool = False,
    ) -> Response:
        """Send one request, once; map every failure to our errors (none chained).

        A cancellation passes through with none of aiohttp's frames (they hold the
        request's headers, so the key): a caller's ``asyncio.timeout`` chains it to its
        ``TimeoutError``, which error reporters show with each frame's locals. ``fresh``
        (always for POST): on a connection of its own (:meth:`new_session`).
        """
        session = self.session
        if (method == "POST" or fresh) and self._posts is not None:
            session = self._posts  # a connection of its own
        data: Any = None
        if isinstance(body, bytes | bytearray):  # encoded already (off the loop if large)
            data = JsonBody(body)
        elif body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
        failure: TransportError
        sending = Sending()
        try:
            answer = await self._exchange(session, method, path, data, params, sending)
            if answer is not None:
                return answer
            failure = RemoteProtocolError(
                f"{method} {path}: an answer over {MAX_ANSWER_BYTES >> 20} MiB, not read"
            )
        except _OutOfStepError as exc:
            self._retire(session)
            failure = RemoteProtocolError(
                f"{method} {path}: the answer is about prediction "
                f"{self._safe(exc.args[0])!r}, another request's: the connection was out of "
                "step (a proxy or server sent something twice, say); new connections are used"
            )
        except asyncio.CancelledError as cancel:
            cancel.__traceback__ = cancel.__context__ = cancel.__cause__ = None
            raise  # (from this frame up only)
        except aiohttp.ClientConnectorCertificateError as exc:  # (a ValueError too)
            failure = CertificateError(
                f"{method} {path}: {shown_url(self.base_url)} showed a TLS certificate not "
                f"trusted ({verify_message(exc)}); nothing was sent. Behind a proxy that "
                "inspects TLS, trust its CA: AsyncFashn(verify='ca.pem') or SSL_CERT_FILE"
            )
        except (aiohttp.InvalidURL, ValueError):  # (its text may quote a proxy's password)
            failure = ConnectError(
                f"{method} {path}: a URL to go through cannot be read, not sent (a proxy "
                "in HTTP_PROXY or HTTPS_PROXY with a bad port?)"
            )
        except aiohttp.ClientHttpProxyError as exc:  # the proxy refused to connect us
            failure = ConnectError(f"{method} {path}: the proxy answered HTTP {exc.status}")
        except aiohttp.ClientProxyConnectionError as exc:  # (its host and port: no password)
            failure = ConnectError(
                f"{method} {path}: cannot connect to the proxy {host_port(exc)}: {exc.os_error}"
            )
        except aiohttp.ClientConnectorError as exc:
            failure = ConnectError(failed_to(exc, self.base_url))
        except aiohttp.ConnectionTimeoutError:
            failure = ConnectTimeoutError(f"{method} {path}: no connection within the timeout")
        except TimeoutError:
            failure = NetworkTimeoutError(f"{method} {path}: no answer in time")
        except aiohttp.ServerDisconnectedError:
            failure = ConnectionDroppedError(
                f"{method} {path}: the server closed the connection without answering"
            )
            failure.stale = sending.reused  # (RFC 9112 9.3.1: it may go again)
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
            failure.stale = sending.reused  # (a kept-alive connection found closed)
        except aiohttp.ClientError as exc:
            failure = ConnectionDroppedError(f"{method} {path}: {type(exc).__name__}")
        except Exception as exc:  # aiohttp's own assert when the client closed under it, say
            why = "the client was closed under it" if session.closed else type(exc).__name__
            failure = ConnectionDroppedError(f"{method} {path}: {why}")
        if not sending.started and not isinstance(failure, ConnectError):
            # It failed before its headers were written (setting up a proxy's tunnel,
            # say): nothing was sent, whatever the error looked like.
            failure = ConnectError(f"nothing was sent: {failure.message}")
        failure.sends = sending.sends  # (raised outside the except blocks: no aiohttp
        raise failure  # error in __context__)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        data: Any,
        params: Mapping[str, str] | None,
        sending: Sending,
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
            # Built inline, never a local: no traceback's frame locals show the key.
            headers=self._headers(json_body=data is not None),
            params=params,
            allow_redirects=False,
            trace_request_ctx=sending,
        ) as response:
            body = await read_capped(response)
            if body is None:
                return None
            parsed, is_json = parse_json(body)
            other = _about_another(method, path, parsed)
            if other is not None:  # out of step: each answer after it would be off by one
                raise _OutOfStepError(other)
            return Response(
                response.status,
                self._key.scrub_json(parsed),
                answer_headers(response.headers, self._key),
                is_json,
                len(body),
                sends=max(sending.sends, 1),
            )

    def _safe(self, text: object) -> str:
        """A short, single-line description from a library error's text field, which
        may quote what the server sent (a bad status line, a header): the key scrubbed."""
        return " ".join(self._key.scrub_text(str(text or "")).split())[:200]

    def _headers(self, *, json_body: bool) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {self._key.reveal()}"}
        return {**auth, "Content-Type": "application/json"} if json_body else auth


class _OutOfStepError(Exception):
    """An answer meant for another request came on the connection."""


def _about_another(method: str, path: str, data: Any) -> str | None:
    """The prediction a GET of ``/v1/status/<id>`` or ``/v1/cancel/<id>`` was answered
    about, when it is another one (an answer left on a kept-alive connection, read as
    this request's: aiohttp#13656); else None."""
    route, _, quoted = path.removeprefix("/v1/").partition("/")
    if method != "GET" or route not in ("status", "cancel") or not isinstance(data, dict):
        return None
    answered = data.get("id")
    return answered if isinstance(answered, str) and answered != unquote(quoted) else None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
