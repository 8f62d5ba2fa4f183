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
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import aiolimiter
import anyio

from fashn_async._http import Response, Transport
from fashn_async._images import encode_image
from fashn_async._limits import Lease, LimiterBackend, Limits, LocalBackend, RateLimiter
from fashn_async._models import PredictionStatus, Request, converter
from fashn_async._poller import Poller
from fashn_async._polling import LatencyClass, Polling, latency_class
from fashn_async._retry import RetryPolicy
from fashn_async.errors import (
    APIError,
    ConcurrencyLimitExceededError,
    ConnectError,
    FashnError,
    OutOfCreditsError,
    RateLimitError,
    ServerError,
    SubmissionUncertainError,
    TransportError,
)

__all__ = ["Engine", "Prepared"]

T = TypeVar("T")

#: Priority of a status call a person asked for: ahead of every poller.
USER_PRIORITY = math.inf
#: Longest a best-effort remote cancel may take.
CANCEL_TIMEOUT = 15.0


class Prepared:
    """A request with its images encoded: the exact JSON body and its weight."""

    __slots__ = ("body", "generations", "params", "request")

    def __init__(
        self, request: Request, body: dict[str, Any], params: Mapping[str, str] | None
    ) -> None:
        self.request = request
        self.body = body
        self.generations = request.generations
        self.params = params


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
    ) -> None:
        self.transport = transport
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
        self.credits_limiter = (
            aiolimiter.AsyncLimiter(limits.credits.limit, limits.credits.period)
            if limits.credits
            else None
        )
        self.slots = backend.slots(limits.in_flight)
        self.poller = Poller(polling, self._poll_status, budget=self.status_budget)
        self._rng = random.Random()  # noqa: S311 - jitter only
        # Predictions submitted through the bare submit() hold a slot until seen done.
        self._held: dict[str, Lease] = {}
        #: Supervisor tasks of open batches; the client's exit cancels and awaits them.
        self.batches: set[asyncio.Future[None]] = set()

    # -- preparing ---------------------------------------------------------------------

    @staticmethod
    async def prepare(request: Request, *, webhook_url: str | None = None) -> Prepared:
        """Encode every image of ``request``; fails locally before anything is sent."""
        images = {}
        for field, value in request.image_fields().items():
            images[field] = await encode_image(field, value)
        params = {"webhook_url": webhook_url} if webhook_url else None
        return Prepared(request, request.body(images), params)

    # -- submitting --------------------------------------------------------------------

    async def post_run(
        self,
        prepared: Prepared,
        *,
        on_sending: Callable[[], None] | None = None,
        on_not_created: Callable[[], None] | None = None,
        on_created: Callable[[str], None] | None = None,
    ) -> str:
        """POST /v1/run through the submit limiter; re-send only where no prediction exists.

        Hooks for a journal, each called synchronously: ``on_sending`` once the limiter
        admits the request, right before each send (from then on it may exist);
        ``on_not_created`` when an answer or error proves it does not (before waiting to
        send again, or raising); ``on_created`` with the id, as soon as it is known -- even
        when we are being cancelled and the new prediction is about to be cancelled too.

        Raises:
            SubmissionUncertainError: the request went out and no answer came back.
            OutOfCreditsError: final; nothing more can be submitted.
        """
        failures = 0
        while True:
            grant = None
            if self.submit_limiter is not None:
                grant = await self.submit_limiter.acquire(prepared.generations)
            counted = True  # unless the server cannot have counted it
            response: Response | None = None
            try:
                if on_sending is not None:
                    on_sending()
                response = await self._send_run(prepared, on_created)
            except ConnectError:
                counted = False  # never sent
                if on_not_created is not None:
                    on_not_created()
                failures += 1
                if failures >= self.retry.attempts:
                    raise
            except TransportError as exc:
                raise SubmissionUncertainError(
                    "POST /v1/run was sent but no answer came back; the prediction may "
                    f"exist and be charged, so it is not re-sent ({exc.message})"
                ) from exc
            else:
                counted = response.status != 429  # a refusal is not counted by the server
            finally:
                if grant is not None and self.submit_limiter is not None:
                    self.submit_limiter.settle(grant, counted=counted)
            if response is None:  # a connection that was never made: safe to send again
                await anyio.sleep(self.retry.delay(failures, rng=self._rng))
                continue
            if response.status == 200:
                prediction_id = _prediction_id(response)
                if on_created is not None:
                    on_created(prediction_id)
                return prediction_id
            if on_not_created is not None:
                on_not_created()
            error = response.error()
            if isinstance(error, OutOfCreditsError):
                raise error
            if isinstance(error, RateLimitError):
                # Not counted by the server: wait as told, then send the same body again.
                delay = self.retry.delay(max(failures, 1), error.retry_after, rng=self._rng)
                if isinstance(error, ConcurrencyLimitExceededError):
                    await anyio.sleep(delay)
                elif self.submit_limiter is not None:
                    self.submit_limiter.pause(delay)
                else:
                    await anyio.sleep(delay)
                failures = min(failures + 1, 8)
                continue
            if isinstance(error, ServerError):
                failures += 1
                if failures < self.retry.attempts:
                    await anyio.sleep(self.retry.delay(failures, error.retry_after, rng=self._rng))
                    continue
            raise error

    async def submit_holding(self, prepared: Prepared) -> str:
        """Take an in-flight slot, submit, and keep the slot until the id is seen done."""
        lease = await self.slots.acquire()
        try:
            prediction_id = await self.post_run(prepared)
        except BaseException:
            self.slots.release(lease)
            raise
        self._held[prediction_id] = lease
        return prediction_id

    def seen_done(self, prediction_id: str) -> None:
        """A held prediction was seen terminal: give its slot back."""
        lease = self._held.pop(prediction_id, None)
        if lease is not None:
            self.slots.release(lease)

    # -- GETs --------------------------------------------------------------------------

    async def get(
        self,
        path: str,
        *,
        limiter: RateLimiter | None,
        priority: float = USER_PRIORITY,
    ) -> Response:
        """GET with retries on connection errors, timeouts, 5xx and 429s."""
        failures = 0
        while True:
            grant = None
            if limiter is not None:
                grant = await limiter.acquire(priority=priority)
            elif path == "/v1/credits" and self.credits_limiter is not None:
                await self.credits_limiter.acquire()
            error: FashnError
            counted = True
            try:
                response = await self.transport.request("GET", path)
            except TransportError as exc:
                error = exc
                counted = not isinstance(exc, ConnectError)
            else:
                if response.status == 200:
                    return response
                error = response.error()
                if isinstance(error, RateLimitError) and limiter is not None:
                    limiter.pause(self.retry.delay(failures + 1, error.retry_after, rng=self._rng))
                elif not isinstance(error, RateLimitError | ServerError):
                    raise error
            finally:
                if grant is not None and limiter is not None:
                    limiter.settle(grant, counted=counted)
            failures += 1
            if failures >= self.retry.attempts:
                raise error
            if not (isinstance(error, RateLimitError) and limiter is not None):
                await anyio.sleep(self.retry.delay(failures, error.retry_after, rng=self._rng))

    async def status(
        self, prediction_id: str, *, priority: float = USER_PRIORITY
    ) -> PredictionStatus:
        """One status call through the shared budget."""
        response = await self.get(
            f"/v1/status/{_quote(prediction_id)}", limiter=self.status_budget, priority=priority
        )
        status = _structure_status(response, prediction_id)
        if status.done:
            self.seen_done(prediction_id)
        return status

    async def cancel(self, prediction_id: str) -> PredictionStatus:
        """GET /v1/cancel/:id (cancel calls have no budget of their own)."""
        response = await self.get(f"/v1/cancel/{_quote(prediction_id)}", limiter=None)
        status = _structure_status(response, prediction_id)
        self.seen_done(prediction_id)
        return status

    async def cancel_quietly(self, prediction_id: str) -> None:
        """Best-effort remote cancel, shielded, bounded in time; never raises."""
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(CANCEL_TIMEOUT),
            contextlib.suppress(FashnError),
        ):
            await self.cancel(prediction_id)

    # -- polling (the loop lives in fashn_async._poller) ---------------------------------

    async def _poll_status(self, prediction_id: str, priority: float) -> PredictionStatus:
        return await self.status(prediction_id, priority=priority)

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

    async def submit_and_wait(
        self,
        prepared: Prepared,
        *,
        on_sending: Callable[[], None] | None = None,
        on_submitted: Callable[[str], None] | None = None,
        on_not_created: Callable[[], None] | None = None,
        cancel: bool = True,
    ) -> PredictionStatus:
        """Slot, submit, poll to the end; if we are cancelled, so is what was started.

        With ``cancel=False`` a prediction already created is left running on the server
        (a resumable job collects it later); one whose POST is still on the wire is
        cancelled all the same once answered (``on_submitted`` hears of it first).
        """
        lease = await self.slots.acquire()
        try:
            prediction_id = await self.post_run(
                prepared,
                on_sending=on_sending,
                on_not_created=on_not_created,
                on_created=on_submitted,
            )
            submitted_at = asyncio.get_running_loop().time()
            return await self._wait_or_cancel(
                prediction_id,
                submitted_at,
                cancel=cancel,
                latency_class=latency_class(prepared.request),
            )
        finally:
            self.slots.release(lease)

    async def wait_existing(
        self,
        prediction_id: str,
        *,
        cancel: bool = True,
        latency_class: LatencyClass | None = None,
    ) -> PredictionStatus:
        """Poll a prediction submitted earlier (by another run, say) to its end.

        It holds an in-flight slot while polled, as the server counts it in progress. If
        we are cancelled, the prediction is cancelled remotely unless ``cancel`` is False.
        Its age is unknown, so it teaches the poller nothing.
        """
        # Submitted by this client's submit(): it holds its slot already.
        held = self._held.pop(prediction_id, None)
        lease = held if held is not None else await self.slots.acquire()
        try:
            try:
                return await self.poller.wait_existing(prediction_id, latency_class=latency_class)
            except BaseException:
                if cancel:
                    await self.cancel_quietly(prediction_id)
                raise
        finally:
            self.slots.release(lease)

    async def _wait_or_cancel(
        self,
        prediction_id: str,
        submitted_at: float,
        *,
        cancel: bool,
        learn: bool = True,
        latency_class: LatencyClass | None = None,
    ) -> PredictionStatus:
        """wait(); if we are cancelled meanwhile, cancel the prediction too (``cancel``)."""
        return await self.poller.wait_or_cancel(
            prediction_id,
            submitted_at,
            cancel=self.cancel_quietly if cancel else None,
            latency_class=latency_class,
            learn=learn,
        )

    async def _send_run(
        self, prepared: Prepared, on_created: Callable[[str], None] | None
    ) -> Response:
        """Send POST /v1/run once, so that being cancelled cannot orphan a prediction.

        Once sent, the request is let finish (shielded); if it created a prediction while
        we were being cancelled, ``on_created`` hears of it and it is cancelled on the
        server.
        """
        task = asyncio.ensure_future(
            self.transport.request("POST", "/v1/run", body=prepared.body, params=prepared.params)
        )
        with anyio.CancelScope(shield=True):
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                try:
                    response = await asyncio.shield(task)
                except BaseException:
                    task.cancel()
                    raise asyncio.CancelledError from None
                if response.status == 200:
                    with contextlib.suppress(FashnError):
                        prediction_id = _prediction_id(response)
                        if on_created is not None:
                            on_created(prediction_id)
                        await self.cancel_quietly(prediction_id)
                raise
        raise AssertionError("unreachable: a shield scope swallows nothing")  # for mypy


def _quote(prediction_id: str) -> str:
    return quote(prediction_id, safe="")


def _prediction_id(response: Response) -> str:
    data = response.data
    if isinstance(data, dict):
        prediction_id = data.get("id")
        if isinstance(prediction_id, str) and prediction_id:
            return prediction_id
        if data.get("error"):
            raise response.error()
    raise APIError("POST /v1/run answered 200 without a prediction id", status_code=response.status)


def _structure_status(response: Response, prediction_id: str) -> PredictionStatus:
    data = response.data
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        raise APIError(
            "the status answer is not a status object",
            status_code=response.status,
            prediction_id=prediction_id,
        )
    data = {"id": prediction_id, **data}
    try:
        return converter.structure(data, PredictionStatus)
    except Exception as exc:  # cattrs' errors never reach callers
        raise APIError(
            f"the status answer could not be read: {exc}",
            status_code=response.status,
            prediction_id=prediction_id,
        ) from None
