"""One validation pass per kind of value, for requests and for configuration.

Request fields (raise :class:`~fashn_async.errors.InvalidRequestError`):
:func:`check_number`, :func:`check_choice`, :func:`check_bool`, :func:`check_string` and
:func:`check_json` (any other input value: what JSON can carry, and only that). URLs and
image sources are checked in ``_images``. Every message names the field, the value
(shortened to 80 characters) and what is accepted.

Configuration (raise :class:`~fashn_async.errors.ConfigurationError`, a ``ValueError``):
:func:`positive`, :func:`non_negative`, :func:`at_least_one`, :func:`optional_at_least_one`,
used as attrs validators by every configuration class, and :func:`config_number` for
plain keyword options. NaN and infinities are refused everywhere: a window of ``inf``
seconds or a margin of ``nan`` would make every wait endless.

Both kinds rest on one number test, :func:`in_range` (and :func:`is_finite_number`): a
bool is never a number; an int is compared exactly, and an int beyond what a float holds
(about 1.8e308: ``10**400``) is out of every range, since no field or option accepts it
and every one of them is used as a float somewhere.

Durations (:func:`seconds`, :func:`timeout_seconds`, :func:`config_seconds`) lie within
:data:`MIN_TIMEOUT` .. :data:`MAX_SECONDS`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

import attrs

from fashn_async._answers import id_problem
from fashn_async.errors import ConfigurationError, InvalidRequestError

__all__ = [
    "INT64_MAX",
    "MAX_JSON_DEPTH",
    "MAX_SECONDS",
    "MIN_TIMEOUT",
    "at_least_one",
    "check_bool",
    "check_choice",
    "check_id",
    "check_json",
    "check_number",
    "check_string",
    "config_int",
    "config_number",
    "config_seconds",
    "encodable",
    "in_range",
    "is_finite_number",
    "non_negative",
    "non_negative_seconds",
    "optional_at_least_one",
    "positive",
    "seconds",
    "shorten",
    "timeout_seconds",
]

#: The largest integer a JSON API server stores as an "int" (signed 64 bits). The v1
#: reference types ``seed`` as ``int`` with no range; a larger value is refused upstream.
INT64_MAX: Final = 2**63 - 1
#: Nesting depth of an input value beyond which it is refused (no documented input of any
#: model nests deeper than two levels; this also stops self-referencing containers).
MAX_JSON_DEPTH: Final = 32
#: The longest duration any option or wait takes, in seconds: a day. Nothing the API
#: documents lasts longer (NOTES.md: predictions take seconds to minutes, webhooks are
#: retried over about 5 minutes, outputs live 72 hours on the CDN and are not waited on);
#: a longer wait is a unit mistake (milliseconds for seconds), and values near 1e308 make
#: the loop's timer arithmetic overflow to ``inf`` and wait forever.
MAX_SECONDS: Final = 86_400.0
#: The shortest network timeout, in seconds: 1 ms. A shorter one (``1e-320``) can expire
#: before the first system call and fails every request, which is a unit mistake too.
MIN_TIMEOUT: Final = 0.001
_FLOAT_MAX: Final = sys.float_info.max


def shorten(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real problem
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def visible(text: str) -> str:
    """``text`` with every character Python does not call printable shown as its escape
    (``\\n``, ``\\x1b``, ``\\u202e``), for a line a person reads: a value from a file (a
    path with a newline, an escape sequence or a right-to-left override in a name) can
    neither split a line, drive the terminal nor reorder what the line shows. Unprintable
    are the control and format characters (bidirectional overrides and isolates,
    zero-width ones), line and paragraph separators, spaces other than `` `` (a no-break
    space looks like one), lone surrogates, private-use and unassigned code points."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def encodable(value: str) -> bool:
    """Whether UTF-8 can carry ``value`` (no lone surrogate code points, ``"\\ud800"``):
    every string sent, as JSON or in a URL, is UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fail(field: str, accepted: str, value: Any) -> InvalidRequestError:
    return InvalidRequestError(
        f"{field}: must be {accepted} (got {shorten(value)})", name="InvalidRequest"
    )


def is_finite_number(value: Any) -> TypeGuard[int | float]:
    """A finite float, or an int a float can hold (up to about 1.8e308); never a bool."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return -_FLOAT_MAX <= value <= _FLOAT_MAX  # exact: int-float comparison is exact
    return math.isfinite(value)


