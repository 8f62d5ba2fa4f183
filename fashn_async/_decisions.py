"""Every answer the network can give, and the one thing the client does about it.

:func:`decide` is the only place that decides whether a request is repeated, after how
long, and what is raised. The POST path (``_submitter``) and the GET path (``_engine``)
both describe what happened as an :class:`Outcome` and do what the :class:`Decision`
says; nothing else decides. It is pure: the same inputs (and the same ``rng`` state) give
the same decision, so tests/test_network_decisions.py checks it over every input with
hypothesis.

``run`` is ``POST /v1/run``, which creates (and charges) a prediction; the GETs are
``status``, ``cancel`` and ``credits``, safe to repeat. "API body" means the API's own
error: its shape, ``{"error": "<Name>", ...}`` or ``{"error": {"name": ...}}``, with a
name the API gives (:data:`API_ERROR_NAMES`) at a status it gives that name with
(:func:`apis_own`: a limit's name with 429, InternalServerError with a 5xx, the others
with a 2xx or another 4xx). The same shape with any other name (``{"error": "Bad
Gateway"}``, a gateway's own JSON) or at another status is not the API's, and proves
nothing. "Expected" means the route's success shape (``id``; ``status``; ``credits``)::

    what happened                                  POST /v1/run            GET
    ---------------------------------------------  ----------------------  ---------------
    no connection made (refused, connect timeout)  RETRY d  [1]            RETRY d  [1]
    TLS certificate not trusted (nothing sent)     FINAL                   FINAL
    sent, then no answer (read timeout, dropped,   UNCERTAIN               RETRY d  [1]
      malformed status line, body cut off)
    2xx, expected body                             RETURN                  RETURN
    2xx, API body without the expected fields      FINAL (API's error)     FINAL
    2xx, anything else (not JSON, truncated,       UNCERTAIN               RETRY d  [1]
      JSON without id, an id unusable in a URL
      path, an output not a list of strings)
    429 OutOfCredits                               FINAL                   FINAL
    429 ConcurrencyLimitExceeded, API body         RETRY d  [2]            RETRY d  [2]
    429 RateLimitExceeded, API body                PAUSE d  [2]            PAUSE d  [2]
    429, body not the API's                        UNCERTAIN               PAUSE d  [2]
    5xx, API body                                  RETRY d  [1] [3] [4]    RETRY d  [1] [4]
    5xx, body not the API's (HTML gateway page)    UNCERTAIN               RETRY d  [1] [4]
    408, body not the API's                        UNCERTAIN               RETRY d  [1]
    any other status, API body (400, 401, 404...)  FINAL                   FINAL
    any other status, body not the API's           UNCERTAIN               FINAL

    d    RetryPolicy.delay(n, Retry-After): the backoff for the n-th retry, or the
         server's Retry-After (capped at max_retry_after) when longer; never below
         min_delay, so Retry-After: 0, an absent one or a date in the past never makes
         a hot loop.
    [1]  counts toward RetryPolicy.attempts; the try that reaches it is FINAL instead.
    [2]  counts toward RetryPolicy.rate_limit_waits; past it, FINAL (the 429 is raised).
    [3]  NOTES.md: "Such an error [the API's own, HTTP status != 200] means no prediction
         id was issued, so resending the same payload is safe." A 5xx whose body is not
         the API's own (a gateway's HTML page) may come after the backend created the
         prediction: it proves nothing, so it is UNCERTAIN.
    [4]  with a Retry-After, PAUSE d instead: the server said when the service will be
         back (RFC 9110 10.2.3, a 503's), which holds for every request on the route,
         not only this one (each of the others would meet the outage page in turn).

RETURN: the answer is the result. RETRY: wait d, send again. PAUSE: the key's rate limit
was hit, or the server said when to come back: pause the route's limiter for d (every
request on it waits), send again. FINAL:
raise; for POST /v1/run nothing was created. UNCERTAIN: raise
:class:`~fashn_async.errors.SubmissionUncertainError`: the request may have reached the
server, so the prediction may exist and be charged; it is never re-sent.
"""

from __future__ import annotations

import enum
import random
from typing import Any, Literal

import attrs

from fashn_async._answers import id_problem, output_problem
from fashn_async._names import (
    CURRENT_PREDICTION_ERRORS,
    HTTP_ERROR_CODES,
    V1_PREDICTION_ERRORS,
)
from fashn_async._retry import RetryPolicy

