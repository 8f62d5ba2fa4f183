"""The fault rules in force, the seeded draws that decide when they fire, and the answers
that mimic real networks (gateway pages, 429 bursts, truncated bodies, broken HTTP)."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
from aiohttp import web

from ._config import _HTTP_FAULT_KINDS, Fault, HttpFault, PredictionFault

__all__ = [
    "AFTER_KINDS",
    "NETWORK_KINDS",
    "FaultBook",
    "HttpPlan",
    "StalledPort",
    "disturb",
    "fault_from_json",
    "gateway_json",
    "gateway_page",
]


@attrs.define
class _Rule:
    fault: Fault
    remaining: int | None


@attrs.frozen
class HttpPlan:
    """What the faults do to one request: wait ``delay`` loop seconds, then ``action``."""

    delay: float = 0.0
    action: HttpFault | None = None


class FaultBook:
    """Fault rules in the order they were added; the first that fires wins.

    Every probability is drawn from one RNG seeded by the emulator's seed, so the same
    requests in the same order meet the same faults.
    """

    __slots__ = ("_rng", "_rules")

    def __init__(self, faults: Iterable[Fault], seed: int) -> None:
        self._rng = random.Random(f"{seed}:faults")  # noqa: S311 - seeded emulation, not security
        self._rules: list[_Rule] = []
        for fault in faults:
            self.add(fault)

    def __repr__(self) -> str:
        return f"<FaultBook rules={len(self._rules)}>"

    def add(self, fault: Fault) -> None:
        """Put ``fault`` in force after the rules already there."""
        times = fault.times if isinstance(fault, HttpFault) else None
        self._rules.append(_Rule(fault, times))

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    def _fires(self, rule: _Rule) -> bool:
        if rule.remaining == 0:
            return False
        if rule.fault.probability < 1.0 and self._rng.random() >= rule.fault.probability:
            return False
        if rule.remaining is not None:
            rule.remaining -= 1
        return True

    def for_prediction(self, image_texts: Iterable[str]) -> PredictionFault | None:
        """Return the failure a new submission with these image values ends with."""
        texts = tuple(image_texts)
        for rule in self._rules:
            fault = rule.fault
            if not isinstance(fault, PredictionFault):
                continue
            if fault.match is not None and not any(fault.match in text for text in texts):
                continue
            if self._fires(rule):
                return fault
        return None

    def for_request(self, route: str, scale: float) -> HttpPlan:
        """Return what happens to a request on ``route`` (``run``, ``status``, ...).

        Every ``slow`` rule that fires adds its delay; the first other rule that fires
        decides the outcome. ``times`` counts the requests a rule actually disturbed.
        """
        delay = 0.0
        action: HttpFault | None = None
        for rule in self._rules:
            fault = rule.fault
            if not isinstance(fault, HttpFault) or fault.route not in ("any", route):
                continue
            if fault.kind != "slow" and action is not None:
                continue
            if not self._fires(rule):
                continue
            if fault.kind == "slow":
                delay += fault.delay * scale
            else:
                action = fault
        return HttpPlan(delay, action)


def fault_from_json(data: Mapping[str, Any]) -> Fault:
    """Build a fault from ``{"type": "prediction" | "http", ...fields}``.

    Raises:
        ValueError: Unknown type, unknown field, or a field the fault refuses.
    """
    fields = dict(data)
    kind = fields.pop("type", None)
    cls: type[PredictionFault] | type[HttpFault]
    if kind == "prediction":
        cls = PredictionFault
    elif kind == "http":
        cls = HttpFault
    else:
        raise ValueError(f"type must be 'prediction' or 'http', got {kind!r}")
    known = {field.name for field in attrs.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown fields for a {kind} fault: {', '.join(unknown)}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


# -- answering as the network does -------------------------------------------------------

#: Kinds the emulator answers itself (its own errors, drops, delays and 404s).
_OWN_KINDS = frozenset({"error_5xx", "drop_before", "drop_after", "slow", "untracked"})
#: Kinds answered by :func:`disturb`: what proxies, gateways and broken servers send.
NETWORK_KINDS = frozenset(_HTTP_FAULT_KINDS) - _OWN_KINDS
#: Kinds that replace the answer after the request was handled (a submission exists).
AFTER_KINDS = NETWORK_KINDS - {
    "gateway_before",
    "gateway_json_before",
    "echo_key",
    "echo_key_page",
    "throttle",
}

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
}


def _reason(status: int) -> str:
    """The reason phrase a gateway's answer of ``status`` carries."""
    return _REASONS.get(status, "Server Error" if status >= 500 else "Error")


def gateway_page(status: int) -> str:
    """The HTML error page a gateway (nginx, a load balancer) sends: not the API's shape."""
    title = f"{status} {_reason(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


def gateway_json(status: int) -> web.Response:
    """The JSON error a gateway of its own sends: the API's shape, and a name (the
    status's reason phrase) the API never gives."""
    reason = _reason(status)
    return web.json_response(
        {"error": reason, "message": f"{status} {reason}: the upstream did not answer"},
        status=status,
    )


