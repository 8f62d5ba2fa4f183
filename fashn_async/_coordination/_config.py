"""RedisCoordination: the one option that shares a key's limits through Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from fashn_async._redact import Secret, shown_url
from fashn_async._validators import positive, shorten
from fashn_async.errors import ConfigurationError

if TYPE_CHECKING:
    from fashn_async._coordination._coordinator import Coordinator

__all__ = ["RedisCoordination"]

_SCHEMES = ("redis", "rediss", "unix")


def _check_url(instance: object, attribute: attrs.Attribute[str], value: Any) -> None:
    """Raised outside the ``except`` blocks: a parser's error may quote the password (one
    holding a ``/`` is read as the path), and ``from None`` keeps it in ``__context__``."""
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        readable = True
    except ValueError:  # an unreadable IPv6 literal
        parts, readable = None, False
    if not readable:
        raise ConfigurationError(f"the Redis URL {shown_url(value)!r} cannot be read")
    if parts is None or parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            "coordination must be a redis://, rediss:// or unix:// URL, "
            f"got {type(value).__name__} {shorten(shown_url(value))}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigurationError(f"the Redis URL {shown_url(value)!r} names no host")
    try:
        port_ok = parts.port is None or parts.port >= 0
    except ValueError:
        port_ok = False
    if not port_ok:
        raise ConfigurationError(
            f"the Redis URL {shown_url(value)!r} has a bad port (a password holding '/' "
            "must be written %2F)"
        )
    # redis-py reads a path or a ?db= that is not a number as database 0, or fails at the
    # first call: name it here (not its text: a password holding a "/" lands there).
    databases = [unquote(parts.path).strip("/")] if parts.scheme != "unix" else []
    databases += parse_qs(parts.query).get("db", [])
    if any(db and not (db.isascii() and db.isdigit()) for db in databases):
        raise ConfigurationError(
            f"the Redis URL {shown_url(value)!r} names a database that is not a number "
            "from 0 (redis://host:6379/0); a password holding '/' must be written %2F"
        )
    if len({int(db) for db in databases if db}) > 1:  # (redis-py would pick one)
        raise ConfigurationError(f"the Redis URL {shown_url(value)!r} names two databases")


def _check_prefix(instance: object, attribute: attrs.Attribute[str], value: Any) -> None:
    if not isinstance(value, str) or not value or any(c in value for c in "{}"):
        raise ConfigurationError(f"prefix must be a non-empty string without braces, got {value!r}")


@attrs.frozen
class RedisCoordination:
    """Share one API key's limits with every process that uses the same Redis server.

    ``AsyncFashn(coordination="redis://host:6379/0")`` is short for
    ``AsyncFashn(coordination=RedisCoordination("redis://host:6379/0"))``. Every process
    must use the same :class:`~fashn_async.Limits` (each enforces its own numbers).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` or
            ``unix://path``; its password is never shown.
        lease_ttl: Seconds an in-flight slot outlives a process that died holding it.
            Live processes renew theirs every ``lease_ttl / 3`` seconds.
        poll_interval: Seconds between two tries of a process waiting for an in-flight
            slot another process holds (one of its own is handed over at once).
        timeout: Seconds one Redis call may take before Redis counts as gone.
        prefix: The first part of every Redis key.

    Raises:
        ConfigurationError: ``url`` not such a URL, naming no host, with a bad port, or
            naming a database that is not a number (redis-py would read ``/cache`` as
            database 0); a setting out of range. A query option no Redis connection takes
            (``?foo=1``) is refused when a client is made with it. The password is masked.
    """

    url: str = attrs.field(validator=_check_url, repr=shown_url)
    lease_ttl: float = attrs.field(default=30.0, validator=positive, kw_only=True)
    poll_interval: float = attrs.field(default=0.1, validator=positive, kw_only=True)
    timeout: float = attrs.field(default=2.0, validator=positive, kw_only=True)
    prefix: str = attrs.field(default="fashn", validator=_check_prefix, kw_only=True)

    def coordinator(self, *, api_key: str | Secret, request_timeout: float = 60.0) -> Coordinator:
        """The per-client coordinator; needs the ``redis`` extra. ``request_timeout``:
        the client's ``timeout``, seconds.

        Raises:
            ConfigurationError: the ``redis`` package is not installed.
        """
        try:
            from fashn_async._coordination._coordinator import Coordinator
        except ImportError as exc:
            raise ConfigurationError(
                "coordination through Redis needs the redis extra: "
                f"pip install 'fashn-async[redis]' ({exc})"
            ) from None
        return Coordinator(self, api_key=api_key, request_timeout=request_timeout)
