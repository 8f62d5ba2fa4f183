"""One prediction's life, computed from timestamps rather than driven by tasks.

A prediction passes ``starting`` (its images are being read), ``in_queue`` and
``processing``, then ends ``completed``, ``failed`` or ``canceled``. Its status at any
moment follows from when it was created, its drawn latency, and the outcome of its job
(the task that reads the input images and draws the outputs).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import attrs

from ._config import LatencyTable, PredictionFault, latency_for
from ._images import data_uri
from ._limits import EPSILON
from ._validate import Submission

__all__ = ["LoadFailed", "Outcome", "Prediction", "Rendered", "draw_latency", "reached"]

#: Fractions of the latency at which ``starting`` and ``in_queue`` end.
CHECKED_AT = 0.1
QUEUED_UNTIL = 0.25


def reached(now: float, when: float) -> bool:
    """Return whether ``now`` is at or past ``when``, forgiving float residue."""
    return now >= when - EPSILON


def draw_latency(
    table: LatencyTable, submission: Submission, body: Any, rng: random.Random
) -> float:
    """A new prediction's latency in API seconds, drawn for its model and mode.

    The mode is read from the body as sent (``inputs.mode``; tryon-v1.6 defaults to
    ``balanced``); the flat v1 body has none.
    """
    mode = None
    if not submission.legacy and isinstance(body, dict) and isinstance(body.get("inputs"), dict):
        value = body["inputs"].get("mode")
        mode = value if isinstance(value, str) else None
    return latency_for(table, submission.model_name, mode).draw(rng)


@attrs.frozen
class Rendered:
    """The inputs were images; ``outputs`` holds the encoded result images."""

    outputs: tuple[bytes, ...] = attrs.field(repr=False)


@attrs.frozen
class LoadFailed:
    """An input image could not be read; found at ``detected_at`` (loop seconds)."""

    message: str
    detected_at: float
    name: str = "ImageLoadError"


Outcome = Rendered | LoadFailed


@attrs.define(eq=False)
class Prediction:
    """A submitted prediction.

    Attributes:
        id: The id answered to the submission.
        created: Loop seconds (emulator clock) of the submission.
        latency: Loop seconds from submission to the terminal status.
        submission: What was asked for.
        fault: The injected failure it ends with, if any.
        job: Reads the inputs and draws the outputs; set right after creation.
        canceled_at: When it was canceled, if it was.
        changed: Set when it ends early (canceled), to wake a webhook waiting for it.
    """

    id: str
    created: float
    latency: float
    submission: Submission
    fault: PredictionFault | None
    job: asyncio.Task[Outcome] | None = None
    canceled_at: float | None = None
    changed: asyncio.Event = attrs.field(factory=asyncio.Event)

    @property
    def checked_at(self) -> float:
        """When its inputs are known to be readable (or not): ``starting`` ends."""
        return self.created + CHECKED_AT * self.latency

    @property
    def completes_at(self) -> float:
        """When it ends if nothing ends it earlier."""
        return self.created + self.latency

    def outcome(self) -> Outcome | None:
        """Return the job's outcome if it is done, else ``None``."""
        if self.job is None or not self.job.done() or self.job.cancelled():
            return None
        return self.job.result()

    def ends_at(self) -> float:
        """Return when it ends (or ended), as far as known now."""
        if self.canceled_at is not None:
            return self.canceled_at
        outcome = self.outcome()
        if isinstance(outcome, LoadFailed):
            return max(self.checked_at, outcome.detected_at)
        return self.completes_at

    def next_change(self, now: float) -> float:
        """Return the next moment its terminal time may become known or arrive."""
        return self.ends_at() if reached(now, self.checked_at) else self.checked_at

    def charged(self) -> int:
        """Return the generations it costs: failed and canceled ones cost nothing."""
        if self.canceled_at is not None or self.fault is not None:
            return 0
        if isinstance(self.outcome(), LoadFailed):
            return 0
        return self.submission.num_samples

    async def settle(self, now: float) -> None:
        """Wait for the job if the status at ``now`` depends on its outcome.

        ``asyncio.wait`` neither cancels the job when the caller is cancelled nor raises
        the job's own error here; the status reads it afterwards.
        """
        if (
            self.canceled_at is None
            and reached(now, self.checked_at)
            and self.job is not None
            and not self.job.done()
        ):
            await asyncio.wait([self.job])

    def status(self, now: float) -> str:
        """Return the status at ``now``; call :meth:`settle` first."""
        if self.canceled_at is not None and reached(now, self.canceled_at):
            return "canceled"
        if not reached(now, self.checked_at):
            return "starting"
        if isinstance(self.outcome(), LoadFailed):
            if reached(now, self.ends_at()):
                return "failed"
        elif reached(now, self.completes_at):
            return "failed" if self.fault is not None else "completed"
        queued = not reached(now, self.created + QUEUED_UNTIL * self.latency)
        return "in_queue" if queued else "processing"

    def output_name(self, index: int) -> str:
        """Return the CDN file name of output ``index``."""
        extension = "jpeg" if self.submission.output_format == "jpeg" else "png"
        return f"output_{index}.{extension}"

    def body(self, status: str, base_url: str) -> dict[str, Any]:
        """Return the status JSON for ``status``, as the API answers it."""
        body: dict[str, Any] = {"id": self.id, "status": status}
        error: dict[str, str] | None = None
        if status == "completed":
            outcome = self.outcome()
            assert isinstance(outcome, Rendered)
            if self.submission.return_base64:
                output_format = self.submission.output_format
                body["output"] = [data_uri(data, output_format) for data in outcome.outputs]
            else:
                body["output"] = [
                    f"{base_url}/cdn/{self.id}/{self.output_name(index)}"
                    for index in range(len(outcome.outputs))
                ]
        elif status == "failed":
            outcome = self.outcome()
            if isinstance(outcome, LoadFailed):
                error = {"name": outcome.name, "message": outcome.message}
            else:
                assert self.fault is not None
                error = {"name": self.fault.name, "message": self.fault.message}
        body["error"] = error
        return body

    def is_running(self, now: float) -> bool:
        """Return whether it is still in progress at ``now``, as far as known."""
        return not reached(now, self.ends_at())
