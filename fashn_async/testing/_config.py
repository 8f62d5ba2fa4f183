"""How an emulator behaves: limits, timing, and the faults it injects."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeAlias, get_args

import attrs
from attrs import validators as v

__all__ = [
    "EmulatorConfig",
    "HttpFault",
    "Latency",
    "LatencyTable",
    "PredictionFault",
    "WindowLimit",
    "latency_for",
]

HttpFaultKind = Literal[
    "error_5xx",
    "drop_before",
    "drop_after",
    "slow",
    "gateway_before",
    "gateway_after",
    "gateway_json_before",
    "gateway_json_after",
    "echo_key",
    "echo_key_page",
    "throttle",
    "truncated",
    "not_json",
    "no_id",
    "other_id",
    "cut_off",
    "bad_status_line",
    "untracked",
    "answer_twice",
    "idle_408",
    "patched",
]
HttpRoute = Literal["run", "status", "cancel", "credits", "any"]

#: The same names as :data:`HttpFaultKind`, for checking values at run time.
_HTTP_FAULT_KINDS: tuple[str, ...] = get_args(HttpFaultKind)
_HTTP_ROUTES: tuple[str, ...] = ("run", "status", "cancel", "credits", "any")


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _probability(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


def _finite(value: Any) -> bool:
    """A finite number; an int too large for a float (``10**400``) is not one."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _real(value: Any) -> float:
    """A converter: ``float(value)``, with an int too large for a float made an infinity
    of its sign, so the field's validator refuses it by name."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _number(low: float, *, above: bool = False) -> Validator:
    """Accept finite numbers >= ``low`` (or > ``low`` when ``above``)."""

    def check(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
        if not _finite(value) or value < low or (above and value == low):
            bound = ">" if above else ">="
            raise ValueError(f"{attribute.name} must be finite and {bound} {low}, got {value!r}")

    return check


def _integer(low: int, high: int | None = None, *, optional: bool = False) -> Validator:
    """Accept ints (not bools) within ``[low, high]``; also ``None`` when ``optional``."""

    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attribute.name} must be an int, got {value!r}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"{attribute.name} must be within [{low}, {high}], got {value}")

    return check


def _text(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{attribute.name} must be a non-empty str, got {value!r}")


def _optional_str(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str or None, got {value!r}")


def _optional_limit(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, WindowLimit):
        raise TypeError(f"{attribute.name} must be a WindowLimit or None, got {value!r}")


@attrs.frozen
class WindowLimit:
    """At most ``limit`` units in *any* window of ``period`` API seconds.

    The window rolls: it is checked against a log of the admitted events, never against
    calendar buckets, so a burst that straddles a minute boundary is still refused.

    Args:
        limit: Units (requests, or generations for submissions) admitted per window.
        period: Length of the window in API seconds (multiplied by ``time_scale``).
    """

    limit: int = attrs.field(validator=_integer(1))
    period: float = attrs.field(converter=_real, validator=_number(0.0, above=True))


@attrs.frozen
class PredictionFault:
    """Make matching predictions end ``failed`` with the error ``name``.

    The prediction is created and answered with an id as usual; it fails when its latency
    has elapsed, exactly as a pipeline error would surface in the real API.

    Args:
        name: Error name to report: a v1 name, a current one, or any future name.
        message: Error message to report.
        match: Substring of ``model_image`` or ``garment_image`` selecting the submissions
            this applies to; ``None`` applies to every submission.
        probability: Chance that a matching submission fails (drawn from the seeded RNG).
    """

    name: str = attrs.field(validator=_text)
    message: str = attrs.field(
        default="The emulator injected this error.", validator=v.instance_of(str)
    )
    match: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))
    probability: float = attrs.field(default=1.0, converter=_real, validator=_probability)


@attrs.frozen
class HttpFault:
    """Disturb HTTP exchanges on an API route.

    Kinds:
        ``error_5xx``: answer ``{"error": "InternalServerError", ...}`` with ``status``;
            nothing is created.
        ``drop_before``: close the connection without an answer; nothing is created.
        ``drop_after``: handle the request (a submission is created and counted), then
            close the connection without an answer.
        ``slow``: wait ``delay`` API seconds, then handle the request normally.
        ``gateway_before``: answer ``status`` (say 502 or 504) with a gateway's HTML page,
            as a proxy in front of the API does; nothing is created.
        ``gateway_after``: handle the request (a submission is created and counted), then
            answer ``status`` with the gateway's HTML page instead of the API's answer.
        ``gateway_json_before``, ``gateway_json_after``: as the two above, with the JSON
            error a gateway or load balancer of its own sends (``{"error": "Bad Gateway",
            "message": ...}``): the API's shape, with a name the API never gives.
        ``echo_key``: answer ``status`` in the API's error shape (InternalServerError),
            its message and an ``X-Echo-Authorization`` header repeating the request's
            ``Authorization`` (as a careless server or a debugging proxy does); nothing is
            created. ``echo_key_page``: the same as an HTML page, the key in its
            ``Content-Type`` too.
        ``throttle``: answer 429 ``{"error": code, ...}`` with ``Retry-After:
            retry_after`` (sent verbatim: ``"0"``, an HTTP-date in the past...; ``None``
            sends none); nothing is created or counted.
        ``truncated``: handle the request, then answer its status with the first half of
            its JSON body (Content-Length matching, as a proxy that cut it would send).
        ``not_json``: handle the request, then answer 200 with an HTML page.
        ``no_id``: handle the request, then answer 200 ``{"error": null}`` (JSON with
            neither id nor status).
        ``other_id``: handle the request, then answer its JSON with another ``id`` (a
            status answer about some other prediction).
        ``cut_off``: handle the request, then send the headers and half the body it
            announces, and close the connection.
        ``bad_status_line``: handle the request, then send a malformed status line and
            close the connection.
        ``untracked``: answer 404 ``{"error": "NotFound", ...}``, as the API does for the
            status of a prediction it no longer tracks (NOTES.md); nothing is handled.
        ``answer_twice``: handle the request and answer it, then send the answer again
            once the connection idles, as a proxy out of step does (aiohttp#13656): the
            next request on that kept-alive connection reads the copy as its own answer.
        ``idle_408``: handle the request and answer it, then, the connection idle, send
            ``408 Request Timeout`` with ``Connection: close``, and close it 2 s later, as
            busy servers do to idle connections: a request sent on it meanwhile reads the
            408.
        ``patched``: handle the request, then answer 200 with its JSON object updated
            with ``patch`` (a status ``"Aborted"``, an output ``[null]``, an id ``".."``).

    Args:
        kind: One of the kinds above.
        route: ``run``, ``status``, ``cancel``, ``credits`` or ``any`` of them.
        probability: Chance that a matching request is disturbed (seeded RNG).
        times: Disturb only this many requests, then stop; ``None`` for no end.
        status: HTTP status of ``error_5xx`` (500-599) and ``gateway_*`` (400-599) answers.
        delay: API seconds a ``slow`` request waits.
        code: Error name of ``throttle`` answers (``RateLimitExceeded``,
            ``ConcurrencyLimitExceeded``...).
        retry_after: ``Retry-After`` value of ``throttle`` answers; ``None``: no header.
        patch: The fields a ``patched`` answer gets (any JSON values).
    """

    kind: HttpFaultKind = attrs.field(validator=v.in_(_HTTP_FAULT_KINDS))
    route: HttpRoute = attrs.field(default="any", validator=v.in_(_HTTP_ROUTES))
    probability: float = attrs.field(default=1.0, converter=_real, validator=_probability)
    times: int | None = attrs.field(default=None, validator=_integer(0, optional=True))
    status: int = attrs.field(default=500, validator=_integer(400, 599))
    delay: float = attrs.field(default=30.0, converter=_real, validator=_number(0.0))
    code: str = attrs.field(default="RateLimitExceeded", validator=_text)
    retry_after: str | None = attrs.field(default="0", validator=_optional_str)
    patch: dict[str, Any] = attrs.field(factory=dict, hash=False, validator=v.instance_of(dict))

    def __attrs_post_init__(self) -> None:
        if self.status < 500 and not self.kind.startswith("gateway"):
            raise ValueError(f"status must be within [500, 599] for {self.kind}")


Fault = PredictionFault | HttpFault


@attrs.frozen
class Latency:
    """A latency distribution: a mixture of uniform ranges, in API seconds.

    Args:
        modes: ``((low, high, weight), ...)``; a prediction draws a mode by weight, then
            a time uniformly within it.
    """

    modes: tuple[tuple[float, float, float], ...] = attrs.field()

    @modes.validator
    def _check(self, _attr: attrs.Attribute[Any], value: Any) -> None:
        if not value or not all(
            len(m) == 3
            and all(isinstance(x, int | float) and _finite(x) for x in m)
            and 0.0 <= m[0] <= m[1]
            and m[2] > 0
            for m in value
        ):
            raise ValueError(
                "latency must be (low, high) with 0 <= low <= high, or a sequence of "
                f"(low, high, weight) with weight > 0, got {value!r}"
            )

    @classmethod
    def of(cls, value: Any) -> Latency:
        """Read ``(low, high)``, ``[(low, high, weight), ...]`` or a Latency."""
        if isinstance(value, Latency):
            return value
        try:
            items = list(value)
            if len(items) == 2 and all(isinstance(x, int | float) for x in items):
                return cls(((float(items[0]), float(items[1]), 1.0),))
            return cls(tuple((float(lo), float(hi), float(w)) for lo, hi, w in items))
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                "latency must be (low, high) with 0 <= low <= high, or a sequence of "
                f"(low, high, weight) with weight > 0, got {value!r}"
            ) from None

    def draw(self, rng: random.Random) -> float:
        """One latency, API seconds."""
        pick = rng.random() * sum(w for *_, w in self.modes)
        for low, high, weight in self.modes:
            if pick < weight:
                return rng.uniform(low, high)
            pick -= weight
        low, high, _ = self.modes[-1]
        return rng.uniform(low, high)


#: Latency by model and mode, from NOTES.md: tryon-v1.6 "about 5 / 8 / 12-17 s by mode",
#: tryon-max "20-120 s". Models without documented timing (and the flat v1 body) draw
#: from ``"*"``, tryon-v1.6's default mode.
DEFAULT_LATENCY: dict[str, Latency | dict[str, Latency]] = {
    "tryon-v1.6": {
        "performance": Latency(((3.5, 7.0, 1.0),)),
        "balanced": Latency(((5.0, 11.0, 1.0),)),
        "quality": Latency(((12.0, 17.0, 1.0),)),
    },
    "tryon-max": Latency(((20.0, 120.0, 1.0),)),
    "*": Latency(((5.0, 11.0, 1.0),)),
}

LatencyTable: TypeAlias = dict[str, "Latency | dict[str, Latency]"]


def _latency(value: Any) -> LatencyTable:
    """A range or distribution for every model, or a table by model (and mode)."""
    if not isinstance(value, dict):
        return {"*": Latency.of(value)}
    table: LatencyTable = {
        name: dict(entry) if isinstance(entry, dict) else entry
        for name, entry in DEFAULT_LATENCY.items()
    }
    for name, entry in value.items():
        if not isinstance(name, str):
            raise TypeError(f"latency keys must be model names, got {name!r}")
        if isinstance(entry, dict):
            modes = table.get(name)
            merged = dict(modes) if isinstance(modes, dict) else {}
            merged.update({str(mode): Latency.of(v) for mode, v in entry.items()})
            table[name] = merged
        else:
            table[name] = Latency.of(entry)
    return table


def latency_for(table: LatencyTable, model_name: str, mode: str | None) -> Latency:
    """The distribution a submission of ``model_name`` in ``mode`` draws from."""
    entry = table.get(model_name, table.get("*", DEFAULT_LATENCY["*"]))
    if isinstance(entry, dict):
        found = entry.get(mode or "balanced") or entry.get("balanced")
        if found is None:
            found = next(iter(entry.values()))
        return found
    return entry


def _faults(value: Iterable[Fault]) -> tuple[Fault, ...]:
    faults = tuple(value)
    for fault in faults:
        if not isinstance(fault, PredictionFault | HttpFault):
            raise TypeError(f"faults must be PredictionFault or HttpFault, got {fault!r}")
    return faults


def _optional_float(value: float | None) -> float | None:
    return None if value is None else _real(value)


def _optional_positive(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _number(0.0, above=True)(inst, attribute, value)


@attrs.frozen(kw_only=True)
class EmulatorConfig:
    """Everything an emulator does differently from the defaults.

    The defaults follow the real API: tryon-v1.6 latency, 25 generations a minute, 50
    status calls per 10 s, 30 credit checks per 10 s, 6 predictions in progress.

    Args:
        api_key: The bearer token accepted; any other is refused with 401.
        time_scale: Multiplies every duration (latency, windows, the Retry-After of its
            limits' 429s, delays): 0.01 runs an API minute in 0.6 s. (A ``throttle``
            fault's ``retry_after`` is sent verbatim, as given.)
        latency: Seconds from submission to the terminal status. ``(low, high)`` (drawn
            uniformly) or a :class:`Latency` mixture applies to every model; a dict by
            model name, each a range, a Latency, or a dict by ``mode``, overrides the
            defaults of NOTES.md (tryon-v1.6 3.5-7 / 5-11 / 12-17 s by mode, tryon-max
            20-120 s, any other model and the flat v1 body 5-11 s).
        seed: Seed of every random draw (ids, latencies, faults): runs repeat exactly.
        submit_limit: Generations (sum of ``num_samples``) per rolling window.
        status_limit: ``GET /v1/status`` calls per rolling window.
        credits_limit: ``GET /v1/credits`` calls per rolling window.
        in_flight_limit: Predictions submitted and not yet terminal.
        credits: Budget of generations; ``None`` is unlimited.
        retry_after: Whether 429 answers carry ``Retry-After``.
        max_body_bytes: Larger request bodies are refused with 413.
        status_retention: API seconds after its end that a prediction's status is kept;
            later, ``GET /v1/status`` answers 404 NotFound, as the API does for old
            predictions (NOTES.md gives no period: 72 hours, the CDN's lifetime of its
            outputs); ``None`` keeps them forever.
        body_timeout: Seconds (real ones: networks do not speed up with ``time_scale``)
            a request body may take to arrive; a slower one is answered 400 and its
            connection closed.
        max_slow_bodies: Request bodies read at once; one more arriving closes the
            connection that has been sending its body the longest (answered 400), so
            held-open slow connections cannot keep the emulator from answering.
        faults: Fault rules active from the start.
    """

    api_key: str = attrs.field(default="fashn-test-key", validator=_text, repr=False)
    time_scale: float = attrs.field(
        default=1.0, converter=_real, validator=_number(0.0, above=True)
    )
    latency: LatencyTable = attrs.field(
        factory=lambda: _latency({}), converter=_latency, hash=False
    )
    seed: int = attrs.field(default=0, validator=_integer(-(2**63), 2**63 - 1))
    submit_limit: WindowLimit | None = attrs.field(
        default=WindowLimit(25, 60.0), validator=_optional_limit
    )
    status_limit: WindowLimit | None = attrs.field(
        default=WindowLimit(50, 10.0), validator=_optional_limit
    )
    credits_limit: WindowLimit | None = attrs.field(
        default=WindowLimit(30, 10.0), validator=_optional_limit
    )
    in_flight_limit: int | None = attrs.field(default=6, validator=_integer(1, optional=True))
    credits: int | None = attrs.field(default=None, validator=_integer(0, optional=True))
    retry_after: bool = attrs.field(default=True, validator=v.instance_of(bool))
    max_body_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=_integer(1))
    status_retention: float | None = attrs.field(
        default=72 * 3600.0, converter=_optional_float, validator=_optional_positive
    )
    body_timeout: float = attrs.field(
        default=10.0, converter=_real, validator=_number(0.0, above=True)
    )
    max_slow_bodies: int = attrs.field(default=64, validator=_integer(1))
    faults: tuple[Fault, ...] = attrs.field(default=(), converter=_faults)
