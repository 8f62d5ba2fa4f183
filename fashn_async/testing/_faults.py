"""The fault rules in force, and the seeded draws that decide when they fire."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._config import Fault, HttpFault, PredictionFault

__all__ = ["FaultBook", "HttpPlan", "fault_from_json"]


@attrs.define
class _Rule:
    fault: Fault
    remaining: int | None


@attrs.frozen
class HttpPlan:
    """What the faults do to one request: wait ``delay`` loop seconds, then ``action``."""

    delay: float = 0.0
    action: HttpFault | None = None


class FaultBook:
    """Fault rules in the order they were added; the first that fires wins.

    Every probability is drawn from one RNG seeded by the emulator's seed, so the same
    requests in the same order meet the same faults.
    """

    __slots__ = ("_rng", "_rules")

    def __init__(self, faults: Iterable[Fault], seed: int) -> None:
        self._rng = random.Random(f"{seed}:faults")  # noqa: S311 - seeded emulation, not security
        self._rules: list[_Rule] = []
        for fault in faults:
            self.add(fault)

    def __repr__(self) -> str:
        return f"<FaultBook rules={len(self._rules)}>"

    def add(self, fault: Fault) -> None:
        """Put ``fault`` in force after the rules already there."""
        times = fault.times if isinstance(fault, HttpFault) else None
        self._rules.append(_Rule(fault, times))

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    def _fires(self, rule: _Rule) -> bool:
        if rule.remaining == 0:
            return False
        if rule.fault.probability < 1.0 and self._rng.random() >= rule.fault.probability:
            return False
        if rule.remaining is not None:
            rule.remaining -= 1
        return True

    def for_prediction(self, image_texts: Iterable[str]) -> PredictionFault | None:
        """Return the failure a new submission with these image values ends with."""
        texts = tuple(image_texts)
        for rule in self._rules:
            fault = rule.fault
            if not isinstance(fault, PredictionFault):
                continue
            if fault.match is not None and not any(fault.match in text for text in texts):
                continue
            if self._fires(rule):
                return fault
        return None

    def for_request(self, route: str, scale: float) -> HttpPlan:
        """Return what happens to a request on ``route`` (``run``, ``status``, ...).

        Every ``slow`` rule that fires adds its delay; the first other rule that fires
        decides the outcome. ``times`` counts the requests a rule actually disturbed.
        """
        delay = 0.0
        action: HttpFault | None = None
        for rule in self._rules:
            fault = rule.fault
            if not isinstance(fault, HttpFault) or fault.route not in ("any", route):
                continue
            if fault.kind != "slow" and action is not None:
                continue
            if not self._fires(rule):
                continue
            if fault.kind == "slow":
                delay += fault.delay * scale
            else:
                action = fault
        return HttpPlan(delay, action)


def fault_from_json(data: Mapping[str, Any]) -> Fault:
    """Build a fault from ``{"type": "prediction" | "http", ...fields}``.

    Raises:
        ValueError: Unknown type, unknown field, or a field the fault refuses.
    """
    fields = dict(data)
    kind = fields.pop("type", None)
    cls: type[PredictionFault] | type[HttpFault]
    if kind == "prediction":
        cls = PredictionFault
    elif kind == "http":
        cls = HttpFault
    else:
        raise ValueError(f"type must be 'prediction' or 'http', got {kind!r}")
    known = {field.name for field in attrs.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown fields for a {kind} fault: {', '.join(unknown)}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
