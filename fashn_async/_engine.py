"""The engine every request goes through: limits, safe retries, polling, cancellation.

``run()``, ``batch()`` and the low-level calls of one client share a single engine, so
many concurrent ``run()`` calls of a web service get the same limits, status budget and
fairness as one batch. Data flows one way: request -> limiter -> http -> poller -> caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar, cast
from urllib.parse import quote

import anyio

from fashn_async._calls import Calls, a_call
from fashn_async._decisions import Action, Route, Tries, counted_by_server, decide, may_be_stray
from fashn_async._http import Response, Transport, outcome_of
from fashn_async._inflight import InFlight
from fashn_async._limits import LimiterBackend, Limits, LocalBackend, RateLimiter, WindowLimiter
from fashn_async._models import PredictionStatus, Request, status_answer
from fashn_async._payload import Prepared, prepare_request
from fashn_async._poller import Poller
from fashn_async._polling import LatencyClass, Polling, latency_class
from fashn_async._retry import RetryPolicy
from fashn_async._shield import outlive_cancels
from fashn_async._submitter import Submitter
from fashn_async._turnbull import EPSILON
from fashn_async.errors import (
    FashnError,
    PollingError,
    TransportError,
)

if TYPE_CHECKING:
    from fashn_async._prepare import Preparer

__all__ = ["Engine"]  # Prepared lives in _payload

T = TypeVar("T")

#: Priority of a status call a person asked for: ahead of every poller.
USER_PRIORITY = math.inf
#: Whether to cancel on the server what a cancelled wait leaves: a flag, or a function
#: asked at that moment (a job that can no longer record cancels turns it off).
Cancel = bool | Callable[[], bool]


def wanted(cancel: Cancel) -> bool:
    """The answer of ``cancel`` now."""
    return cancel() if callable(cancel) else cancel


#: Longest a best-effort remote cancel may take.
CANCEL_TIMEOUT = 15.0


class Engine:
    """Limits, retries and polling for one client.

    Its submit limiter, status budget and in-flight slots come from ``backend``: this
    process's own (the default), or ones shared with other processes through Redis.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        limits: Limits,
        polling: Polling,
        retry: RetryPolicy,
        backend: LimiterBackend | None = None,
        preparer: Preparer | None = None,
    ) -> None:
        self.transport = transport
        #: Image preparation (``AsyncFashn(prepare_images=...)``), or None.
        self.preparer = preparer
        self.limits = limits
        self.retry = retry
        backend = backend if backend is not None else LocalBackend()
        margin = limits.margin
        self.submit_limiter: RateLimiter | None = (
            backend.window("submit", limits.submit, margin=margin) if limits.submit else None
        )
        self.status_budget: RateLimiter | None = (
            backend.window("status", limits.status, margin=margin, burst=limits.status_burst)
            if limits.status
            else None
        )
        # Strict like the others: a leaky bucket lets ~2x the limit into one window.
        # This process's own, also under coordination (credit checks are rare).
        self.credits_limiter: RateLimiter | None = (
            WindowLimiter(limits.credits, margin=margin) if limits.credits else None
        )
        #: The one owner of in-flight slots and of the predictions holding one.
        self.in_flight = InFlight(backend.slots(limits.in_flight))
        #: run(), submit() and wait() in progress: closing ends each as a cancel would.
        self.calls = Calls()
        self.poller = Poller(polling, self._poll_status, budget=self.status_budget)
        self._rng = random.Random()  # noqa: S311 - jitter only
        self.submitter = Submitter(
            transport,
            limiter=self.submit_limiter,
            in_flight=self.in_flight,
            retry=retry,
            cancel_quietly=self.cancel_quietly,
            # The 99th percentile of the request's latency class: by then it has likely ended.
            uncertain_hold=lambda prepared: self.poller.model(
                latency_class(prepared.request)
            ).quantile(0.99),
        )

    # -- preparing ---------------------------------------------------------------------

    async def prepare(self, request: Request, *, webhook_url: str | None = None) -> Prepared:
        """Encode ``request``'s images and JSON body off the loop; fails before sending."""
        return await prepare_request(request, webhook_url=webhook_url, preparer=self.preparer)

    # -- submitting (the submitter's) ---------------------------------------------------

    @a_call
    async def submit_holding(self, prepared: Prepared) -> str:
        """Slot, submit, hold the slot until seen done: see :meth:`Submitter.submit_holding`."""
        return await self.submitter.submit_holding(prepared)

    # -- GETs --------------------------------------------------------------------------

    async def get(
        self,
        path: str,
        *,
        limiter: RateLimiter | None,
        priority: float = USER_PRIORITY,
        deadline: float | None = None,
        prediction_id: str | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> Response:
        """GET ``path`` (status, cancel or credits), repeated as ``_decisions`` says, and
        once more at once where a kept-alive connection turned out closed (RFC 9112
        9.3.1), on one of its own: each try through ``limiter`` (``priority``,
        ``deadline``: :meth:`WindowLimiter.acquire`). ``prediction_id``: what an error
        raised names. ``on_send``: called as each try goes out.

        Returns:
            The answer, with the route's expected body.

        Raises:
            TransportError: no usable answer after the policy's attempts.
            APIError: the API answered an error (its subclass says which), or answers
                stayed unreadable after the policy's attempts.
        """
        route = cast(Route, path.split("/")[2])
        if limiter is None and route == "credits":
            limiter = self.credits_limiter
        tries, fresh = Tries(), False
        while True:
            grant = (
                None
                if limiter is None
                else await limiter.acquire(priority=priority, deadline=deadline)
            )
            counted, answered = True, False  # (a cancel: it may be out, unanswered)
            try:
                result: Response | TransportError
                if on_send is not None:
                    on_send()
                try:
                    result = await self.transport.request("GET", path, fresh=fresh)
                except TransportError as exc:
                    result = exc
                outcome = outcome_of(route, result)
                counted, answered = counted_by_server(outcome), outcome.answered
            finally:
                if grant is not None and limiter is not None:
                    limiter.settle(grant, counted=counted, answered=answered)
            if result.sends > 1 and limiter is not None:  # (aiohttp sent it again itself)
                limiter.seed([(0.0, result.sends - 1)])
            if isinstance(result, TransportError) and result.stale and not fresh:
                fresh = True
                continue
            decision = decide(route, outcome, tries, self.retry, self._rng)
            action = decision.action
            if action is Action.RETURN:
                assert isinstance(result, Response)
                return result
            if action is Action.FINAL and not fresh and may_be_stray(outcome):
                # Believed once a connection of its own gives it too.
                fresh = True
                continue
            if action is not Action.RETRY and action is not Action.PAUSE:  # FINAL
                error = result if isinstance(result, TransportError) else result.error(route)
                if error.prediction_id is None:
                    error.prediction_id = prediction_id
                raise error
            if action is Action.PAUSE and limiter is not None:
                limiter.pause(decision.delay)
            else:
                await anyio.sleep(decision.delay)
            tries = decision.tries

    async def status(
        self,
        prediction_id: str,
        *,
        priority: float = USER_PRIORITY,
        deadline: float | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> PredictionStatus:
        """One status call through the shared budget; a read, changing nothing here.
        ``priority``, ``deadline`` and ``on_send`` as in :meth:`get`."""
        response = await self.get(
            f"/v1/status/{_quote(prediction_id)}",
            limiter=self.status_budget,
            priority=priority,
            deadline=deadline,
            prediction_id=prediction_id,
            on_send=on_send,
        )
        return status_answer(response.data, response.status, prediction_id)

    async def cancel(self, prediction_id: str) -> PredictionStatus:
        """GET /v1/cancel/:id (cancel calls have no budget of their own).

        The prediction has ended (or will at once): a slot it holds is given back.
        """
        response = await self.get(
            f"/v1/cancel/{_quote(prediction_id)}", limiter=None, prediction_id=prediction_id
        )
        status = status_answer(response.data, response.status, prediction_id)
        self.in_flight.seen_done(prediction_id)
        return status

    async def cancel_quietly(self, prediction_id: str) -> None:
        """Best-effort remote cancel, bounded in time, which outlives the caller being
        cancelled (anyio's scopes or asyncio's ``task.cancel()``, any number of times);
        raises nothing of its own, only such a cancellation once the cancel is done."""
        task = asyncio.ensure_future(self._cancel_within(prediction_id))
        cancelled = await outlive_cancels(task)
        if task.cancelled():  # itself: every task was (asyncio.run's end), sent once more
            task = asyncio.ensure_future(self._cancel_within(prediction_id))
            cancelled = await outlive_cancels(task) or True
        task.result()
        if cancelled:
            raise asyncio.CancelledError

    async def _cancel_within(self, prediction_id: str) -> None:
        with anyio.move_on_after(CANCEL_TIMEOUT), contextlib.suppress(FashnError):
            await self.cancel(prediction_id)

    # -- polling (the loop lives in fashn_async._poller) ---------------------------------

    async def _poll_status(
        self, prediction_id: str, priority: float, deadline: float | None
    ) -> tuple[PredictionStatus, float]:
        """A poller's status call: the status, and the loop time its request went out."""
        sent: list[float] = []
        loop = asyncio.get_running_loop()
        status = await self.status(
            prediction_id,
            priority=priority,
            deadline=deadline,
            on_send=lambda: sent.append(loop.time()),
        )
        return status, sent[-1]

    async def wait(
        self,
        prediction_id: str,
        submitted_at: float,
        *,
        learn: bool = True,
        latency_class: LatencyClass | None = None,
    ) -> PredictionStatus:
        """Poll until the prediction is terminal (:meth:`Poller.wait`)."""
        return await self.poller.wait(
            prediction_id, submitted_at, latency_class=latency_class, learn=learn
        )

    @a_call
    async def submit_and_wait(
        self,
        prepared: Prepared,
        *,
        on_sending: Callable[[], Awaitable[None] | None] | None = None,
        on_submitted: Callable[[str], None] | None = None,
        on_not_created: Callable[[], None] | None = None,
        cancel: Cancel = True,
        may_cancel: Callable[[str], bool] | None = None,
        owner: object = None,
    ) -> PredictionStatus:
        """Slot, submit, poll to the end; if we are cancelled, so is what was started.

        With ``cancel=False`` a prediction already created is left running on the server
        (a resumable job collects it later); one whose POST is still on the wire is
        cancelled all the same once answered (``on_submitted`` hears of it first), unless
        ``may_cancel``, asked with its id, says no (a journal that did not record it). From
        its creation until this returns, it counts as running for ``owner``. ``cancel``
        may be a function, asked when it comes to cancelling. If polling gives up
        (:class:`PollingError`, naming the prediction), nothing is cancelled.
        """
        created = False

        def on_created(prediction_id: str) -> None:
            nonlocal created
            if not created:
                created = True
                self.in_flight.started(owner)
            if on_submitted is not None:
                on_submitted(prediction_id)

        free_at: float | None = None  # (loop time) till when one that may still run keeps its slot

        def uncertain() -> None:
            nonlocal free_at
            free_at = self.submitter.uncertain_until(prepared)

        lease = await self.in_flight.acquire()
        try:
            prediction_id = await self.submitter.post_run(
                prepared,
                on_sending=on_sending,
                on_not_created=on_not_created,
                on_created=on_created,
                may_cancel=may_cancel,
                on_uncertain=uncertain,
            )
            submitted_at = asyncio.get_running_loop().time()
            key = latency_class(prepared.request)
            try:
                return await self._wait_or_cancel(
                    prediction_id, submitted_at, cancel=cancel, latency_class=key
                )
            except PollingError:
                # Left running: the server counts it in progress until it likely ended.
                free_at = submitted_at + self.poller.model(key).quantile(1 - EPSILON)
                raise
        finally:
            if free_at is None:
                self.in_flight.release(lease)
            else:
                self.in_flight.release_at(lease, free_at)
            if created:
                self.in_flight.ended(owner)

    @a_call
    async def wait_existing(
        self,
        prediction_id: str,
        *,
        cancel: Cancel = True,
        latency_class: LatencyClass | None = None,
        owner: object = None,
        on_started: Callable[[], None] | None = None,
    ) -> PredictionStatus:
        """Poll a prediction submitted earlier (by another run, say) to its end.

        It counts as running for ``owner`` from the call (``on_started`` is then called,
        before any wait) until this returns, and holds an in-flight slot while polled, as
        the server counts it in progress. If we are cancelled, the prediction is
        cancelled remotely unless ``cancel`` is False; if polling gives up
        (:class:`PollingError`), it is left as it is. Its age is unknown, so it teaches
        the poller nothing.
        """
        self.in_flight.started(owner)
        try:
            if on_started is not None:
                on_started()
            # Submitted by this client's submit(): it holds its slot already.
            held = self.in_flight.take_held(prediction_id)
            lease = held if held is not None else await self.in_flight.acquire()
            try:
                try:
                    return await self.poller.wait_existing(
                        prediction_id, latency_class=latency_class
                    )
                except PollingError:
                    raise  # it may be done and charged: left as it is, named by the error
                except BaseException:
                    if wanted(cancel):
                        await self.cancel_quietly(prediction_id)
                    raise
            finally:
                self.in_flight.release(lease)
        finally:
            self.in_flight.ended(owner)

    async def _wait_or_cancel(
        self,
        prediction_id: str,
        submitted_at: float,
        *,
        cancel: Cancel,
        learn: bool = True,
        latency_class: LatencyClass | None = None,
    ) -> PredictionStatus:
        """wait(); if we are cancelled meanwhile, cancel the prediction too (``cancel``)."""

        async def cancel_if_wanted(pid: str) -> None:
            if wanted(cancel):
                await self.cancel_quietly(pid)

        return await self.poller.wait_or_cancel(
            prediction_id,
            submitted_at,
            cancel=None if cancel is False else cancel_if_wanted,
            latency_class=latency_class,
            learn=learn,
        )


def _quote(prediction_id: str) -> str:
    return quote(prediction_id, safe="")
