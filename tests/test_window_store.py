"""One rolling window, two stores: the Redis scripts answer as the in-process log does.

The limiter algorithm is tested over the in-process store on fake loop time
(test_limits.py). Here the Redis store's atomic operations, the Lua scripts run by a real
redis-server, are driven with a clock the test sets (the scripts' clock argument), next
to a :class:`MemoryWindow` on the same clock: every sequence of takes, answers, pauses
and seeds gets the same grants and the same waits from both. No sleeping: time here is a
number the test moves. Times are whole milliseconds, exact in both stores.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis_support import RedisServer

from fashn_async._coordination import _scripts
from fashn_async._window import MemoryWindow

pytestmark = pytest.mark.looptime(False)  # nothing here awaits: the clock is a variable

LIMIT, WINDOW_MS = 3, 1000
NAMES = ("PAUSE", "REPLAY", "RESTAMP", "WINDOW_ACQUIRE")


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    """A synchronous client of one redis-server for the module."""
    with RedisServer.running() as server:
        client = redis.Redis.from_url(server.url)
        try:
            yield client
        finally:
            client.close()


class RedisLog:
    """The window's scripts on a real server, each called with the test's clock (ms)."""

    def __init__(self, client: redis.Redis, clock: list[int]) -> None:
        self._clock = clock
        prefix = f"test:{{{secrets.token_hex(6)}}}"
        self._keys = [f"{prefix}:submit", f"{prefix}:submit:pause"]
        self._scripts = {name: client.register_script(getattr(_scripts, name)) for name in NAMES}
        self._ids = itertools.count()
        self._client = client

    def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=[self._clock[0] * 1000, *args])

    def take(self, amount: int) -> tuple[str | None, float]:
        grant = f"g{next(self._ids)}"
        args = [LIMIT, WINDOW_MS * 1000, amount, grant]
        granted, value = self._call("WINDOW_ACQUIRE", self._keys, args)
        return (f"{grant}:{amount}", 0.0) if granted else (None, int(value) / 1000)

    def answer(self, member: str, *, counted: bool) -> None:
        if counted:
            self._call("RESTAMP", self._keys[:1], [WINDOW_MS * 1000, member])
        else:
            self._client.zrem(self._keys[0], member)

    def pause(self, ms: int) -> None:
        self._call("PAUSE", self._keys[1:], [ms * 1000])

    def seed(self, history: list[tuple[int, int]]) -> None:
        args: list[Any] = [WINDOW_MS * 1000]
        for age, amount in history:
            args += [age * 1000, f"s{next(self._ids)}:{amount}"]
        self._call("REPLAY", self._keys[:1], args)


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("advance"), st.sampled_from([0, 1, 500, 999, 1000]) | st.integers(0, 1500)
        ),
        st.tuples(st.just("take"), st.integers(1, LIMIT), st.booleans()),
        st.tuples(st.just("pause"), st.integers(0, 1200)),
    ),
    max_size=25,
)
HISTORY = st.lists(st.tuples(st.integers(0, 1500), st.integers(1, LIMIT)), max_size=4)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=HISTORY, ops=OPS)
@example(history=[], ops=[("take", LIMIT, True), ("advance", WINDOW_MS), ("take", 1, True)])
@example(history=[(WINDOW_MS, 1), (WINDOW_MS - 1, LIMIT)], ops=[("take", 1, False)])
@example(history=[], ops=[("pause", 10), ("take", 1, True), ("advance", 10), ("take", 1, True)])
def test_redis_scripts_answer_as_the_memory_window(
    redis_client: redis.Redis, history: list[tuple[int, int]], ops: list[tuple[Any, ...]]
) -> None:
    """Seed, take (answered at once, counted or not), pause, advance: same grants, same waits."""
    clock = [10_000]
    memory = MemoryWindow(LIMIT, float(WINDOW_MS), clock=lambda: float(clock[0]))
    shared = RedisLog(redis_client, clock)
    memory.seed([(float(age), amount) for age, amount in history])
    shared.seed(history)
    for op in ops:
        if op[0] == "advance":
            clock[0] += op[1]
        elif op[0] == "pause":
            memory.pause(float(op[1]))
            shared.pause(op[1])
        else:
            _, amount, counted = op
            entry, wait = memory.take_now(amount)
            member, shared_wait = shared.take(amount)
            assert (entry is None, wait) == (member is None, shared_wait), op
            if entry is not None and member is not None:
                memory.answer(entry, counted=counted)
                shared.answer(member, counted=counted)


def test_a_grant_answered_after_its_window_counts_again_from_the_answer(
    redis_client: redis.Redis,
) -> None:
    """RESTAMP puts back a grant that outlived the window unanswered, dated by the answer."""
    clock = [0]
    shared = RedisLog(redis_client, clock)
    member, _ = shared.take(LIMIT)
    assert member is not None
    clock[0] += 2 * WINDOW_MS  # the request hung for two windows; its grant expired
    assert shared.take(LIMIT)[0] is not None  # Redis let a new one in meanwhile ...
    shared.answer(member, counted=True)  # ... and the old one is dated now, counted again
    assert shared.take(1) == (None, float(WINDOW_MS))
