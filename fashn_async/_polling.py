"""When to ask for a prediction's status next: learned, not fixed.

Pure policy, apart from the I/O. :class:`CompletionModel` learns how long this client's
predictions take (from a prior until real ones finish). :func:`next_poll_delay` plans a
poll from that: none before the shortest plausible completion, then one every
``target_lag`` seconds through the likely range, then backing off geometrically for the
stragglers. :func:`done_probability` ranks pollers, so a scarce status budget goes to the
predictions most likely finished.

At tryon-v1.6 latencies (5 to 11 s) this costs about 3.7 status calls per prediction, and
the detection lag stays below ``target_lag`` unless the status budget is exhausted
(tests/test_polling.py simulates it; benchmarks/ measures it over HTTP).
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import attrs

from fashn_async._validators import at_least_one, positive
from fashn_async.errors import ConfigurationError

__all__ = ["CompletionModel", "Polling", "done_probability", "next_poll_delay"]


def _check_prior(
    instance: object, attribute: attrs.Attribute[tuple[float, float]], value: object
) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
        or not 0 < value[0] <= value[1]
    ):
        raise ConfigurationError(
            f"prior must be (low, high) seconds with 0 < low <= high, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Polling:
    """How pollers plan their status calls.

    Args:
        prior: Expected completion time range in seconds before any prediction of this
            client has finished (tryon-v1.6: about 5 to 11 s).
        target_lag: Poll spacing inside the likely range: the worst detection lag there.
        max_interval: Longest pause between two polls of one prediction.
        backoff: Growth of the spacing once a prediction runs longer than expected.
        memory: How many finished predictions the model remembers.
    """

    prior: tuple[float, float] = attrs.field(default=(5.0, 11.0), validator=_check_prior)
    target_lag: float = attrs.field(default=0.95, validator=positive)
    max_interval: float = attrs.field(default=10.0, validator=positive)
    backoff: float = attrs.field(default=1.5, validator=positive)
    memory: int = attrs.field(default=200, validator=at_least_one)

    def scaled(self, factor: float) -> Polling:
        """This policy with every duration multiplied by ``factor`` (for a fast emulator)."""
        low, high = self.prior
        return attrs.evolve(
            self,
            prior=(low * factor, high * factor),
            target_lag=self.target_lag * factor,
            max_interval=self.max_interval * factor,
        )


class CompletionModel:
    """The distribution of completion times, learned from finished predictions."""

    def __init__(self, polling: Polling) -> None:
        self.polling = polling
        self._recent: deque[float] = deque(maxlen=max(polling.memory, 1))
        self._sorted: list[float] = []

    def __repr__(self) -> str:
        return f"<CompletionModel samples={len(self._sorted)} range={self.likely_range()}>"

    @property
    def samples(self) -> int:
        """Finished predictions the model has learned from."""
        return len(self._sorted)

    def observe(self, seen_running: float | None, seen_done: float) -> None:
        """Learn one completion, known to lie after ``seen_running`` and by ``seen_done``.

        Args:
            seen_running: Seconds after submission the prediction was last seen running,
                or None when the first poll already found it done.
            seen_done: Seconds after submission it was first seen done.
        """
        # Found done at the first poll, planned one step after the earliest likely
        # completion: credit it to the start of that step. Crediting it to the poll
        # itself would push the first poll later with every batch.
        if seen_running is None:
            value = seen_done - self.polling.target_lag
        else:
            value = (seen_running + seen_done) / 2.0
        value = max(value, 0.0)
        if len(self._recent) == self._recent.maxlen:
            old = self._recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._recent.append(value)
        bisect.insort(self._sorted, value)

    def likely_range(self) -> tuple[float, float]:
        """Where completions are expected: (first poll time, end of dense polling)."""
        prior_low, prior_high = self.polling.prior
        n = len(self._sorted)
        if n == 0:
            return prior_low, prior_high
        low = self._sorted[int(0.02 * (n - 1))]
        high = self._sorted[round(0.98 * (n - 1))]
        if n < 10:  # a few samples: widen towards the prior rather than trust them alone
            low, high = min(low, prior_low), max(high, prior_high)
        return low, high

    def cdf(self, elapsed: float) -> float:
        """Estimated probability that a prediction is done ``elapsed`` s after submission."""
        low, high = self.polling.prior
        n = len(self._sorted)
        if n == 0:
            return min(max((elapsed - low) / max(high - low, 1e-9), 0.0), 1.0)
        return bisect.bisect_right(self._sorted, elapsed) / n


def next_poll_delay(model: CompletionModel, elapsed: float, since_last: float | None) -> float:
    """Seconds from now until the next poll of a prediction submitted ``elapsed`` s ago.

    Args:
        model: The learned completion times.
        elapsed: Seconds since the prediction was submitted.
        since_last: Seconds since its previous poll, or None before the first.
    """
    polling = model.polling
    low, high = model.likely_range()
    step = polling.target_lag
    if elapsed < low:
        # Nothing is likely done before `low`; the first poll lands one step into the range,
        # so completions right at `low` are caught within the target lag.
        return max(low - elapsed, 0.0) + min(step, max(high - low, 0.0) + 1e-3)
    if elapsed < high + step:
        return step
    # A straggler: back off geometrically from the last spacing, up to max_interval.
    previous = since_last if since_last is not None else step
    return min(max(previous * polling.backoff, step), polling.max_interval)


def done_probability(model: CompletionModel, elapsed: float, last_checked: float) -> float:
    """Chance a prediction finished since it was last seen running, for ranking pollers."""
    before = model.cdf(last_checked)
    now = model.cdf(elapsed)
    if before >= 1.0:
        return 1.0  # longer than anything seen: overdue, ask soon
    return (now - before) / (1.0 - before)
