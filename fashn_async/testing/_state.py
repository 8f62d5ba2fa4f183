"""The emulator's state: admission under the limits, predictions, their jobs, the report.

Handlers in ``_app`` translate HTTP to calls here and the answers back.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
import uuid
from collections.abc import Coroutine
from typing import Any

import aiohttp
import attrs
import yarl

from ._bodies import BodyReaders
from ._config import EmulatorConfig, WindowLimit
from ._faults import FaultBook
from ._images import UnreadableImage, is_loopback_host, render_outputs
from ._limits import Clock, RollingWindow, max_in_window
from ._predictions import LoadFailed, Outcome, Prediction, Rendered, draw_latency, reached
from ._report import AcceptedSubmission, EmulatorReport, Ledger, WebhookAttempt, max_overlap
from ._validate import ImageInput, InvalidRequest, Submission, url_host
from ._webhooks import deliver_webhook

__all__ = ["EmulatorState", "Rejected"]

#: Nominal balance shown by ``GET /v1/credits`` when the budget is unlimited.
UNLIMITED_BALANCE = 1_000_000
#: API seconds an input image fetch may take (never under 1 real second: networks do not
#: speed up with ``time_scale``).
FETCH_TIMEOUT = 30.0
#: API seconds outputs stay on the CDN (72 hours).
CDN_LIFETIME = 72 * 3600.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Rejected(Exception):
    """A request refused with 429: nothing was created or counted.

    Attributes:
        code: ``RateLimitExceeded``, ``ConcurrencyLimitExceeded`` or ``OutOfCredits``.
        message: Why, for people.
        retry_after: Loop seconds until the request would be admitted, when known.
    """

    def __init__(self, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class _FetchFailed(Exception):
    pass


def payload_digest(body: Any) -> str:
    """Return the SHA-256 of ``body`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EmulatorState:
    """Everything that outlives a request.

    Args:
        config: The emulator's configuration.
        session: Client session for input image fetches and webhooks (loopback only).
    """

    def __init__(self, config: EmulatorConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.scale = config.time_scale
        self.clock = Clock(asyncio.get_running_loop())
        self.session = session
        self.base_url = ""
        self.ledger = Ledger()
        self.faults = FaultBook(config.faults, config.seed)
        self.predictions: dict[str, Prediction] = {}
        self.bodies = BodyReaders(limit=config.max_slow_bodies, timeout=config.body_timeout)
        # Seeded draws make runs repeat; none of it is security.
        self._ids = random.Random(f"{config.seed}:ids")  # noqa: S311
        self._latency = random.Random(f"{config.seed}:latency")  # noqa: S311
        self._tasks: set[asyncio.Task[Any]] = set()

        def window(limit: WindowLimit | None, default_period: float) -> RollingWindow:
            if limit is None:  # unlimited, but logged for the report's maxima
                return RollingWindow(None, default_period * self.scale)
            return RollingWindow(limit.limit, limit.period * self.scale)

        self.submit_window = window(config.submit_limit, 60.0)
        self.status_window = window(config.status_limit, 10.0)
        self.credits_window = window(config.credits_limit, 10.0)

    def __repr__(self) -> str:
        return f"<EmulatorState predictions={len(self.predictions)} tasks={len(self._tasks)}>"

    # -- tasks -------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel the jobs and webhook deliveries still running, and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- submissions -------------------------------------------------------------------

    def committed_credits(self) -> int:
        """Return generations charged or reserved by predictions that may complete.

        A submission reserves its generations; a prediction that fails or is canceled
        gives them back.
        """
        return sum(prediction.charged() for prediction in self.predictions.values())

    def balance(self) -> int:
        """Return the credits left, as ``GET /v1/credits`` shows them."""
        budget = self.config.credits if self.config.credits is not None else UNLIMITED_BALANCE
        return budget - self.committed_credits()

    def _admit(self, now: float, submission: Submission) -> None:
        """Raise Rejected if ``submission`` must wait (or InvalidRequest if it never fits).

        Checked in order: credits (final), the submit window, the in-flight cap.
        """
        weight = submission.num_samples
        budget = self.config.credits
        if budget is not None and self.committed_credits() + weight > budget:
            raise Rejected(
                "OutOfCredits",
                f"Out of credits: {budget - self.committed_credits()} left, {weight} needed.",
                None,
            )
        limit = self.config.submit_limit
        if limit is not None and weight > limit.limit:
            raise InvalidRequest(
                f"num_samples: {weight} generations exceed the submit limit "
                f"of {limit.limit} per {limit.period:g} s",
                legacy=submission.legacy,
            )
        wait = self.submit_window.wait(now, weight)
        if wait > 0:
            assert limit is not None
            raise Rejected(
                "RateLimitExceeded",
                f"Rate limit exceeded: {limit.limit} generations per {limit.period:g} s.",
                wait,
            )
        cap = self.config.in_flight_limit
        if cap is not None:
            running = [p.ends_at() for p in self.predictions.values() if p.is_running(now)]
            if len(running) >= cap:
                raise Rejected(
                    "ConcurrencyLimitExceeded",
                    f"Too many predictions in progress: at most {cap}.",
                    max(min(running) - now, 0.0),
                )

    def submit(self, submission: Submission, body: Any, webhook_url: str | None) -> Prediction:
        """Admit and create a prediction, or raise Rejected / InvalidRequest.

        Everything that can refuse the request runs before anything is created or counted.
        """
        digest = payload_digest(body)
        now = self.clock.now()
        self._admit(now, submission)
        self.submit_window.add(now, submission.num_samples)
        prediction = Prediction(
            id=f"{uuid.UUID(int=self._ids.getrandbits(128), version=4)}-u1",
            created=now,
            latency=draw_latency(self.config.latency, submission, body, self._latency) * self.scale,
            submission=submission,
            fault=self.faults.for_prediction(submission.image_texts()),
        )
        self.predictions[prediction.id] = prediction
        self.ledger.accept(
            now, prediction.id, submission.num_samples, digest, submission.model_name
        )
        prediction.job = self._spawn(self._run_job(prediction))
        if webhook_url is not None:
            self._spawn(
                deliver_webhook(
                    prediction=prediction,
                    url=webhook_url,
                    session=self.session,
                    clock=self.clock,
                    scale=self.scale,
                    ledger=self.ledger,
                    final_body=self.final_body,
                )
            )
        return prediction

    # -- jobs: read the inputs, draw the outputs ---------------------------------------

    async def _fetch(self, image: ImageInput) -> bytes:
        """Download an input image, from a loopback host only."""
        url = yarl.URL(image.source)
        timeout = aiohttp.ClientTimeout(total=max(FETCH_TIMEOUT * self.scale, 1.0))
        for _hop in range(5):
            host = url_host(url)
            if not is_loopback_host(host):
                raise _FetchFailed(
                    f"the emulator fetches loopback URLs only (localhost, "
                    f"127.0.0.0/8, ::1), not host {host or url.raw_host!r}"
                )
            self.ledger.image_fetches.append(str(url))
            try:
                async with self.session.get(
                    url, allow_redirects=False, timeout=timeout
                ) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECTS and location:
                        url = url.join(yarl.URL(location))
                        continue
                    if response.status != 200:
                        raise _FetchFailed(f"the URL answered HTTP {response.status}")
                    content_type = response.headers.get("Content-Type", "")
                    if not content_type.lower().startswith("image/"):
                        raise _FetchFailed(
                            "The URL's Content-Type is not an image. "
                            f"Content-Type: {content_type or 'none'}"
                        )
                    data = await response.content.read(self.config.max_body_bytes + 1)
                    if len(data) > self.config.max_body_bytes:
                        raise _FetchFailed(
                            f"the image is larger than {self.config.max_body_bytes} bytes"
                        )
                    return data
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise _FetchFailed(f"could not fetch the URL ({type(exc).__name__})") from None
        raise _FetchFailed("too many redirects")

    async def _run_job(self, prediction: Prediction) -> Outcome:
        """Read the inputs and draw the outputs; then let go of the inputs."""
        try:
            return await self._read_and_draw(prediction)
        finally:
            # Data URIs can be megabytes; like the API, keep nothing of the inputs.
            prediction.submission = attrs.evolve(prediction.submission, images=())

    async def _read_and_draw(self, prediction: Prediction) -> Outcome:
        submission = prediction.submission
        inputs: list[bytes] = []
        for image in submission.images:
            if image.data is not None:
                inputs.append(image.data)
                continue
            try:
                inputs.append(await self._fetch(image))
            except _FetchFailed as exc:
                return LoadFailed(f"Error loading {image.role} image: {exc}", self.clock.now())
        draw = functools.partial(
            render_outputs,
            tuple(inputs),
            category=submission.category,
            num_samples=submission.num_samples,
            seed=submission.seed,
            output_format=submission.output_format,
            render=prediction.fault is None,
        )
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(None, draw)
        except UnreadableImage as exc:
            role = submission.images[exc.args[1]].role
            return LoadFailed(f"Error loading {role} image: {exc.reason}", self.clock.now())
        return Rendered(outputs)

    # -- status, cancel, outputs -------------------------------------------------------

    def expired(self, prediction: Prediction, now: float) -> bool:
        """Return whether ``prediction`` ended longer than ``status_retention`` ago.

        The API stops tracking old predictions (NOTES.md: their status may answer 404).
        """
        retention = self.config.status_retention
        if retention is None or prediction.is_running(now):
            return False
        return reached(now, prediction.ends_at() + retention * self.scale)

    async def current(self, prediction: Prediction) -> tuple[str, float]:
        """Return the status of ``prediction`` now, and now, waiting for its job if due."""
        await prediction.settle(self.clock.now())
        now = self.clock.now()
        return prediction.status(now), now

    def final_body(self, prediction: Prediction) -> dict[str, Any]:
        """Return the status JSON of an ended prediction (for webhooks)."""
        return prediction.body(prediction.status(self.clock.now()), self.base_url)

    async def cancel(self, prediction: Prediction) -> tuple[str, float]:
        """Cancel ``prediction`` if it is running; return its status after that."""
        self.ledger.cancels.append(prediction.id)
        status, now = await self.current(prediction)
        if prediction.is_running(now):
            prediction.canceled_at = now
            prediction.changed.set()
            status = "canceled"
        return status, now

    def output(self, pid: str, name: str) -> tuple[bytes, str] | None:
        """Return an output file on the CDN and its content type, if it is there."""
        prediction = self.predictions.get(pid)
        if prediction is None or prediction.submission.return_base64:
            return None
        outcome = prediction.outcome()
        now = self.clock.now()
        if not isinstance(outcome, Rendered) or prediction.status(now) != "completed":
            return None
        if reached(now, prediction.completes_at + CDN_LIFETIME * self.scale):
            return None
        for index, data in enumerate(outcome.outputs):
            if prediction.output_name(index) == name:
                return data, "image/jpeg" if name.endswith(".jpeg") else "image/png"
        return None

    # -- report ------------------------------------------------------------------------

    def report(self) -> EmulatorReport:
        """Take a snapshot of what the emulator has seen."""
        now = self.clock.now()
        ledger = self.ledger

        def api(seconds: float) -> float:
            return round(seconds / self.scale, 6)

        predictions = self.predictions.values()
        terminal = {p.id: api(p.ends_at()) for p in predictions if not p.is_running(now)}
        statuses: dict[str, str] = {}
        for prediction in predictions:
            pending = (
                prediction.canceled_at is None
                and prediction.outcome() is None
                and reached(now, prediction.checked_at)
            )  # its job is still running
            statuses[prediction.id] = "processing" if pending else prediction.status(now)
        spans = [
            (p.created, min(p.ends_at(), now) if not p.is_running(now) else float("inf"))
            for p in predictions
        ]
        return EmulatorReport(
            now=api(now),
            accepted=[
                AcceptedSubmission(pid, api(when), weight, digest, model)
                for when, pid, weight, digest, model in ledger.accepted
            ],
            rejected=dict(ledger.rejected),
            rejected_by_route=dict(ledger.rejected_by_route),
            bad_requests=ledger.bad_requests,
            errors_5xx=ledger.errors_5xx,
            dropped=ledger.dropped,
            status_calls={pid: len(times) for pid, times in ledger.status_call_times.items()},
            status_calls_total=ledger.status_calls_total,
            status_call_times={
                pid: [api(when) for when in times]
                for pid, times in ledger.status_call_times.items()
            },
            terminal_at=terminal,
            first_seen_terminal={
                pid: api(when) for pid, when in ledger.first_seen_terminal.items()
            },
            statuses=statuses,
            cancels=list(ledger.cancels),
            duplicates=ledger.duplicates,
            max_submissions_in_window=self.submit_window.max_in_window(),
            max_status_in_window=self.status_window.max_in_window(),
            max_in_progress=max_overlap(spans),
            in_progress=sum(1 for p in predictions if p.is_running(now)),
            credits_used=sum(p.charged() for p in predictions if not p.is_running(now)),
            image_fetches=list(ledger.image_fetches),
            webhook_deliveries=[
                WebhookAttempt(pid, url, attempt, api(when), status, error)
                for pid, url, attempt, when, status, error in ledger.webhooks
            ],
            requests_by_route={route: len(log) for route, log in ledger.arrivals.items()},
            max_requests_per_second={
                route: max_in_window(log, self.scale) for route, log in ledger.arrivals.items()
            },
            faults=dict(ledger.faults),
        )
