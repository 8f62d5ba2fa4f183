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
from fashn_async._window import MemoryWindow, counted_by

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
        self._epoch, self._version = b"", 0
        self._scripts = {name: client.register_script(getattr(_scripts, name)) for name in NAMES}
        self._ids = itertools.count()
        self._client = client

    def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=[self._clock[0] * 1000, *args])

    def take(self, amount: int) -> tuple[str | None, float]:
        grant = f"g{next(self._ids)}"
        args = [LIMIT, WINDOW_MS * 1000, amount, grant, self._epoch, grant, 0, self._version, 0]
        granted, value, self._epoch, _, self._version = self._call(
            "WINDOW_ACQUIRE", [*self._keys, f"{self._keys[0]}:members"], args
        )
        return (f"{grant}:{amount}", 0.0) if granted else (None, int(value) / 1000)

    def answer(self, member: str, *, counted: bool, later: int = 0) -> None:
        """Date ``member`` ``later`` ms after now (as RedisWindow.answer), or drop it."""
        if counted:
            self._call("RESTAMP", self._keys[:1], [WINDOW_MS * 1000, later * 1000, member])
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
            st.just("advance"), st.sampled_from([0, 1, 500, 999, 1000]) | st.integers(0, 2500)
        ),
        st.tuples(st.just("send"), st.integers(1, LIMIT)),
        st.tuples(
            st.just("end"),
            st.integers(0, 3),  # which request still out
            st.booleans(),  # counted
            st.booleans(),  # answered
        ),
        st.tuples(st.just("pause"), st.integers(0, 1200)),
    ),
    max_size=25,
)
HISTORY = st.lists(st.tuples(st.integers(0, 1500), st.integers(1, LIMIT)), max_size=4)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=HISTORY, ops=OPS)
@example(
    history=[], ops=[("send", LIMIT), ("end", 0, True, True), ("advance", WINDOW_MS), ("send", 1)]
)
@example(history=[(WINDOW_MS, 1), (WINDOW_MS - 1, LIMIT)], ops=[("send", 1)])
@example(history=[], ops=[("pause", 10), ("send", 1), ("advance", 10), ("send", 1)])
@example(  # ended unanswered, dated 1 ms ahead: Redis asks again after a window, not 1001
    history=[], ops=[("send", 1), ("advance", 1), ("end", 0, True, False), ("send", 3)]
)
@example(  # out 400 ms, no answer: dated 400 ms after it ended, counted until 1800
    history=[],
    ops=[
        ("send", LIMIT),
        ("advance", 400),
        ("end", 0, True, False),
        ("advance", 1399),
        ("send", 1),
    ],
)
@example(  # out longer than a window: it counts meanwhile
    history=[], ops=[("send", LIMIT), ("advance", 2500), ("send", 1)]
)
def test_redis_scripts_answer_as_the_memory_window(
    redis_client: redis.Redis, history: list[tuple[int, int]], ops: list[tuple[Any, ...]]
) -> None:
    """Seed, send (the request stays out), end a request that is out (answered or not,
    counted or not), pause, advance: the same grants from both stores, and the same waits
    while no request is out.

    RedisWindow dates a grant whose request is out "now" again every third of a window;
    here, before every take (what the in-process log does by counting it as "now"). While
    a request is out the waits may differ: the log says "until an answer", Redis "until
    the grant would leave the window", and a waiter asks again then.
    """
    clock = [10_000]
    memory = MemoryWindow(LIMIT, float(WINDOW_MS), clock=lambda: float(clock[0]))
    shared = RedisLog(redis_client, clock)
    memory.seed([(float(age), amount) for age, amount in history])
    shared.seed(history)
    out: list[tuple[Any, str, int]] = []  # (log entry, Redis member, granted at)
    for op in ops:
        if op[0] == "advance":
            clock[0] += op[1]
        elif op[0] == "pause":
            memory.pause(float(op[1]))
            shared.pause(op[1])
        elif op[0] == "send":
            for _, member, _ in out:
                shared.answer(member, counted=True)  # dated "now" again: still out
            entry, wait = memory.take_now(op[1])
            member, shared_wait = shared.take(op[1])
            assert (entry is None) == (member is None), op
            if not out:
                # The same wait; or, where a grant dated ahead binds (the script cannot
                # tell one whose request is still out, re-dated any moment, from one
                # dated ahead for good), a window: asked again sooner, never later.
                assert shared_wait == wait or shared_wait == WINDOW_MS < wait, op
            if entry is not None and member is not None:
                out.append((entry, member, clock[0]))
        elif out:
            _, which, counted, answered = op
            entry, member, granted = out.pop(which % len(out))
            memory.answer(entry, counted=counted, answered=answered)
            later = counted_by(clock[0], granted, answered=answered) - clock[0]
            shared.answer(member, counted=counted, later=round(later))


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


def test_a_request_that_got_no_answer_is_dated_as_long_again_as_it_was_out() -> None:
    """Out 400 ms, no answer: the server may count it up to 400 ms after the client gave
    up, so the grant counts until 400 + 400 + window; answered, until 400 + window."""
    clock = [0]
    memory = MemoryWindow(LIMIT, float(WINDOW_MS), clock=lambda: float(clock[0]))
    unanswered, _ = memory.take_now(LIMIT)
    clock[0] = 400
    memory.answer(unanswered, counted=True, answered=False)
    assert memory.take_now(1) == (None, 800.0 + WINDOW_MS - 400)
    assert counted_by(400.0, 0.0, answered=True) == 400.0
    assert counted_by(400.0, 0.0, answered=False) == 800.0
    assert counted_by(5000.0, 0.0, answered=False) == 10000.0  # longer than a window too
    assert counted_by(400.0, 900.0, answered=False) == 400.0  # (a clock gone back)


@pytest.mark.parametrize("lost", [0, 1, 2])
def test_an_older_copy_of_the_log_is_a_new_epoch(redis_client: redis.Redis, lost: int) -> None:
    """The log put back as it was ``lost`` grants earlier (a snapshot loaded, a replica
    that lagged): the epoch member is the same, the version lower than the caller knew,
    so the caller is told the data was lost (2), and a new epoch begins; the same copy
    put back with no grant since is no loss."""
    log = RedisLog(redis_client, [0])
    key = log._keys[0]
    assert log.take(1)[0] is not None
    snapshot = redis_client.dump(key)
    assert snapshot is not None
    for _ in range(lost):
        assert log.take(1)[0] is not None
    epoch, version = log._epoch, log._version
    redis_client.restore(key, 0, snapshot, replace=True)
    args = [LIMIT, WINDOW_MS * 1000, 1, "g", epoch, "t", 0, version, 0]
    granted, _, new_epoch, _, new_version = log._call(
        "WINDOW_ACQUIRE", [*log._keys, f"{key}:members"], args
    )
    assert (granted == 2) is (lost > 0)
    assert (new_epoch != epoch) is (lost > 0)
    assert new_version == (0 if lost else version + 1)