def in_range(
    value: Any, low: float, high: float = math.inf, *, integer: bool = False, open_low: bool = False
) -> TypeGuard[int | float]:
    """The one number test: a finite number (an int if ``integer``; never a bool) from
    ``low`` (excluded if ``open_low``) to ``high``. An int is compared exactly, never
    converted to a float; one beyond what a float holds is never in range."""
    if not is_finite_number(value) or (integer and not isinstance(value, int)):
        return False
    return bool((low < value if open_low else low <= value) and value <= high)


def check_number(field: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    """A finite int (or float unless ``integer``) from ``low`` to ``high``, both included.

    Raises:
        InvalidRequestError: naming the field, the value and the range.
    """
    if not in_range(value, low, high, integer=integer):
        kind = "an integer" if integer else "a number"
        raise _fail(field, f"{kind} from {_bound(low)} to {_bound(high)}", value)


def _bound(value: float) -> str:
    if isinstance(value, int) or value.is_integer():
        whole = int(value)
        return (
            "2**63 - 1"
            if whole == INT64_MAX
            else "-2**63"
            if whole == -INT64_MAX - 1
            else str(whole)
        )
    return f"{value:g}"


def check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
    """One of ``choices`` exactly (a string; case matters, as for the API).

    Raises:
        InvalidRequestError: naming the field, the value and the choices.
    """
    if not isinstance(value, str) or value not in choices:
        raise _fail(field, "one of " + ", ".join(choices), value)


def check_bool(field: str, value: Any) -> None:
    """``True`` or ``False`` (not 0, 1 or ``"true"``: JSON has a boolean type).

    Raises:
        InvalidRequestError: naming the field and the value.
    """
    if not isinstance(value, bool):
        raise _fail(field, "True or False", value)


def check_string(field: str, value: Any, *, max_length: int = 10_000) -> None:
    """Text that UTF-8 can carry (no lone surrogates), at most ``max_length`` characters.

    Raises:
        InvalidRequestError: naming the field and the value.
    """
    if not isinstance(value, str):
        raise _fail(field, "a string", value)
    if len(value) > max_length:
        raise _fail(field, f"a string of at most {max_length} characters", value)
    if not encodable(value):
        raise _fail(field, "text without lone surrogate code points", value)


def check_json(field: str, value: Any, *, depth: int = 0) -> None:
    """A value JSON can carry as the API reads it.

    Accepted: None, bool, finite int within the signed 64-bit range, finite float, str,
    list/tuple of these, and mappings with string keys; at most :data:`MAX_JSON_DEPTH`
    levels deep. Refused: NaN and infinities (not JSON: Python would send ``NaN``), sets,
    bytes and any other object ``json`` cannot encode.

    Raises:
        InvalidRequestError: naming the field (with its path, e.g. ``inputs.a[2].b``).
    """
    if depth > MAX_JSON_DEPTH:
        raise _fail(field, f"nested at most {MAX_JSON_DEPTH} levels deep", "...")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        check_number(field, value, -INT64_MAX - 1, INT64_MAX, integer=True)
    elif isinstance(value, float):
        if not is_finite_number(value):
            raise _fail(field, "a finite number (JSON has no NaN or Infinity)", value)
    elif isinstance(value, str):
        check_string(field, value, max_length=len(value))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(f"{field}[{index}]", item, depth=depth + 1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(field, "a mapping with string keys", key)
            if not encodable(key):
                raise _fail(field, "a mapping whose keys have no lone surrogate code points", key)
            check_json(f"{field}.{key}", item, depth=depth + 1)
    else:
        raise _fail(
            field,
            "a JSON value: None, bool, int, float, str, list or dict "
            f"(a {type(value).__name__} has no JSON form)",
            value,
        )


# -- configuration ---------------------------------------------------------------------


def config_number(
    name: str, value: Any, *, low: float = 0.0, strict: bool = True, integer: bool = False
) -> None:
    """A finite number above ``low`` (at least ``low`` unless ``strict``); an int if asked.

    Raises:
        ConfigurationError: naming the option, the value and what is accepted.
    """
    if not in_range(value, low, integer=integer, open_low=strict):
        kind = "an integer" if integer else "a finite number"
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ConfigurationError(f"{name} must be {kind} {bound}, got {shorten(value)}")


def config_seconds(
    name: str, value: Any, *, low: float = 0.0, strict: bool = True, high: float = MAX_SECONDS
) -> None:
    """A duration in seconds: a finite number above ``low`` (at least ``low`` unless
    ``strict``) and at most ``high`` (:data:`MAX_SECONDS`, a day).

    Raises:
        ConfigurationError: naming the option, the value and the accepted range.
    """
    if not in_range(value, low, high, open_low=strict):
        bound = "above" if strict else "from"
        raise ConfigurationError(
            f"{name} must be a number of seconds {bound} {low:g} up to {high:g} "
            f"(a day: a longer wait is a unit mistake), got {shorten(value)}"
        )


def config_bool(name: str, value: Any) -> None:
    """``True`` or ``False`` (not None, 0, 1 or ``"yes"``: a truthy typo must not flip
    what happens to running predictions).

    Raises:
        ConfigurationError: naming the option and the value.
    """
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {shorten(value)}")


def config_int(name: str, value: Any, *, low: int = 1) -> None:
    """An integer of at least ``low`` (not a bool).

    Raises:
        ConfigurationError: naming the option and the value.
    """
    config_number(name, value, low=low, strict=False, integer=True)


def positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a finite real number above zero (not a bool)."""
    config_number(attribute.name, value)


def non_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a finite real number of at least zero (not a bool)."""
    config_number(attribute.name, value, strict=False)


def seconds(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a duration above zero and at most :data:`MAX_SECONDS`."""
    config_seconds(attribute.name, value)


def non_negative_seconds(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a duration from zero to :data:`MAX_SECONDS`."""
    config_seconds(attribute.name, value, strict=False)


def timeout_seconds(name: str, value: Any) -> None:
    """A network timeout: from :data:`MIN_TIMEOUT` (1 ms) to :data:`MAX_SECONDS`.

    Raises:
        ConfigurationError: naming the option, the value and the accepted range.
    """
    config_seconds(name, value, low=MIN_TIMEOUT, strict=False)


def at_least_one(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: an integer >= 1 (not a bool)."""
    config_int(attribute.name, value)


def optional_at_least_one(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: None, or an integer >= 1 (not a bool)."""
    if value is not None:
        config_int(f"{attribute.name} (None to turn it off)", value)


def check_id(prediction_id: str) -> str:
    """A prediction id usable as the last segment of ``/v1/status/:id`` (the rule of
    :func:`fashn_async._answers.id_problem`): not empty, at most 256 UTF-8 bytes, no ``;``,
    printable text UTF-8 can carry, not a dot segment (``.``, ``..``), no ``/`` or ``\\``.
    Checked for ``status()``, ``cancel()``, ``wait()`` and a batch's ``Prediction`` items.

    Raises:
        InvalidRequestError: naming the id (shortened) and what is amiss; nothing is sent.
    """
    problem = id_problem(prediction_id)
    if problem is not None:
        raise InvalidRequestError(
            f"a prediction id must be usable in a URL path; got {shorten(prediction_id)}: {problem}"
        )
    return prediction_id
