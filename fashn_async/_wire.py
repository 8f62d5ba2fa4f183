"""What comes over the wire, read before anything else sees it: an answer's body (capped),
its headers (scrubbed), whether a request's headers went out (aiohttp's trace), and the
words of aiohttp's connection errors. The parts of :mod:`fashn_async._http`'s exchange
that hold no state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies

import aiohttp
from multidict import CIMultiDict

from fashn_async._redact import Secret, basic_credential, map_strings, shown_url
from fashn_async._retry import parse_retry_after
from fashn_async._validators import encodable

__all__ = [
    "MAX_ANSWER_BYTES",
    "SENDING",
    "Sending",
    "answer_headers",
    "failed_to",
    "host_port",
    "parse_json",
    "proxy_passwords",
    "sending_once",
    "read_capped",
    "verify_message",
]


#: Largest answer read, bytes: a status answer with base64 outputs (``return_base64``,
#: up to 4 samples) is some MiB; a server or proxy that sends far more is not the API.
MAX_ANSWER_BYTES = 64 << 20


async def read_capped(response: aiohttp.ClientResponse) -> bytes | None:
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


class Sending:
    """One request's trace context: how many times aiohttp began to send its headers, and
    whether it went on a kept-alive connection (one that may turn out closed)."""

    __slots__ = ("reused", "sends")

    def __init__(self) -> None:
        self.sends = 0
        self.reused = False

    @property
    def started(self) -> bool:
        return self.sends > 0


async def _headers_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    sending = context.trace_request_ctx
    if isinstance(sending, Sending):
        sending.sends += 1


async def _reused(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceConnectionReuseconnParams,
) -> None:
    sending = context.trace_request_ctx
    if isinstance(sending, Sending):
        sending.reused = True


#: The one trace of every session: it marks each request whose headers went out, and
#: each that went on a kept-alive connection.
SENDING = aiohttp.TraceConfig()
SENDING.on_request_headers_sent.append(_headers_sent)
SENDING.on_connection_reuseconn.append(_reused)
SENDING.freeze()


def sending_once(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """``session``, with aiohttp's own second send of a GET turned off (it sends one again
    at once, past the route's limiter, when a kept-alive connection turns out closed:
    RFC 9112 9.3.1). The engine sends it again instead, through the limiter, on a
    connection of its own (``TransportError.stale``). A private flag of aiohttp 3.x; with
    no such flag, aiohttp's send is booked after the fact (``TransportError.sends``)."""
    if "_retry_connection" in aiohttp.ClientSession.ATTRS:
        session._retry_connection = False
    return session


def answer_headers(headers: Mapping[str, str], key: Secret) -> CIMultiDict[str]:
    """An answer's headers (names in any case), the key scrubbed from names and values; of
    Retry-After sent more than once, the longest wait (a second, longer one must not be
    lost to a first ``0``)."""
    kept = CIMultiDict(  # (aiohttp reads bytes not UTF-8 as lone surrogates: escaped)
        (_utf8(key.scrub_text(name)), _utf8(key.scrub_text(value)))
        for name, value in headers.items()
    )
    waits = kept.getall("Retry-After", [])
    if len(waits) > 1:
        kept["Retry-After"] = max(waits, key=lambda value: parse_retry_after(value) or 0.0)
    return kept


def proxy_passwords(proxy: str | None, trust_env: bool) -> list[str]:
    """The credentials of the proxies a request may go through (``proxy``, else those
    of ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` when ``trust_env``): the password as
    written and percent-decoded, or the user name when it comes alone (a token), and the
    whole ``Basic`` credential as sent (base64 of ``user:password``: a short password's
    own base64 is too short to be searched for alone)."""
    urls = [proxy] if proxy else list(getproxies().values()) if trust_env else []
    found = []
    for url in urls:
        try:
            parts = urlsplit(url)
            user, password = parts.username, parts.password
        except ValueError:  # an unreadable URL (aiohttp refuses it: nothing is sent)
            continue
        if not user and not password:
            continue
        secret = password if password else user
        assert secret is not None
        found += [secret, unquote(secret)]
        found.append(basic_credential(unquote(user or ""), unquote(password or "")))
    return found


def verify_message(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """OpenSSL's words for why the certificate failed (``self-signed certificate in
    certificate chain``, ``Hostname mismatch...``)."""
    error = exc.certificate_error
    return str(getattr(error, "verify_message", None) or getattr(error, "reason", None) or error)


def host_port(exc: aiohttp.ClientConnectorError) -> str:
    """``host:port`` of the address a connection failed to (``[v6]:port``)."""
    host = exc.host
    return f"[{host}]:{exc.port}" if ":" in host else f"{host}:{exc.port}"


def failed_to(exc: aiohttp.ClientConnectorError, base_url: str) -> str:
    """``cannot connect to <what>: <why>``, naming the API's address, or the proxy's when
    the failure was the proxy's (its host, not the API's: a proxy whose name does not
    resolve is not the API's fault)."""
    why = str(exc.os_error) or "closed before it was made (by a proxy's tunnel?)"
    api = (urlsplit(base_url).hostname or "").strip("[]").lower()
    what = shown_url(base_url) if exc.host.strip("[]").lower() == api else None
    return f"cannot connect to {what or f'the proxy {host_port(exc)}'}: {why}"


def parse_json(raw: bytes) -> tuple[Any, bool]:
    """An answer's body parsed as JSON, and whether it was JSON. Every string in it is
    text UTF-8 can carry: a lone surrogate escape (``"\\ud800"``, valid JSON, which no
    UTF-8 text holds) is kept as the escape's characters, so an error name or message
    holding one can be printed, logged and written to a journal."""
    if not raw:
        return None, False
    try:
        return map_strings(json.loads(raw), _utf8), True
    except (ValueError, RecursionError):
        return None, False


def _utf8(text: str) -> str:
    if text.isascii() or encodable(text):  # (ASCII at once: a base64 output's megabytes)
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
