"""InFlight, the one owner of in-flight slots: slots held until a time (an earlier run's)."""

from __future__ import annotations

import asyncio

from fashn_async._inflight import InFlight
from fashn_async._limits import Slots


async def test_slots_held_until_a_time_are_given_back_then() -> None:
    """Held until t: counted against the cap until t (a new acquire waits), then free."""
    loop = asyncio.get_running_loop()
    in_flight = InFlight(Slots(2))
    start = loop.time()
    assert await in_flight.hold_until([start + 10.0, start + 30.0, start - 1.0]) == 2
    assert in_flight.in_use == 2
    lease = await in_flight.acquire()  # waits for the first hold to end
    assert loop.time() - start == 10.0
    in_flight.release(lease)
    await asyncio.sleep(25.0)
    assert in_flight.in_use == 0


async def test_closing_gives_held_slots_back_at_once() -> None:
    """close() cancels the timers and frees their slots."""
    loop = asyncio.get_running_loop()
    in_flight = InFlight(Slots(3))
    await in_flight.hold_until([loop.time() + 100.0] * 3)
    in_flight.close()
    assert in_flight.in_use == 0
    await asyncio.sleep(200.0)  # the cancelled timers release nothing twice
    assert in_flight.in_use == 0
