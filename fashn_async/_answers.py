"""What the fields of an API answer may be: pure rules, each the one place it is stated.

- :func:`id_problem`: a prediction id usable as a segment of a URL path;
- :func:`output_problem`: an ``output`` the client can keep;
- :func:`read_status`: the status an answer's ``status`` and ``error`` stand for.

tests/test_answers.py checks each with hypothesis.

A prediction id is sent as the last segment of ``/v1/status/:id`` and ``/v1/cancel/:id``
(fashn-api-v1.txt), percent-encoded. Percent-encoding does not neutralise everything:
``.`` and ``..`` are unreserved characters, sent as they are, and RFC 3986 (5.2.4,
remove_dot_segments) removes them, so ``/v1/status/..`` becomes ``/v1/``, another route,
whose answer may be taken for the prediction's. The same rule serves a caller's id
(``_validators.check_id``: refused before anything is sent) and the id in a
``POST /v1/run`` answer (``_decisions.body_shape``: such an answer is not the expected
one, so the POST's outcome is uncertain, never re-sent).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from fashn_async._names import RUNNING_STATUSES, TERMINAL_STATUSES

__all__ = ["id_problem", "output_problem", "read_status"]

#: Path separators: ``/`` is sent as ``%2F`` and ``\\`` as ``%5C``, but servers and
#: gateways that decode them before routing (or read ``\\`` as ``/``, as some do) would
#: see more path segments, and remove dot segments among them.
_SEPARATORS = frozenset("/\\")
#: Longest id accepted, in UTF-8 bytes. The API's ids are about 40 (fashn-api-v1.txt:
#: ``123a87r9-4129-4bb3-be18-9c9fb5bd7fc1-u1``); percent-encoded (up to 3 characters a
#: byte), the status URL holding one stays well within the 8 KiB request line common
#: servers accept (``_urls.MAX_URL_LENGTH``): 1,024 characters of others did not.
MAX_ID_LENGTH = 256


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot stand as one path segment naming a prediction, or None.

    Unusable: anything but a string; an empty (or all white space) string; one over
    :data:`MAX_ID_LENGTH` bytes in UTF-8; a ``;`` (servers that read a path parameter
    after it, Tomcat's and Spring's, read ``..;`` as ``..``); text UTF-8
    cannot carry (a lone surrogate); a character ``str.isprintable`` refuses (control
    and format characters, line and paragraph separators, white space other than the
    ASCII space: invisible, and a CR or LF would break the request line); a dot segment
    ``.`` or ``..``; a path separator ``/`` or ``\\``. Dot segments and separators count
    also in the text's NFKC form (``"\\uff0e\\uff0e"``, fullwidth dots, and ``"\\u2025"``,
    the two-dot leader, are ``..`` there), as a server that normalises Unicode reads it.

    Returns:
        A short phrase for an error message ("a dot segment ..."), or None if usable.
    """
    if not isinstance(value, str):
        return f"not a string but {type(value).__name__}"
    if not value.strip():
        return "empty"
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        return "not text UTF-8 can carry (a lone surrogate)"
    if len(encoded) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} bytes in UTF-8"
    if ";" in value:
        return "holding a ';', after which some servers read a path parameter"
    if not value.isprintable():
        return "not printable (a control, format or invisible character)"
    for form in (value, unicodedata.normalize("NFKC", value)):
        if form in (".", ".."):
            return "a dot segment, which URL normalisation removes (RFC 3986 5.2.4)"
        if _SEPARATORS.intersection(form):
            return "holding a path separator ('/' or '\\')"
    return None


def output_problem(value: object) -> str | None:
    """Why ``value`` cannot be a status answer's ``output``, or None.

    ``output`` is null (absent, or a ``completed`` answer without outputs: a success
    with none) or a list of non-empty strings (fashn-api-v1.txt shows a list of URLs;
    NOTES.md: data URIs with ``return_base64``). Anything else is unreadable, never
    turned into strings (``[null]`` is not ``("None",)``, ``{"a": 1}`` not ``("a",)``).
    """
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return None
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"its 'output' is {shown}, not null or a list of non-empty strings"


#: Every status the API documents (fashn-api-v1.txt, NOTES.md).
_KNOWN_STATUSES: frozenset[str] = frozenset((*RUNNING_STATUSES, *TERMINAL_STATUSES))


def read_status(status: str, error: Any) -> str:
    """The status an answer's ``status`` and ``error`` stand for.

    A documented status is itself; one that differs from it only by case or surrounding
    white space (``"Completed"``, ``" failed\\n"``) is that status. An unknown status
    is kept, and read as still running (NOTES.md: "Treat unknown statuses as still
    running"), unless the answer carries an ``error`` object with a non-empty ``name``
    or ``message`` (fashn-api-v1.txt, "Error Handling": the API adds it on an error):
    then it is ``"failed"``, with that error, as a prediction with an error is not
    running (``"aborted"``, ``"error"`` would otherwise be polled without end).
    """
    folded = status.strip().lower()
    if folded in _KNOWN_STATUSES:
        return folded
    if isinstance(error, Mapping) and any(
        isinstance(error.get(key), str) and error.get(key) for key in ("name", "message")
    ):
        return "failed"
    return status
