"""Hooks as one object: a BatchEvents hears every step of every item; a hook that raises
fails its item, stops the batch with EventHookError, and leaves no grant, slot, task or
running prediction behind."""

from __future__ import annotations

import pytest
from batch_support import assert_idle, distinct

from fashn_async import AsyncFashn, BatchEvents, BatchProgress, BatchResult, errors
from fashn_async.testing import Emulator, HttpFault

N = 6


class Recorder(BatchEvents):
    """Records every event; raises ``Boom`` at the chosen one."""

    def __init__(self, fail_on: str | None = None, at: int = 2) -> None:
        self.events: list[tuple[str, int | None]] = []
        self.fail_on = fail_on
        self.at = at
        self.progress_calls = 0

    def _maybe_fail(self, name: str, index: int) -> None:
        if name == self.fail_on and index == self.at:
            raise Boom(f"{name} failed for {index}")

    def sending(self, index: int) -> None:
        self.events.append(("sending", index))
        self._maybe_fail("sending", index)

    def submitted(self, index: int, prediction_id: str) -> None:
        self.events.append(("submitted", index))
        self._maybe_fail("submitted", index)

    def not_created(self, index: int) -> None:
        self.events.append(("not_created", index))
        self._maybe_fail("not_created", index)

    def progress(self, progress: BatchProgress) -> None:
        self.progress_calls += 1
        self._maybe_fail("progress", self.progress_calls)


class Boom(Exception):
    """A hook's own failure."""


async def test_one_object_hears_every_step(client: AsyncFashn, emulator: Emulator) -> None:
    """sending, then submitted, for each index; progress on every change, ending at the
    batch's final counts."""
    emulator.inject(HttpFault(kind="error_5xx", route="run", times=1, status=503))
    events = Recorder()
    batch = client.batch(distinct(emulator, N), events=events)
    results = [r async for r in batch]
    assert all(r.ok for r in results)
    # The one POST refused with a 503 (whichever item's reached the server first) was
    # sent again; every other item was sent once.
    steps = {index: [name for name, i in events.events if i == index] for index in range(N)}
    refused = [index for index, names in steps.items() if "not_created" in names]
    assert len(refused) == 1
    assert steps.pop(refused[0]) == ["sending", "not_created", "sending", "submitted"]
    assert all(names == ["sending", "submitted"] for names in steps.values())
    # A read, a submission and an end per item.
    assert events.progress_calls == 3 * N
    assert batch.progress == BatchProgress(read=N, submitted=N, running=0, done=N, failed=0)


@pytest.mark.parametrize(
    ("hook", "at"),
    [
        ("sending", 2),
        ("submitted", 2),
        ("not_created", 2),
        ("progress", 4),  # while the items are read
        ("progress", 3 * N),  # the last update of all: a completed item's end
    ],
)
@pytest.mark.parametrize("cancel_on_exit", [True, False])
async def test_a_raising_hook_settles_everything(
    client: AsyncFashn, emulator: Emulator, hook: str, at: int, cancel_on_exit: bool
) -> None:
    """The hook's item fails with EventHookError, the batch raises EventHookError after
    its running items, the POST of a failed sending hook never goes out, a prediction
    created before a failed submitted hook is cancelled, and the limiter, the slots and
    the server are idle afterwards."""
    if hook == "not_created":
        emulator.inject(HttpFault(kind="error_5xx", route="run", times=N, status=503))
    events = Recorder(fail_on=hook, at=at)
    results: list[BatchResult] = []
    with pytest.raises(errors.EventHookError, match="the batch stopped") as caught:
        async for result in client.batch(
            distinct(emulator, N), events=events, cancel_on_exit=cancel_on_exit
        ):
            results.append(result)
    assert isinstance(caught.value.__cause__, Boom)
    failed = [r for r in results if isinstance(r.error, errors.EventHookError)]
    # The hook's own item; the items not sent by then fail as "not sent", never sent.
    unsent = [r for r in failed if "was not sent" in str(r.error)]
    assert all(r.prediction_id is None for r in unsent)
    failed = [r for r in failed if r not in unsent]
    assert len(failed) == 1
    assert isinstance(failed[0].error, errors.EventHookError)
    assert isinstance(failed[0].error.__cause__, Boom)
    assert len({r.index for r in results}) == len(results)
    report = emulator.report()
    if hook == "sending":
        assert failed[0].prediction_id is None
        assert len(report.accepted) == sum(1 for name, _ in events.events if name == "submitted")
    if hook == "submitted":
        assert failed[0].prediction_id in report.cancels
    assert_idle(client, emulator)