__all__ = [
    "API_ERROR_NAMES",
    "Action",
    "Decision",
    "Happened",
    "Outcome",
    "Route",
    "Shape",
    "Tries",
    "apis_own",
    "may_be_stray",
    "body_shape",
    "counted_by_server",
    "decide",
    "unexpected",
]

Route = Literal["run", "status", "cancel", "credits"]

#: The error names the API gives: NOTES.md's codes of answers that carry no prediction,
#: and the v1 reference's and NOTES.md's names of failed predictions (a bad v1 body is
#: answered 400 with one). A body in the API's shape with any other name is a gateway's
#: or a load balancer's own: it may come after the API created the prediction.
API_ERROR_NAMES: frozenset[str] = frozenset(
    (*HTTP_ERROR_CODES, *V1_PREDICTION_ERRORS, *CURRENT_PREDICTION_ERRORS)
)

#: The names the API's own 429 and 5xx answers carry (NOTES.md pairs each code with its
#: status); the others come with a 2xx or another 4xx (a bad v1 body's 400 carries a
#: prediction error's name).
_LIMIT_NAMES = frozenset(name for name, status in HTTP_ERROR_CODES.items() if status == 429)
_SERVER_NAMES = frozenset(name for name, status in HTTP_ERROR_CODES.items() if status >= 500)

#: The field each route's success body has.
_EXPECTED_FIELD: dict[str, str] = {
    "run": "id",
    "status": "status",
    "cancel": "status",
    "credits": "credits",
}


class Action(enum.Enum):
    """What to do next."""

    RETURN = "return"
    RETRY = "retry"
    PAUSE = "pause"
    FINAL = "final"
    UNCERTAIN = "uncertain"


class Happened(enum.Enum):
    """How far a request got."""

    #: No connection was made (refused, unreachable, connect timeout): nothing was sent.
    NOT_SENT = "not_sent"
    #: No connection was made: the server's TLS certificate is not trusted (``verify``).
    #: Nothing was sent, and sending again cannot help.
    UNTRUSTED = "untrusted"
    #: Sent; no answer came in time.
    TIMEOUT = "timeout"
    #: Sent; the connection broke, the status line was malformed or the body cut off.
    LOST = "lost"
    #: An HTTP answer with a status and a complete body.
    ANSWERED = "answered"


class Shape(enum.Enum):
    """What an answer's body is."""

    #: A JSON object with the route's success field (``id``, ``status``, ``credits``).
    EXPECTED = "expected"
    #: The API's own error: its shape, with a name it gives (:data:`API_ERROR_NAMES`).
    API_ERROR = "api_error"
    #: JSON, but neither of the above (the API's shape with a name it never gives too).
    OTHER_JSON = "other_json"
    #: Not JSON: an HTML gateway page, plain text, a truncated document, nothing.
    NOT_JSON = "not_json"


@attrs.frozen
class Outcome:
    """What happened to one try of a request.

    Attributes:
        happened: How far it got.
        status: The HTTP status, for an answer.
        shape: What the body is, for an answer.
        error_name: The API error name in the body, when it has the API's shape.
        retry_after: The Retry-After header in seconds (0 for a date in the past), if any.
    """

    happened: Happened
    status: int | None = None
    shape: Shape | None = None
    error_name: str | None = None
    retry_after: float | None = None

    @property
    def answered(self) -> bool:
        """Whether an answer came: the server counted the request, if at all, before it.
        (Without one it may count it later still: a server slow to act on it.)"""
        return self.happened is Happened.ANSWERED

    @classmethod
    def answer(
        cls,
        status: int,
        shape: Shape,
        error_name: str | None = None,
        retry_after: float | None = None,
    ) -> Outcome:
        """An HTTP answer."""
        return cls(Happened.ANSWERED, status, shape, error_name, retry_after)


@attrs.frozen
class Tries:
    """What one request has been through so far.

    Attributes:
        failures: Retries spent on failures (no connection, 5xx, unreadable answers).
        refusals: 429 answers waited out.
    """

    failures: int = 0
    refusals: int = 0


