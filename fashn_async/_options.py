"""The client's options and arguments, checked before anything is opened or sent.

Each check raises the typed error a caller can act on (ConfigurationError for options,
InvalidRequestError for a call's arguments), naming the option and never the API key.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies, proxy_bypass

from fashn_async._coordination import RedisCoordination
from fashn_async._limits import Limits
from fashn_async._models import ModelRequest, TryOnRequest
from fashn_async._polling import Polling
from fashn_async._redact import shown_url
from fashn_async._retry import RetryPolicy
from fashn_async._validators import config_int, encodable, shorten, timeout_seconds
from fashn_async.errors import ConfigurationError, InvalidRequestError

__all__ = [
    "DEFAULT_BASE_URL",
    "check_base_url",
    "check_batch_input",
    "check_coordination",
    "check_env_proxy",
    "check_flag",
    "check_options",
    "check_proxy",
    "checked_api_key",
]

#: The API's address.
DEFAULT_BASE_URL = "https://api.fashn.ai"


def checked_api_key(key: object) -> str:
    """The API key without surrounding whitespace (a line end pasted with it, say).

    Raises:
        ConfigurationError: no key, one not a str, one holding a space, line break or
            other control character inside (an HTTP header cannot carry it), a non-ASCII
            character, a quote, backslash, ``<``, ``>`` or ``&`` (escaped in a repr, JSON
            or HTML, where scrubbing would not find it), or one under 12 or over 4,096
            characters; the key is never shown.
    """
    problem = _api_key_problem(key)
    if problem is not None:
        del key  # (a traceback's frame locals, shown by error reporters, must not hold it)
        raise ConfigurationError(problem)
    assert isinstance(key, str)
    return key.strip()


def _api_key_problem(key: object) -> str | None:
    """What is wrong with an API key, in words that do not show it; None if nothing."""
    if key is not None and not isinstance(key, str):  # (its truth or length may raise)
        return f"the API key must be a str, got {type(key).__name__} (not shown here)"
    if not key or not key.strip():
        return "no API key: pass api_key=... or set the FASHN_API_KEY environment variable"
    key = key.strip()
    if any(char.isspace() or not char.isprintable() for char in key):
        return (
            "the API key holds a space, line break or other control character inside it "
            "(not shown here); an HTTP header cannot carry it: check how it was copied"
        )
    if not key.isascii():
        return (
            "the API key holds a non-ASCII character (not shown here); API keys are "
            "ASCII: check how it was copied (a typographic quote or dash, say)"
        )
    if _ESCAPED.intersection(key):
        # A repr, JSON or HTML would show such a key escaped, where scrubbing cannot
        # find it: refused, as no API key holds one.
        return (
            "the API key holds a quote, backslash, <, > or & (not shown here); API keys "
            "do not: check how it was copied"
        )
    if len(key) < MIN_KEY_LENGTH:
        # A short key is found inside the API's own answers (an id, a status, a URL),
        # which scrubbing would then rewrite: the client would poll an id that is not.
        return (
            f"the API key is {len(key)} characters long (not shown here); API keys are "
            f"at least {MIN_KEY_LENGTH}: check what was pasted"
        )
    if len(key) > MAX_KEY_LENGTH:
        return (
            f"the API key is {len(key)} characters long (not shown here), more than an "
            f"HTTP header line carries ({MAX_KEY_LENGTH}): check what was pasted"
        )
    return None


#: Characters a repr (``\'``, ``\\``), JSON (``\"``) or HTML (``&lt;``) escapes.
_ESCAPED = frozenset("\"'\\<>&")
#: Longest key sent: servers read header lines of 8 KiB at most (aiohttp 8,190 bytes,
#: nginx's 8k buffers); the API's keys are far shorter.
MAX_KEY_LENGTH = 4096
#: Shortest key accepted: every piece of the key is hidden wherever it appears, and a key
#: of a few characters (or a word) appears in answers the client acts on.
MIN_KEY_LENGTH = 12
#: The key of a client that sends nothing (a finished bulk job re-run; a base URL read).
UNUSED_KEY = "key-never-sent"


def check_flag(name: str, value: object) -> bool:
    """``True`` or ``False`` exactly (``"no"`` is truthy: it must not read as True).

    Raises:
        ConfigurationError: naming the option and the value.
    """
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {shorten(value)}")
    return value


def _url_text_problem(value: str) -> str | None:
    if not encodable(value):
        return "it holds a lone surrogate code point, which UTF-8 cannot carry"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "it holds white space or a control character"
    return None


def check_coordination(value: object) -> RedisCoordination | None:
    if value is None or isinstance(value, RedisCoordination):
        return value
    if isinstance(value, str):
        return RedisCoordination(value)
    raise ConfigurationError(
        "coordination must be a redis:// URL, a RedisCoordination or None, "
        f"got {type(value).__name__}"
    )


def check_proxy(proxy: object) -> str | None:
    if proxy is None:
        return None
    if not isinstance(proxy, str):
        raise ConfigurationError(
            f"proxy must be an http(s) URL or None, got {type(proxy).__name__} "
            f"{shorten(shown_url(proxy))}"
        )
    problem = _url_text_problem(proxy)
    if problem:  # the URL may hold a password: not shown
        raise ConfigurationError(f"proxy must be an http(s) URL or None: {problem}")
    try:
        parts = urlsplit(proxy)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # an unreadable IPv6 literal, a port out of 0-65535
        usable = False
    if not usable:
        raise ConfigurationError(
            f"proxy must be an http(s) URL or None, got {shorten(shown_url(proxy))}"
        )
    return proxy


def check_env_proxy(base_url: str) -> None:
    """Refuse the environment's proxy for ``base_url`` (``HTTP_PROXY`` / ``HTTPS_PROXY``,
    either case, unless ``NO_PROXY`` exempts its host: as aiohttp reads them) when aiohttp
    cannot use it: it takes only ``http://`` proxies with a host from there. An
    ``https://`` one it ignores, and requests would go direct, past the proxy (so would
    one with no host, ``http://``); a ``socks5://`` one it would speak HTTP to; one
    without a scheme it cannot read.

    Raises:
        ConfigurationError: naming the variable and the proxy (its password masked).
    """
    parts = urlsplit(base_url)
    url = getproxies().get(parts.scheme)
    if not url or (parts.hostname and proxy_bypass(parts.hostname)):
        return
    try:
        proxy = urlsplit(url)
        scheme, host = proxy.scheme.lower() if "://" in url else "", proxy.hostname
    except ValueError:  # (an unreadable IPv6 literal, a bad port)
        scheme, host = "?", None
    if scheme == "http" and host:
        return
    why = {
        "https": "aiohttp ignores an https:// proxy given there: requests would go direct",
        "http": "it names no host: requests would go direct",
        "": "it has no http:// scheme",
        "?": "it cannot be read as a URL",
    }.get(scheme, f"aiohttp does not speak {scheme} to a proxy")
    lower = f"{parts.scheme}_proxy"  # (urllib reads it first: the one in force)
    name = lower if os.environ.get(lower) else lower.upper()
    raise ConfigurationError(
        f"{name} in the environment is {shorten(shown_url(url))}, which cannot be used "
        f"for {shown_url(base_url)}: {why}. Set it to an http:// URL or unset it; in "
        "Python, pass proxy='https://...' for a proxy that speaks TLS, or trust_env=False"
    )


def check_base_url(base_url: str) -> str:
    """An http(s) URL with a host and a port from 1 to 65535, as printable UTF-8 text;
    returned with its scheme and host in lower case and no trailing ``/``.

    Raises:
        ConfigurationError: naming base_url, the value (shortened) and what is wrong.
    """
    problem = _url_text_problem(base_url) if isinstance(base_url, str) else None
    if problem:
        raise ConfigurationError(
            f"base_url must be an http(s) URL: {problem}, got {shorten(shown_url(base_url))}"
        )
    try:
        parts = urlsplit(base_url) if isinstance(base_url, str) else None
        port_ok = parts is not None and parts.port != 0
    except ValueError:  # a port out of 0-65535, or an unreadable IPv6 literal
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigurationError(
            f"base_url must be an http(s) URL, got {shorten(shown_url(base_url))}"
        )
    if "@" in parts.netloc:  # aiohttp refuses URL credentials next to the Bearer header
        raise ConfigurationError(
            f"base_url must not hold a user or password ({shown_url(base_url)}): "
            "the API key goes in api_key="
        )
    # Scheme and host in lower case (both are case-insensitive): one API, one spelling.
    return urlunsplit(parts._replace(netloc=parts.netloc.lower())).rstrip("/")


def check_options(
    *,
    timeout: Any,
    connect_timeout: Any,
    max_connections: Any,
    limits: Any,
    polling: Any,
    retry: Any,
) -> None:
    timeout_seconds("timeout", timeout)
    timeout_seconds("connect_timeout", connect_timeout)
    config_int("max_connections", max_connections)
    kinds = (
        ("limits", limits, Limits),
        ("polling", polling, Polling),
        ("retry", retry, RetryPolicy),
    )
    for name, value, kind in kinds:
        if value is not None and not isinstance(value, kind):
            raise ConfigurationError(
                f"{name} must be a {kind.__name__} or None, got {type(value).__name__}"
            )


def check_batch_input(requests: object) -> None:
    if isinstance(requests, str | bytes | bytearray | Mapping | TryOnRequest | ModelRequest):
        raise InvalidRequestError(
            "batch() takes an iterable of items (a list, a generator, an async iterable), "
            f"got a single {type(requests).__name__}; wrap one request in a list"
        )
    if not isinstance(requests, Iterable | AsyncIterable):
        raise InvalidRequestError(
            f"batch() takes an iterable of items, got {type(requests).__name__}"
        )