def _echo(request: web.Request, status: int, *, page: bool) -> web.Response:
    """An answer that repeats the request's ``Authorization`` header (the key)."""
    auth = request.headers.get("Authorization", "")
    headers = {"X-Echo-Authorization": auth}
    if not page:
        message = f"the request with Authorization: {auth} could not be served"
        return web.json_response(
            {"error": "InternalServerError", "message": message}, status=status, headers=headers
        )
    token = auth.split()[-1] if auth.split() else ""
    headers["Content-Type"] = f"text/html; charset=utf-8; echo={token}"
    return web.Response(status=status, body=f"<p>{auth}</p>".encode(), headers=headers)


#: Loop seconds after its answer that an ``answer_twice`` copy or an ``idle_408`` comes,
#: and that an ``idle_408`` connection is then closed.
STRAY_AFTER = 0.05
IDLE_408_CLOSE = 2.0
_IDLE_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def _raw_answer(status: int, body: bytes) -> bytes:
    """A whole HTTP/1.1 JSON answer, to be written as it is."""
    head = (
        f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _write_open(request: web.Request, data: bytes) -> None:
    """Write bytes straight to the socket, leaving it open."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.write(data)


def _write_raw(request: web.Request, data: bytes) -> None:
    """Write bytes straight to the socket and close it: whatever HTTP says."""
    transport = request.transport
    if transport is not None:
        transport.write(data)
        transport.close()


async def disturb(
    request: web.Request,
    fault: HttpFault,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Answer ``request`` as ``fault`` says, for the kinds that mimic real networks.

    The ``*_after`` kinds (and ``truncated``, ``not_json``, ``no_id``, ``other_id``,
    ``patched``, ``cut_off``, ``bad_status_line``) run the handler first, so a
    submission is created and counted, and then replace its answer.
    """
    kind = fault.kind
    if kind == "gateway_before":
        return web.Response(
            status=fault.status, text=gateway_page(fault.status), content_type="text/html"
        )
    if kind == "gateway_json_before":
        return gateway_json(fault.status)
    if kind in ("echo_key", "echo_key_page"):
        return _echo(request, fault.status, page=kind == "echo_key_page")
    if kind == "throttle":
        headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
        return web.json_response(
            {"error": fault.code, "message": "The emulator injected a 429."},
            status=429,
            headers=headers,
        )
    response = await handler(request)
    body = response.body if isinstance(response, web.Response) else b""
    data = body if isinstance(body, bytes) else b""
    if kind == "gateway_after":
        return web.Response(
            status=fault.status, text=gateway_page(fault.status), content_type="text/html"
        )
    if kind == "gateway_json_after":
        return gateway_json(fault.status)
    if kind == "truncated":
        return web.Response(
            status=response.status, body=data[: len(data) // 2], content_type="application/json"
        )
    if kind == "not_json":
        return web.Response(status=200, text=gateway_page(200), content_type="text/html")
    if kind == "no_id":
        return web.json_response({"error": None})
    if kind == "other_id":
        answer = json.loads(data) if data else {}
        if isinstance(answer, dict):
            answer["id"] = f"other-than-{answer.get('id')}"
        return web.json_response(answer, status=response.status)
    if kind == "patched":
        answer = json.loads(data) if data else {}
        return web.json_response({**answer, **fault.patch} if isinstance(answer, dict) else answer)
    if kind == "cut_off":  # the head, and half the body it announces
        _write_raw(request, _raw_answer(response.status, data)[: -(len(data) - len(data) // 2)])
        return web.Response()
    if kind == "bad_status_line":
        _write_raw(request, b"HTTP/1.1 2OO SURE\r\nContent-Length: 2\r\n\r\n{}")
        return web.Response()
    transport = request.transport
    later = asyncio.get_running_loop().call_later
    if kind == "answer_twice" and transport is not None:  # the copy once it idles
        later(STRAY_AFTER, _write_open, request, _raw_answer(response.status, data))
        return response
    if kind == "idle_408" and transport is not None:  # closed a while after, as busy ones do
        later(STRAY_AFTER, _write_open, request, _IDLE_408)
        later(STRAY_AFTER + IDLE_408_CLOSE, _write_raw, request, b"")
        return response
    raise AssertionError(f"not a network fault kind: {kind}")


class StalledPort:
    """A loopback port where TCP connections are never made: every connect times out.

    A listening socket whose accept queue is full (backlog 0, one connection parked in
    it) and that never accepts: the kernel drops every further SYN, so a client waits
    for its connect timeout, exactly as with a server that is down behind a firewall.
    Nothing is ever sent. ``release()`` closes it, so an :class:`Emulator` can then be
    started on :attr:`port` and the client's next connection succeeds.

    Example::

        with StalledPort() as stalled:
            ...  # a client on stalled.url times out connecting
            stalled.release()
            async with Emulator(port=stalled.port) as emu:
                ...  # the same URL now answers
    """

    __slots__ = ("_filler", "_listener", "port")

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener: socket.socket | None = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        # Park one connection in the queue: from now on it is full.
        self._filler: socket.socket | None = socket.create_connection((host, self.port), 5)

    def __repr__(self) -> str:
        state = "stalled" if self._listener is not None else "released"
        return f"<StalledPort {self.port} {state}>"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        """Close the port; it is free for a server."""
        for sock in (self._filler, self._listener):
            if sock is not None:
                sock.close()
        self._filler = self._listener = None

    def __enter__(self) -> StalledPort:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
