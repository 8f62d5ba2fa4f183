"""When a Redis that answers is still not trusted with the limits: the probation policy.

A Redis restart, a ``FLUSHALL`` or an eviction loses each piece of data once (a window's
log, the leases), or stops answering once: each client holds its grants for the link's
``hold`` and goes on sharing (``_link``). A Redis that does so again and again (a tiny
``maxmemory`` evicting the keys, a loop of flushes or restarts) would start a hold at
every loss and grant nothing at all. So the same trouble twice within a probation period
puts the client on probation: it keeps to its local share, as while Redis is away, until
Redis has kept its data and answered for a whole period. Pure: times come as arguments.
"""

from __future__ import annotations

import math

from fashn_async._redact import safe_repr

__all__ = ["Probation"]


class Probation:
    """One client's probation of Redis.

    Args:
        period: Seconds of the first probation, and how close together two losses of one
            piece of data (or two outages) must come to count as flapping.
        cap: The longest probation: each one that begins less than ``cap`` after the
            last ended lasts twice the last, up to ``cap``.
    """

    def __init__(self, period: float, cap: float) -> None:
        self.base, self.cap = period, max(cap, period)
        #: Seconds the current or next probation lasts.
        self.period = period
        #: Loop time the probation ends (in the past: not on one), unless extended.
        self.until = -math.inf
        self._last: dict[str, float] = {}  # piece of data ("answers": an outage) -> loop time

    @safe_repr
    def __repr__(self) -> str:
        return f"<Probation period={self.period:g} until={self.until:g}>"

    def active(self, now: float) -> bool:
        """Whether the client is on probation at ``now``."""
        return now < self.until

    def trouble(self, piece: str, now: float) -> float | None:
        """Note a loss of ``piece`` (``"answers"``: Redis stopped answering) at ``now``.

        Returns:
            Seconds since the last loss of the same piece, or since the last probation
            ended, when this one begins a probation (it came within a period of either),
            else None. On probation already, any trouble starts the period again (Redis
            must keep its data and answer for a whole one) and None is returned.
        """
        last, self._last[piece] = max(self._last.get(piece, -math.inf), self.until), now
        if self.active(now):
            self.until = max(self.until, now + self.period)
            return None
        if now - last >= self.base:
            return None
        self.period = min(2 * self.period, self.cap) if now - self.until < self.cap else self.base
        self.until = now + self.period
        return now - last

    def join(self, until: float, now: float) -> bool:
        """Another client of the key is on probation until ``until`` (loop time): so is
        this one, at least that long. Returns whether this one was not already."""
        began = until > now and not self.active(now)
        self.until = max(self.until, until)
        return began
