"""What the emulator saw: a ledger kept while it runs, and the report taken from it."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["AcceptedSubmission", "EmulatorReport", "Ledger", "WebhookAttempt", "max_overlap"]


@attrs.frozen
class AcceptedSubmission:
    """A submission that was given a prediction id.

    Attributes:
        id: The prediction id.
        time: API seconds since the emulator started.
        generations: Its ``num_samples``: what it counts toward limits and credits.
        payload_digest: SHA-256 of the body as canonical JSON (sorted keys): equal
            payloads have equal digests whatever their key order.
        model_name: The model it runs on (``tryon-v1`` for a flat v1 body).
    """

    id: str
    time: float
    generations: int
    payload_digest: str
    model_name: str


@attrs.frozen
class WebhookAttempt:
    """One POST of a final status to a webhook URL.

    Attributes:
        id: The prediction id.
        url: Where it was sent.
        attempt: 1 for the first try, up to 6 (five retries).
        time: API seconds since the emulator started.
        status: The HTTP status answered, or ``None`` when no answer came.
        error: Why no answer came, if none did.
    """

    id: str
    url: str
    attempt: int
    time: float
    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status is not None and 200 <= self.status < 300


@attrs.frozen
class EmulatorReport:
    """A snapshot of everything the emulator observed, for asserting on in tests.

    Times are API seconds since the emulator started (loop seconds / ``time_scale``). The
    lists and dicts are copies made for the snapshot: changing them changes nothing else.

    Attributes:
        now: When the snapshot was taken.
        accepted: Submissions given an id, in order (including ``drop_after`` ones).
        rejected: 429 answers by error code, all routes together.
        rejected_by_route: 429 answers by route (``run``, ``status``, ``credits``).
        bad_requests: 400 answers to submissions (nothing created).
        errors_5xx: Injected 5xx answers.
        dropped: Connections closed without an answer by faults.
        status_calls: Admitted status calls per known prediction id.
        status_calls_total: Admitted status calls, unknown ids included.
        status_call_times: When each admitted status call of a known prediction arrived,
            per prediction id, in order (the pauses between one prediction's polls).
        terminal_at: When each prediction that has ended ended.
        first_seen_terminal: When a status answer first showed each one ended.
        statuses: Each prediction's status now.
        cancels: Ids named by cancel calls, in order.
        duplicates: Accepted submissions whose payload digest equals an earlier one's.
        max_submissions_in_window: Most generations accepted in any submit window.
        max_status_in_window: Most status calls admitted in any status window.
        max_in_progress: Most predictions in progress at one moment.
        in_progress: Predictions in progress now.
        credits_used: Generations charged (failed and canceled ones are not).
        image_fetches: Input image URLs the emulator requested, in order.
        webhook_deliveries: Every webhook POST attempt, in order.
        requests_by_route: Requests that reached each API route, faults and 429s included.
        max_requests_per_second: The most requests to each API route within any one API
            second (a hot loop shows here).
        faults: Requests disturbed by HTTP faults, by ``"route:kind"`` (a request both
            delayed and disturbed otherwise counts under both).
    """

    now: float
    accepted: list[AcceptedSubmission]
    rejected: dict[str, int]
    rejected_by_route: dict[str, int]
    bad_requests: int
    errors_5xx: int
    dropped: int
    status_calls: dict[str, int]
    status_calls_total: int
    status_call_times: dict[str, list[float]]
    terminal_at: dict[str, float]
    first_seen_terminal: dict[str, float]
    statuses: dict[str, str]
    cancels: list[str]
    duplicates: int
    max_submissions_in_window: int
    max_status_in_window: int
    max_in_progress: int
    in_progress: int
    credits_used: int
    image_fetches: list[str]
    webhook_deliveries: list[WebhookAttempt]
    requests_by_route: dict[str, int] = attrs.field(factory=dict)
    max_requests_per_second: dict[str, int] = attrs.field(factory=dict)
    faults: dict[str, int] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready builtins (dicts, lists, numbers, strings)."""
        result: dict[str, Any] = {}
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, list):
                value = [attrs.asdict(item) if attrs.has(type(item)) else item for item in value]
            result[field.name] = value
        return result


class Ledger:
    """Counters the handlers update as requests come and go (loop seconds)."""

    def __init__(self) -> None:
        self.accepted: list[tuple[float, str, int, str, str]] = []
        self.digests: set[str] = set()
        self.duplicates = 0
        self.rejected: Counter[str] = Counter()
        self.rejected_by_route: Counter[str] = Counter()
        self.bad_requests = 0
        self.errors_5xx = 0
        self.dropped = 0
        self.status_calls_total = 0
        #: Per known prediction id, when each admitted status call arrived (their count
        #: is the report's ``status_calls``).
        self.status_call_times: defaultdict[str, list[float]] = defaultdict(list)
        self.first_seen_terminal: dict[str, float] = {}
        self.cancels: list[str] = []
        self.image_fetches: list[str] = []
        self.webhooks: list[tuple[str, str, int, float, int | None, str | None]] = []
        #: Arrival times of requests on each API route (loop seconds).
        self.arrivals: dict[str, list[tuple[float, int]]] = {}
        self.faults: Counter[str] = Counter()

    def arrive(self, route: str, now: float) -> None:
        """Record a request reaching an API route."""
        self.arrivals.setdefault(route, []).append((now, 1))

    def __repr__(self) -> str:
        return f"<Ledger accepted={len(self.accepted)} rejected={sum(self.rejected.values())}>"

    def accept(self, now: float, pid: str, generations: int, digest: str, model: str) -> None:
        """Record an accepted submission, noting a repeated payload."""
        if digest in self.digests:
            self.duplicates += 1
        self.digests.add(digest)
        self.accepted.append((now, pid, generations, digest, model))

    def reject(self, route: str, code: str) -> None:
        """Record a 429 answer."""
        self.rejected[code] += 1
        self.rejected_by_route[route] += 1


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """Return the most half-open ``[start, end)`` intervals that share one moment."""
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        if end > start:
            events.append((start, 1))
            if math.isfinite(end):
                events.append((end, -1))
    events.sort()  # at equal times an end (-1) sorts before a start (+1)
    best = current = 0
    for _when, step in events:
        current += step
        best = max(best, current)
    return best