@attrs.frozen
class Decision:
    """One row of the table: the action, the wait before it, and why.

    Attributes:
        action: What to do.
        delay: Seconds to wait (RETRY) or to pause the limiter (PAUSE); 0 otherwise.
        reason: The row, in words, for messages.
        tries: The counts after this decision, for the next one.
    """

    action: Action
    reason: str
    tries: Tries
    delay: float = 0.0

    @property
    def nothing_created(self) -> bool:
        """For POST /v1/run: whether this outcome proves no prediction was created."""
        return self.action in (Action.RETRY, Action.PAUSE, Action.FINAL)


def body_shape(route: Route, data: Any, *, is_json: bool) -> tuple[Shape, str | None]:
    """Classify a parsed body for ``route``; return its shape and any API error name
    (one of :data:`API_ERROR_NAMES`: the API's shape with another name is
    ``OTHER_JSON``).

    Expected (the route's success) means: for ``run`` an ``id`` usable as a path
    segment (:func:`fashn_async._answers.id_problem`: not ``..``, which would poll
    ``/v1/``); for ``status`` and ``cancel`` a string ``status`` and an ``output`` that
    is absent, null or a list of non-empty strings (fashn-api-v1.txt shows a list of
    URLs); for ``credits`` a ``credits`` object. An answer with the field but not so is
    not the route's: a POST's outcome is then uncertain, a GET is retried
    (:func:`unexpected` says what is amiss)."""
    if not is_json:
        return Shape.NOT_JSON, None
    if not isinstance(data, dict):
        return Shape.OTHER_JSON, None
    if _amiss(route, data) is None:
        return Shape.EXPECTED, None
    error = data.get("error")
    name = error.get("name") if isinstance(error, dict) else error
    if isinstance(name, str) and name in API_ERROR_NAMES:
        return Shape.API_ERROR, name
    return Shape.OTHER_JSON, None


def unexpected(route: Route, data: Any) -> str:
    """What keeps a 2xx JSON answer from being ``route``'s, for a message: the success
    field (``id``, ``status``, ``credits``) missing, or not of its type; an ``id`` not
    usable in a URL path; an ``output`` that is not a list of non-empty strings."""
    if not isinstance(data, dict):
        return f"the answer is a JSON {type(data).__name__}, not an object"
    return _amiss(route, data) or "the answer is not the expected one"


def _amiss(route: Route, data: dict[str, Any]) -> str | None:
    """What keeps the JSON object ``data`` from being ``route``'s success body, or None."""
    field = _EXPECTED_FIELD[route]
    if field not in data:
        return f"the answer has no {field!r}"
    value = data[field]
    if route == "credits":
        return (
            None if isinstance(value, dict) else f"its {field!r} is {_shown(value)}, not an object"
        )
    if not isinstance(value, str):
        return f"its {field!r} is {_shown(value)}, not a string"
    if route == "run":
        problem = id_problem(value)
        if problem is not None:
            return f"its 'id' is {_shown(value)}, unusable in a URL path: {problem}"
        return None
    return output_problem(data.get("output"))


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def apis_own(outcome: Outcome) -> bool:
    """Whether an answer is the API's own error: its shape, with a name it gives
    (:func:`body_shape`), at a status it gives that name with: a 429 for the limits and
    credits, a 5xx for InternalServerError, a 2xx or another 4xx for the rest; never a
    1xx, a 3xx or a status past 599. Anything else may be a gateway's."""
    if outcome.shape is not Shape.API_ERROR or outcome.error_name not in API_ERROR_NAMES:
        return False
    name, status = outcome.error_name, outcome.status or 0
    if status == 429:
        return name in _LIMIT_NAMES
    if 500 <= status <= 599:
        return name in _SERVER_NAMES
    return (200 <= status < 300 or 400 <= status < 500) and name not in _LIMIT_NAMES


def may_be_stray(outcome: Outcome) -> bool:
    """Whether a final answer to a GET may be another request's, left on a kept-alive
    connection by a proxy out of step (aiohttp#13656), and is asked again on a connection
    of its own before it is believed: the API's own error, or any 4xx (a proxy's or a
    firewall's page too). Not one final only after its retries (a 2xx it cannot read, a
    5xx): those were asked again already."""
    return apis_own(outcome) or 400 <= (outcome.status or 0) < 500


