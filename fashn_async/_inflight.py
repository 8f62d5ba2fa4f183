"""In flight: the one owner of the predictions a client counts against ``Limits.in_flight``.

The API counts a prediction in progress from its POST until it ends; so does the client.
:class:`InFlight` owns that state: the slots taken from a :class:`~fashn_async._limits.SlotGate`
(this process's :class:`~fashn_async._limits.Slots`, or leases shared through Redis) and
the predictions that keep a slot after the call that took it has returned (those of a
bare ``submit()``, until this client sees them end), and how many predictions each
waiter (a batch; ``run()`` and ``wait()`` together) is waiting for, which a batch's
``BatchProgress.running`` reports. Nothing else counts slots, keeps leases or counts
running predictions: the submitter, the engine and the batch go through it.

Reads stay reads: :attr:`in_use` and :meth:`holding` change nothing. The one side effect
of seeing a prediction's status is named, :meth:`seen_done`, and called by whoever read
it (``AsyncFashn.status()``, a cancel), never by a status read itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from fashn_async._limits import Lease, SlotGate
from fashn_async._redact import safe_repr

__all__ = ["InFlight"]


class InFlight:
    """Slots held now, and which submitted predictions hold one past their call.

    Args:
        gate: Where slots come from; its capacity is ``Limits.in_flight``.
    """

    def __init__(self, gate: SlotGate) -> None:
        self.gate = gate
        #: Predictions of a bare ``submit()``: they hold their slot until seen done.
        self._held: dict[str, Lease] = {}
        #: Predictions created (or given by id) and being waited for, by who waits.
        self._running: dict[object, int] = {}
        #: Slots held for predictions this client did not make, until a loop time.
        self._until: dict[asyncio.TimerHandle, Lease] = {}

    @safe_repr
    def __repr__(self) -> str:
        return (
            f"<InFlight in_use={self.in_use} running={sum(self._running.values())} "
            f"held={len(self._held)} held_until={len(self._until)} gate={self.gate!r}>"
        )

    def running(self, owner: object = None) -> int:
        """Predictions ``owner`` (a batch; None: ``run()`` and ``wait()``) is waiting for."""
        return self._running.get(owner, 0)

    def started(self, owner: object = None) -> None:
        """A prediction of ``owner`` exists on the server and is waited for."""
        self._running[owner] = self._running.get(owner, 0) + 1

    def ended(self, owner: object = None) -> None:
        """A prediction :meth:`started` for ``owner`` is no longer waited for."""
        left = self._running[owner] - 1
        if left:
            self._running[owner] = left
        else:
            del self._running[owner]

    @property
    def in_use(self) -> int:
        """Slots this process holds now (calls under way and held predictions)."""
        return self.gate.in_use

    def holding(self, prediction_id: str) -> bool:
        """Whether ``prediction_id`` holds a slot past the call that submitted it."""
        return prediction_id in self._held

    async def acquire(self) -> Lease:
        """Wait for a free slot (in arrival order) and take it."""
        return await self.gate.acquire()

    def release(self, lease: Lease) -> None:
        """Give the slot of ``lease`` back."""
        self.gate.release(lease)

    def release_at(self, lease: Lease, when: float) -> None:
        """Give the slot of ``lease`` back at loop time ``when`` (at once if it is past):
        for a prediction left running that the server still counts in progress."""
        loop = asyncio.get_running_loop()
        if when <= loop.time():
            self.gate.release(lease)
            return
        self._until[loop.call_at(when, self._expire, lease)] = lease

    def hold(self, prediction_id: str, lease: Lease) -> None:
        """Keep ``lease``'s slot for ``prediction_id`` until it is seen done."""
        self._held[prediction_id] = lease

    def take_held(self, prediction_id: str) -> Lease | None:
        """The slot ``prediction_id`` holds, handed to a caller who now polls it; or None."""
        return self._held.pop(prediction_id, None)

    def seen_done(self, prediction_id: str) -> None:
        """``prediction_id`` was seen ended (or cancelled): give back a slot it holds."""
        lease = self._held.pop(prediction_id, None)
        if lease is not None:
            self.gate.release(lease)

    async def hold_until(self, until: Iterable[float]) -> int:
        """Count predictions this client knows nothing of but that may still run (an
        earlier process's, say) against the cap, each until a loop time in ``until``.

        A slot is taken for each time still ahead (waiting for one if none is free) and
        given back at that time. Returns how many were taken.
        """
        loop = asyncio.get_running_loop()
        taken = 0
        for when in sorted(until):
            if when <= loop.time():
                continue
            lease = await self.gate.acquire()
            handle = loop.call_at(when, self._expire, lease)
            self._until[handle] = lease
            taken += 1
        return taken

    def _expire(self, lease: Lease) -> None:
        for handle, held in list(self._until.items()):
            if held is lease:
                del self._until[handle]
        self.gate.release(lease)

    def close(self) -> None:
        """Give back every slot held until a time, now (the client is closing)."""
        for handle, lease in self._until.items():
            handle.cancel()
            self.gate.release(lease)
        self._until.clear()
