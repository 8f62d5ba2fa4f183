"""The polling loop: sleep until a prediction's next poll is due, ask, learn, repeat.

Every poller of one client shares a :class:`Poller`: one :class:`CompletionModel` per
latency class, the status budget's pressure (how many predictions are being polled
where completions are likely, against the budget's rate), and the status call itself,
which it is given (the engine's, through the shared status budget). The plan of each
poll is pure (:class:`~fashn_async._plan.PollPlan`); this module only sleeps and calls.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import anyio

from fashn_async._limits import RateLimiter
from fashn_async._models import PredictionStatus
from fashn_async._plan import PollPlan
from fashn_async._polling import LatencyClass, Polling, pressure, prior_for, spacing
from fashn_async._redact import safe_repr
from fashn_async._sources import in_worker
from fashn_async._survival import CompletionModel
from fashn_async._turnbull import EPSILON, Fit
from fashn_async.errors import FashnError, PollingError

__all__ = ["Poller", "StatusCall"]

#: Longest sleep before a planned poll is planned again, in poll spacings (``target_lag``).
REPLAN = 4.0
#: One status call through the status budget: (prediction id, priority, deadline: the
#: loop time past which it goes ahead of every finite priority, or None) -> (its status,
#: the loop time its request went out).
StatusCall = Callable[[str, float, float | None], Awaitable[tuple[PredictionStatus, float]]]
#: Cancels a prediction on the server, best effort, never raising.
CancelCall = Callable[[str], Awaitable[None]]


class Poller:
    """Polls predictions to their end, learning each latency class's completion times.

    Args:
        polling: The policy.
        status: Makes one status call through the client's status budget.
        budget: The status budget (its rate sets how fast the spacing may tighten);
            None: no budget, always idle.
        rng: Draws the exploring first polls (seed it for a repeatable run).
    """

    def __init__(
        self,
        polling: Polling,
        status: StatusCall,
        *,
        budget: RateLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.polling = polling
        self._status = status
        self._budget = budget
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - not security
        self.models: dict[LatencyClass | None, CompletionModel] = {}
        self._likely: set[PollPlan] = set()  # being polled where completions are likely
        #: Each model's refit under way, in the background (:meth:`_start_refit`).
        self._refits: dict[CompletionModel, asyncio.Task[None]] = {}

    @safe_repr
    def __repr__(self) -> str:
        return f"<Poller classes={len(self.models)} polling={len(self._likely)} likely>"

    def model(self, key: LatencyClass | None) -> CompletionModel:
        """The model of a latency class (None: of predictions whose class is unknown)."""
        model = self.models.get(key)
        if model is None:
            model = self.models[key] = CompletionModel(
                self.polling, prior_for(key, self.polling), deferred=True
            )
        return model

    def pressure(self) -> float:
        """Planned status calls a second over the budget's rate (0: idle, 1: all of it)."""
        if self._budget is None:
            return 0.0
        rate = self._budget.rate
        return pressure(self.polling, len(self._likely), rate.limit / rate.period)

    async def wait(
        self,
        prediction_id: str,
        submitted_at: float,
        *,
        latency_class: LatencyClass | None = None,
        learn: bool = True,
    ) -> PredictionStatus:
        """Poll until the prediction is terminal; learn its completion time (``learn``).

        Args:
            prediction_id: The prediction.
            submitted_at: Loop time its submission was answered.
            latency_class: Its class (:func:`~fashn_async._polling.latency_class`).
            learn: Whether its completion teaches the model (only when the submission
                time is really known).

        Raises:
            PollingError: a status call failed (after its own retries); the prediction
                is left as it is, and the status call's error is its ``__cause__``.
        """
        loop = asyncio.get_running_loop()
        plan = PollPlan(self.model(latency_class), self._rng, learn=learn)
        try:
            while True:
                refit = self._start_refit(plan.model)  # what finished ones taught, if due
                due = plan.next_poll(spacing(self.polling, self.pressure()))
                wait = submitted_at + due - loop.time()
                # A long wait is planned again part way, and any wait once a refit is in:
                # what other predictions finish meanwhile may move it (a first poll
                # planned before the model learned that completions come sooner, say).
                sleep = min(wait, REPLAN * self.polling.target_lag)
                if refit is not None and sleep > 0:
                    done, _ = await asyncio.wait({refit}, timeout=sleep)
                    if done:
                        continue
                else:
                    await anyio.sleep(max(sleep, 0.0))
                if sleep < wait:
                    continue
                sent = loop.time() - submitted_at
                self._track(plan, sent)
                deadline = submitted_at + plan.overdue_after(sent)
                try:
                    status, on_wire = await self._status(
                        prediction_id, plan.priority(sent), deadline
                    )
                except FashnError as exc:  # after the status call's own retries
                    raise PollingError.after(exc, prediction_id) from exc
                answered = loop.time() - submitted_at
                if status.done:
                    plan.done(answered, completed=status.status == "completed")
                    return status
                # Running when its request went out, not when it joined the budget's queue.
                plan.running(on_wire - submitted_at)
        finally:
            self._likely.discard(plan)

    async def wait_existing(
        self, prediction_id: str, *, latency_class: LatencyClass | None = None
    ) -> PredictionStatus:
        """Poll a prediction of unknown age to its end; it teaches the model nothing.

        It is taken to be at least as old as the earliest likely completion of its class,
        so polling starts within one spacing.
        """
        model = self.model(latency_class)
        since = asyncio.get_running_loop().time() - model.quantile(EPSILON)
        return await self.wait(prediction_id, since, latency_class=latency_class, learn=False)

    async def wait_or_cancel(
        self,
        prediction_id: str,
        submitted_at: float,
        *,
        cancel: CancelCall | None,
        latency_class: LatencyClass | None = None,
        learn: bool = True,
    ) -> PredictionStatus:
        """:meth:`wait`; if we are cancelled meanwhile, ``cancel`` the prediction too.

        A :class:`PollingError` cancels nothing: the prediction may be done and charged,
        and the error names it, so that it can be collected later.
        """
        try:
            return await self.wait(
                prediction_id, submitted_at, latency_class=latency_class, learn=learn
            )
        except PollingError:
            raise
        except BaseException:
            if cancel is not None:
                await cancel(prediction_id)
            raise

    def _start_refit(self, model: CompletionModel) -> asyncio.Task[None] | None:
        """Start ``model``'s refit in the worker thread if one is due, in the background;
        return the refit under way, if any.

        The fit is pure Python, milliseconds long, and would hold the event loop; the
        worker is shared with image preparation, which may keep it seconds. No poller
        waits for it (meanwhile the model answers from its last fit, and polls go on), and
        one cancelled meanwhile loses nothing: the refit is applied when it is in, and
        the pollers of its class plan again. One refit per model at a time.
        """
        running = self._refits.get(model)
        if running is not None and not running.done():
            return running
        self._refits.pop(model, None)  # (one cancelled before it started ran no finally)
        job = model.refit_job()
        if job is None:
            return None
        task = asyncio.get_running_loop().create_task(self._refit(model, job))
        self._refits[model] = task
        return task

    async def _refit(self, model: CompletionModel, job: Callable[[], Fit]) -> None:
        try:
            model.apply(await in_worker(job))
        finally:
            self._refits.pop(model, None)

    async def aclose(self) -> None:
        """Cancel the refits under way (the client is closing) and wait for them."""
        tasks = list(self._refits.values())
        self._refits.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _track(self, plan: PollPlan, elapsed: float) -> None:
        """Count the prediction towards the pressure while completions are likely."""
        if plan.likely_soon(elapsed):
            self._likely.add(plan)
        else:
            self._likely.discard(plan)