def counted_by_server(outcome: Outcome) -> bool:
    """Whether the server's rolling window counted this try: the one booking rule.

    Both request paths (GET in ``_engine``, POST in ``_submitter``) settle their limiter
    grant with it, so a window's books agree with the server's whatever the route:

    - never sent (no connection made, or a certificate not trusted): not counted, the
      server never saw it;
    - a 429 with the API's own body (RateLimitExceeded, ConcurrencyLimitExceeded,
      OutOfCredits): not counted. The API refused it before admitting it: for
      ``POST /v1/run`` the limit counts generations (fashn-api-v1.txt: "25
      generations/minute") and NOTES.md says such an error means no prediction was
      issued; no document says a refused request uses up a slot of any window, and the
      emulator (the project's second reading of the API) logs admitted requests only.
      The 429 pauses the route's limiter anyway (PAUSE/RETRY in :func:`decide`), so
      giving the grant back cannot rush the next request;
    - anything else that may have reached the server (an answer of any other status, a
      429 whose body is not the API's, a timeout, a dropped connection): counted, as it
      may have been admitted.
    """
    if outcome.happened in (Happened.NOT_SENT, Happened.UNTRUSTED):
        return False
    return not (outcome.status == 429 and apis_own(outcome))


def decide(
    route: Route,
    outcome: Outcome,
    tries: Tries,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    """Decide what to do about ``outcome`` of one try of a request on ``route``.

    Args:
        route: ``run`` (POST /v1/run) or a GET route.
        outcome: What happened to this try.
        tries: What the request had been through before this try.
        policy: Counts and waits.
        rng: Source of the backoff's jitter.

    Returns:
        The row of the module's table that applies.
    """
    post = route == "run"
    happened = outcome.happened
    if happened is Happened.NOT_SENT:
        return _failure("no connection was made; nothing was sent", tries, policy, rng, None)
    if happened is Happened.UNTRUSTED:
        return Decision(Action.FINAL, "the TLS certificate is not trusted; nothing was sent", tries)
    if happened is not Happened.ANSWERED:
        what = "no answer came in time" if happened is Happened.TIMEOUT else "the answer was lost"
        if post:
            return _uncertain(f"the request was sent and {what}", tries)
        return _failure(f"the request was sent and {what}", tries, policy, rng, None)

    status = outcome.status if outcome.status is not None else 0
    shape = outcome.shape if outcome.shape is not None else Shape.NOT_JSON
    api_body = apis_own(outcome)
    retry_after = outcome.retry_after
    if 200 <= status < 300:
        if shape is Shape.EXPECTED:
            return Decision(Action.RETURN, "answered", tries)
        if api_body:
            return Decision(Action.FINAL, "the API answered with an error", tries)
        if post:
            return _uncertain(f"HTTP {status} with an unreadable body", tries)
        return _failure(f"HTTP {status} with an unreadable body", tries, policy, rng, None)
    if status == 429:
        if api_body and outcome.error_name == "OutOfCredits":
            return Decision(Action.FINAL, "the account is out of credits", tries)
        if post and not api_body:
            return _uncertain("HTTP 429 from something other than the API", tries)
        if tries.refusals >= policy.rate_limit_waits:
            return Decision(Action.FINAL, "still refused with 429 after waiting", tries)
        after = Tries(tries.failures, tries.refusals + 1)
        delay = policy.delay(after.refusals, retry_after, rng=rng)
        if api_body and outcome.error_name == "ConcurrencyLimitExceeded":
            return Decision(Action.RETRY, "too many predictions in progress", after, delay)
        return Decision(Action.PAUSE, "the key's rate limit was hit", after, delay)
    if not api_body and post:
        return _uncertain(f"HTTP {status} with a body that is not the API's", tries)
    if status >= 500 or (status == 408 and not api_body):
        return _failure(f"HTTP {status}", tries, policy, rng, retry_after)
    return Decision(Action.FINAL, f"HTTP {status}", tries)


def _uncertain(reason: str, tries: Tries) -> Decision:
    return Decision(Action.UNCERTAIN, reason, tries)


def _failure(
    reason: str,
    tries: Tries,
    policy: RetryPolicy,
    rng: random.Random | None,
    retry_after: float | None,
) -> Decision:
    """RETRY after the backoff (PAUSE the route where the server gave a Retry-After),
    or FINAL once the attempts are spent."""
    after = Tries(tries.failures + 1, tries.refusals)
    if after.failures >= policy.attempts:
        return Decision(Action.FINAL, reason, tries)
    action = Action.RETRY if retry_after is None else Action.PAUSE
    return Decision(action, reason, after, policy.delay(after.failures, retry_after, rng=rng))
