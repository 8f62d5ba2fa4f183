"""How to poll, per latency class: the policy's settings and the documented priors.

:class:`Polling` is the configuration; :func:`latency_class` groups requests whose
completion times are alike (model name, mode, ``num_samples``), and :func:`prior_for`
gives each class the timing NOTES.md documents for its model (:data:`PRIORS`) mixed with
a broad prior, or the broad prior alone for a model it does not list. The spacing
tightens from ``target_lag`` towards ``idle_lag`` while the status budget has room to
spare (:func:`spacing`).

The estimator is :mod:`fashn_async._survival`, the plan of each poll
:mod:`fashn_async._plan`, the loop :mod:`fashn_async._poller`. (tests/test_polling.py
simulates the policy over many seeds; tests/test_poller_*.py drive the real loop against
the emulator; benchmarks/bench_polling.py measures it.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from fashn_async._validators import (
    MAX_SECONDS,
    config_number,
    config_seconds,
    in_range,
    is_finite_number,
    positive,
    seconds,
    shorten,
)
from fashn_async.errors import ConfigurationError

__all__ = [
    "BROAD",
    "PRIORS",
    "LatencyClass",
    "Modes",
    "Polling",
    "latency_class",
    "pressure",
    "prior_for",
    "spacing",
]

#: A distribution as uniform pieces: ``((low, high, weight), ...)``, seconds.
Modes: TypeAlias = tuple[tuple[float, float, float], ...]
#: What a request's completion time depends on: (model name, mode, num_samples).
LatencyClass: TypeAlias = tuple[str, str, int]

#: The prior for a model NOTES.md gives no timing for: log-uniform-ish from 0.5 to 256 s
#: (equal weight per octave).
BROAD: Modes = tuple((0.5 * 2**k, 0.5 * 2 ** (k + 1), 1.0) for k in range(9))
#: Documented timings (NOTES.md): tryon-v1.6 "about 5 / 8 / 12-17 s by mode", tryon-max
#: "20-120 s"; the flat v1 body is run like tryon-v1.6's default mode.
PRIORS: Mapping[tuple[str, str], Modes] = {
    ("tryon-v1.6", "performance"): ((3.5, 7.0, 1.0),),
    ("tryon-v1.6", "balanced"): ((5.0, 11.0, 1.0),),
    ("tryon-v1.6", "quality"): ((10.0, 20.0, 1.0),),
    ("tryon-max", ""): ((20.0, 120.0, 1.0),),
    ("v1", ""): ((5.0, 11.0, 1.0),),
}
#: Share of the broad prior mixed into a documented one (the documentation may be old).
BROAD_SHARE = 0.1
#: Largest ``Polling.scale``: the broad prior's 256 s scaled stays within a day.
MAX_SCALE = MAX_SECONDS / BROAD[-1][1]
#: Narrowest poll spacing, seconds: 1 us. Narrower is a unit mistake (``1e-300`` would
#: have the model's bins, a quarter spacing wide, number in the tens of thousands); an
#: emulator at time scale 0.001 still polls at 0.95 ms.
MIN_LAG = 1e-6
#: Most finished predictions a latency class may remember (``Polling.memory``). Each
#: refit works through all of them in a worker thread, and each completion re-sorts them
#: on the event loop: with completions spread over 1-200 s, 10 000 cost about 0.15 s a
#: refit and 0.5 ms a completion on a 2-core machine (50 000: 0.4 s and 4 ms; the default
#: 200: 16 ms and 8 us).
MAX_MEMORY = 10_000


def _modes(value: object) -> Modes | None:
    """``(low, high)`` or ``[(low, high, weight), ...]`` -> Modes; None stays None."""
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str | bytes | bytearray) or not value:
        raise ConfigurationError(
            f"prior must be (low, high) or ((low, high, weight), ...), got {shorten(value)}"
        )
    if len(value) == 2 and all(is_finite_number(v) for v in value):
        value = [(value[0], value[1], 1.0)]
    modes = []
    for mode in value:
        if (
            not isinstance(mode, Sequence)
            or isinstance(mode, str | bytes | bytearray)
            or len(mode) != 3
            or not all(is_finite_number(v) for v in mode)
            or not 0 < mode[0] <= mode[1]
            or not mode[2] > 0
            or not mode[1] <= MAX_SECONDS
        ):
            raise ConfigurationError(
                "prior must be (low, high) seconds with 0 < low <= high <= 86400 (a day), or "
                f"a sequence of (low, high, weight) with weight > 0, got {shorten(value)}"
            )
        modes.append((float(mode[0]), float(mode[1]), float(mode[2])))
    return tuple(modes)


def _check_explore(instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    if not in_range(value, 0.0, 1.0):
        raise ConfigurationError(f"explore must be a probability in [0, 1], got {shorten(value)}")


def _check_lag(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A spacing: from :data:`MIN_LAG` (1 us) to a day."""
    config_seconds(attribute.name, value, low=MIN_LAG, strict=False)


def _check_idle(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    _check_lag(instance, attribute, value)
    if value > instance.target_lag:
        raise ConfigurationError(
            f"idle_lag ({shorten(value)} s) must not exceed target_lag "
            f"({shorten(instance.target_lag)} s): it is the spacing with the status budget "
            "idle, the tighter one"
        )


def _check_memory(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not in_range(value, 1, MAX_MEMORY, integer=True):
        raise ConfigurationError(
            f"memory must be an integer from 1 to {MAX_MEMORY} (each refit works through "
            f"all of them), got {shorten(value)}"
        )


def _check_backoff(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    config_number(attribute.name, value, low=1.0, strict=False)  # a growth; 1: none


def _check_scale(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not in_range(value, 0.0, MAX_SCALE, open_low=True):
        raise ConfigurationError(
            f"scale must be a number above 0 and at most {MAX_SCALE:g} (the broad prior's "
            f"{BROAD[-1][1]:g} s scaled stays within a day), got {shorten(value)}"
        )


def _check_max_interval(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    seconds(instance, attribute, value)
    lag = instance.target_lag  # (idle_lag is refused above target_lag already)
    if lag > value:
        raise ConfigurationError(
            f"target_lag ({shorten(lag)} s) must not exceed max_interval "
            f"({shorten(value)} s): the spacing of polls is capped by max_interval"
        )


@attrs.frozen(kw_only=True)
class Polling:
    """How pollers plan their status calls.

    Args:
        prior: Expected completion times before this client has seen any, for every
            latency class: ``(low, high)`` seconds, or ``((low, high, weight), ...)`` for
            a mixture. None (the default): the timing NOTES.md documents per model
            (:data:`PRIORS`), mixed with a broad prior, or the broad prior (0.5-256 s)
            for a model it does not list.
        target_lag: Poll spacing where completions are likely, in seconds, when the status
            budget is busy: the worst detection lag there. 1 us to a day.
        idle_lag: The spacing when the status budget is idle (None: 0.9 x ``target_lag``);
            between the two as the budget fills. 1 us up to ``target_lag``.
        max_interval: Longest pause between two polls of one prediction, seconds, a
            stretch the model holds empty included (the first poll waits for the
            class's completions and may come later); at least ``target_lag`` and
            ``idle_lag``. A poll near it (a spacing short), or a first poll that has
            waited that long past its plan, goes ahead of the others in the status
            budget's queue: the bound holds, give or take the budget's next grant, while
            the predictions in progress divided by it ask no more than the budget's rate
            (less the caller's own status calls); a 429's ``Retry-After`` pauses all.
        backoff: Growth of the spacing once a prediction runs longer than any seen: at
            least 1 (1: none).
        memory: Finished predictions each latency class remembers: an int from 1 to
            :data:`MAX_MEMORY` (10 000; a refit costs time in proportion).
        explore: Share of predictions that explore: the first poll one to three spacings
            early (a probe for faster completions), and a stretch the model holds empty
            crossed with a poll every four spacings rather than skipped.
        prior_weight: What the prior is worth, in finished predictions; it fades as
            ``exp(-n / (2.5 * prior_weight))`` with ``n`` predictions seen (a larger
            weight for a prior known to be right).
        scale: Multiplies the built-in priors (set by :meth:`scaled`): above 0, at most
            :data:`MAX_SCALE` (337.5, so that the broad prior stays within a day).

    Raises:
        ConfigurationError: a setting out of range, naming it. Durations are seconds
            above 0 and at most a day (``MAX_SECONDS``); an int too big for a float
            (``10**400``) is out of every range; a prior given as text or bytes is not a
            sequence of numbers.
    """

    prior: Modes | None = attrs.field(default=None, converter=_modes)
    target_lag: float = attrs.field(default=0.95, validator=_check_lag)
    idle_lag: float | None = attrs.field(default=None, validator=_check_idle)
    max_interval: float = attrs.field(default=10.0, validator=_check_max_interval)
    backoff: float = attrs.field(default=1.5, validator=_check_backoff)
    memory: int = attrs.field(default=200, validator=_check_memory)
    explore: float = attrs.field(default=0.05, validator=_check_explore)
    prior_weight: float = attrs.field(default=2.0, validator=positive)
    scale: float = attrs.field(default=1.0, validator=_check_scale)

    @property
    def lag_range(self) -> tuple[float, float]:
        """(spacing with the budget idle, spacing with it busy), seconds."""
        idle = self.idle_lag if self.idle_lag is not None else 0.9 * self.target_lag
        return min(idle, self.target_lag), self.target_lag

    def scaled(self, factor: float) -> Polling:
        """This policy with every duration multiplied by ``factor`` (for a fast emulator).

        Raises:
            ConfigurationError: ``factor`` not a finite number above 0, or a duration it
                gives out of its range.
        """
        config_number("factor", factor)
        prior = self.prior
        return attrs.evolve(
            self,
            prior=tuple((lo * factor, hi * factor, w) for lo, hi, w in prior) if prior else None,
            target_lag=self.target_lag * factor,
            idle_lag=self.idle_lag * factor if self.idle_lag is not None else None,
            max_interval=self.max_interval * factor,
            scale=self.scale * factor,
        )


def latency_class(request: Any) -> LatencyClass:
    """The latency class of a request: (model name, mode, num_samples).

    Reads public attributes only: a ``ModelRequest`` (``model_name``, ``inputs``) or the
    flat v1 ``TryOnRequest`` (class ``("v1", "", num_samples)``). tryon-v1.6 without a
    ``mode`` runs ``balanced`` (its documented default).
    """
    model = getattr(request, "model_name", None)
    if isinstance(model, str):
        inputs = getattr(request, "inputs", {})
        mode = inputs.get("mode", "balanced" if model == "tryon-v1.6" else "")
        samples = inputs.get("num_samples", 1)
        return (model, str(mode), samples if isinstance(samples, int) else 1)
    samples = getattr(request, "num_samples", 1)
    return ("v1", "", samples if isinstance(samples, int) else 1)


def prior_for(key: LatencyClass | None, polling: Polling) -> Modes:
    """The prior of a latency class, in seconds scaled by ``polling.scale``."""
    if polling.prior is not None:
        return polling.prior
    documented = None
    if key is not None:
        documented = PRIORS.get((key[0], key[1])) or PRIORS.get((key[0], ""))
    modes: Iterable[tuple[float, float, float]]
    if documented is None:
        modes = BROAD
    else:
        total = sum(w for *_, w in BROAD)
        modes = [(lo, hi, (1 - BROAD_SHARE) * w) for lo, hi, w in documented]
        modes += [(lo, hi, BROAD_SHARE * w / total) for lo, hi, w in BROAD]
    factor = polling.scale
    return tuple((lo * factor, hi * factor, w) for lo, hi, w in modes)


def pressure(polling: Polling, likely: int, rate: float) -> float:
    """The status budget's pressure with ``likely`` predictions polled where completions
    are likely, one every ``target_lag``, against its ``rate`` (calls a second)."""
    return likely / polling.target_lag / rate


def spacing(polling: Polling, pressure: float) -> float:
    """Poll spacing for a status budget at ``pressure`` (0: idle, >= 1: fully used)."""
    idle, busy = polling.lag_range
    return idle + (busy - idle) * min(max(pressure, 0.0), 1.0)
