"""The decision table (fashn_async._decisions): every row, and properties over all inputs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_async import RetryPolicy
from fashn_async._decisions import (
    Action,
    Decision,
    Happened,
    Outcome,
    Route,
    Shape,
    Tries,
    body_shape,
    counted_by_server,
    decide,
)

ROUTES: list[Route] = ["run", "status", "cancel", "credits"]
NAMES = [
    "RateLimitExceeded",
    "ConcurrencyLimitExceeded",
    "OutOfCredits",
    "InternalServerError",
    "BadRequest",
    "NotFound",
    "UnauthorizedAccess",
    "SomethingNew",
]
#: NOTES.md's HTTP error codes, and the v1 reference's and NOTES.md's prediction error
#: names, written out here apart from the package's list.
DOCUMENTED_NAMES = {
    "BadRequest", "UnauthorizedAccess", "NotFound", "RateLimitExceeded",
    "ConcurrencyLimitExceeded", "OutOfCredits", "InternalServerError",
    "PipelineError", "RequestError", "ImageLoadError", "NSFWError", "PoseError",
    "InputValidationError", "PhotoTypeError", "ContentModerationError", "LoRALoadError",
    "ThirdPartyError", "3rdPartyProviderError",
}  # fmt: skip
STATUSES = st.one_of(
    st.sampled_from([200, 201, 204, 301, 400, 401, 404, 408, 413, 429, 500, 502, 503, 504]),
    st.integers(100, 599),
)
RETRY_AFTER = st.one_of(
    st.none(), st.just(0.0), st.floats(0, 1e9, allow_nan=False), st.sampled_from([0.35, 7.0])
)


@st.composite
def outcomes(draw: st.DrawFn) -> Outcome:
    """Any outcome: not sent, lost, timed out, or any status with any body shape."""
    happened = draw(st.sampled_from(list(Happened)))
    if happened is not Happened.ANSWERED:
        return Outcome(happened)
    shape = draw(st.sampled_from(list(Shape)))
    name = draw(st.sampled_from(NAMES)) if shape is Shape.API_ERROR else None
    return Outcome.answer(draw(STATUSES), shape, name, draw(RETRY_AFTER))


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    """Any valid policy."""
    maximum = draw(st.floats(0.01, 100))
    cap = draw(st.floats(0.01, 500))
    return RetryPolicy(
        attempts=draw(st.integers(1, 10)),
        rate_limit_waits=draw(st.integers(1, 40)),
        initial=draw(st.floats(0.001, 10)),
        maximum=maximum,
        jitter=draw(st.floats(0, 1)),
        min_delay=draw(st.floats(0.001, min(maximum, cap))),
        max_retry_after=cap,
    )


TRIES = st.builds(Tries, st.integers(0, 60), st.integers(0, 60))


def may_have_created(outcome: Outcome) -> bool:
    """The oracle, written apart from the table: can a POST with this outcome have landed?

    Only a connection never made (a TLS handshake refused on the certificate is one: the
    request is written only after it), an API-shaped error answer, or a success with an
    id tells for sure; every other thing (no answer, a body not the API's) proves nothing.
    """
    if outcome.happened in (Happened.NOT_SENT, Happened.UNTRUSTED):
        return False
    if outcome.happened is not Happened.ANSWERED:
        return True
    return not the_apis_own(outcome)


def the_apis_own(outcome: Outcome) -> bool:
    """An error answer the API itself gives (NOTES.md's table pairs each code with its
    status): a limit's code with 429, InternalServerError with a 5xx, any other name
    the API gives with a 2xx or another 4xx."""
    if outcome.shape is not Shape.API_ERROR or outcome.error_name not in DOCUMENTED_NAMES:
        return False
    status, name = outcome.status or 0, outcome.error_name
    limits = {"RateLimitExceeded", "ConcurrencyLimitExceeded", "OutOfCredits"}
    if status == 429:
        return name in limits
    if 500 <= status <= 599:
        return name == "InternalServerError"
    return (200 <= status < 300 or 400 <= status < 500) and name not in limits


@settings(max_examples=400)
@given(route=st.sampled_from(ROUTES), outcome=outcomes(), tries=TRIES, policy=policies())
def test_every_input_has_a_sound_decision(
    route: Route, outcome: Outcome, tries: Tries, policy: RetryPolicy
) -> None:
    """Over all inputs: no POST that may have landed is repeated; waits are within [floor, cap]."""
    decision = decide(route, outcome, tries, policy, random.Random(0))
    if route == "run" and may_have_created(outcome):
        assert decision.action in (Action.UNCERTAIN, Action.RETURN)
        if decision.action is Action.RETURN:
            assert outcome.shape is Shape.EXPECTED
    if route != "run":
        assert decision.action is not Action.UNCERTAIN
    if decision.action in (Action.RETRY, Action.PAUSE):
        assert policy.min_delay <= decision.delay <= policy.longest_wait
        assert decision.tries.failures + decision.tries.refusals == (
            tries.failures + tries.refusals + 1
        )
        if decision.tries.failures > tries.failures:
            assert decision.tries.failures < policy.attempts
        else:
            assert decision.tries.refusals <= policy.rate_limit_waits
    else:
        assert decision.delay == 0.0
    if outcome.error_name == "OutOfCredits" and outcome.status == 429:
        assert decision.action is Action.FINAL


def test_every_discrete_input_exhaustively() -> None:
    """Every route x status 100-599 x body shape x error name x Retry-After, enumerated."""
    policy = RetryPolicy()
    rng = random.Random(0)
    bodies = [(shape, None) for shape in Shape if shape is not Shape.API_ERROR]
    bodies += [(Shape.API_ERROR, name) for name in NAMES]
    checked = 0
    for route in ROUTES:
        for happened in (Happened.NOT_SENT, Happened.UNTRUSTED, Happened.TIMEOUT, Happened.LOST):
            decision = decide(route, Outcome(happened), Tries(), policy, rng)
            assert (decision.action is Action.UNCERTAIN) == (
                route == "run" and happened in (Happened.TIMEOUT, Happened.LOST)
            )
            # Sending again cannot make a certificate trusted: raised at once.
            assert (decision.action is Action.FINAL) == (happened is Happened.UNTRUSTED)
        for status in range(100, 600):
            for shape, name in bodies:
                for retry_after in (None, 0.0, 0.35, 7.0, 1e9):
                    outcome = Outcome.answer(status, shape, name, retry_after)
                    decision = decide(route, outcome, Tries(), policy, rng)
                    checked += 1
                    if route == "run" and may_have_created(outcome):
                        assert decision.action in (Action.UNCERTAIN, Action.RETURN)
                    if route != "run":
                        assert decision.action is not Action.UNCERTAIN
                    if decision.action in (Action.RETRY, Action.PAUSE):
                        assert policy.min_delay <= decision.delay <= policy.longest_wait
                    if status == 429 and name == "OutOfCredits":
                        assert decision.action is Action.FINAL
    assert checked == 4 * 500 * len(bodies) * 5


@settings(max_examples=150)
@given(
    route=st.sampled_from(ROUTES),
    sequence=st.lists(outcomes(), min_size=1, max_size=120),
    policy=policies(),
    seed=st.integers(0, 2**32),
)
def test_retries_of_one_request_are_bounded(
    route: Route, sequence: list[Outcome], policy: RetryPolicy, seed: int
) -> None:
    """Fed any sequence of outcomes, one request is repeated at most attempts-1 + waits times."""
    rng = random.Random(seed)
    tries = Tries()
    repeats = 0
    for outcome in sequence:
        decision = decide(route, outcome, tries, policy, rng)
        if decision.action not in (Action.RETRY, Action.PAUSE):
            break
        repeats += 1
        tries = decision.tries
    assert repeats <= policy.attempts - 1 + policy.rate_limit_waits


@given(
    route=st.sampled_from(ROUTES),
    retry_after=st.one_of(st.none(), st.floats(0, 1e9, allow_nan=False)),
    refusals=st.integers(0, 29),
    policy=policies(),
)
def test_retry_after_is_clamped_to_floor_and_cap(
    route: Route, retry_after: float | None, refusals: int, policy: RetryPolicy
) -> None:
    """A 429's wait honours Retry-After up to the cap, and is never below the floor."""
    outcome = Outcome.answer(429, Shape.API_ERROR, "RateLimitExceeded", retry_after)
    decision = decide(route, outcome, Tries(0, refusals), policy, random.Random(1))
    if refusals >= policy.rate_limit_waits:
        assert decision.action is Action.FINAL
        return
    assert decision.action is Action.PAUSE
    assert decision.delay >= policy.min_delay
    assert decision.delay <= policy.longest_wait
    if retry_after is not None:
        assert decision.delay >= min(retry_after, policy.max_retry_after)


@given(seed=st.integers(0, 2**32), outcome=outcomes(), route=st.sampled_from(ROUTES))
def test_decide_is_pure(seed: int, outcome: Outcome, route: Route) -> None:
    """The same inputs and the same random state give the same decision."""
    policy = RetryPolicy()
    first = decide(route, outcome, Tries(), policy, random.Random(seed))
    assert first == decide(route, outcome, Tries(), policy, random.Random(seed))


POLICY = RetryPolicy(jitter=0.0)
API = Shape.API_ERROR

# (route, outcome, expected action): the module docstring's table, row by row.
ROWS: list[tuple[str, Outcome, Action]] = [
    ("run", Outcome(Happened.NOT_SENT), Action.RETRY),
    ("status", Outcome(Happened.NOT_SENT), Action.RETRY),
    ("run", Outcome(Happened.UNTRUSTED), Action.FINAL),
    ("status", Outcome(Happened.UNTRUSTED), Action.FINAL),
    ("run", Outcome(Happened.TIMEOUT), Action.UNCERTAIN),
    ("run", Outcome(Happened.LOST), Action.UNCERTAIN),
    ("status", Outcome(Happened.TIMEOUT), Action.RETRY),
    ("status", Outcome(Happened.LOST), Action.RETRY),
    ("run", Outcome.answer(200, Shape.EXPECTED), Action.RETURN),
    ("credits", Outcome.answer(200, Shape.EXPECTED), Action.RETURN),
    ("run", Outcome.answer(200, API, "BadRequest"), Action.FINAL),
    ("run", Outcome.answer(200, Shape.NOT_JSON), Action.UNCERTAIN),
    ("run", Outcome.answer(200, Shape.OTHER_JSON), Action.UNCERTAIN),
    ("status", Outcome.answer(200, Shape.NOT_JSON), Action.RETRY),
    ("status", Outcome.answer(200, Shape.OTHER_JSON), Action.RETRY),
    ("run", Outcome.answer(429, API, "OutOfCredits", 0.0), Action.FINAL),
    ("credits", Outcome.answer(429, API, "OutOfCredits"), Action.FINAL),
    ("run", Outcome.answer(429, API, "ConcurrencyLimitExceeded", 0.0), Action.RETRY),
    ("run", Outcome.answer(429, API, "RateLimitExceeded", 0.0), Action.PAUSE),
    ("status", Outcome.answer(429, API, "RateLimitExceeded"), Action.PAUSE),
    ("run", Outcome.answer(429, Shape.NOT_JSON), Action.UNCERTAIN),
    ("status", Outcome.answer(429, Shape.NOT_JSON), Action.PAUSE),
    ("run", Outcome.answer(500, API, "InternalServerError"), Action.RETRY),
    # A 5xx with a Retry-After: the server said when it is back, for every request.
    ("run", Outcome.answer(503, API, "InternalServerError", 3.0), Action.PAUSE),
    ("status", Outcome.answer(503, Shape.NOT_JSON, None, 5.0), Action.PAUSE),
    ("status", Outcome.answer(502, API, "InternalServerError", 0.0), Action.PAUSE),
    ("run", Outcome.answer(502, Shape.NOT_JSON), Action.UNCERTAIN),
    ("run", Outcome.answer(504, Shape.NOT_JSON), Action.UNCERTAIN),
    ("status", Outcome.answer(502, Shape.NOT_JSON), Action.RETRY),
    ("run", Outcome.answer(408, Shape.NOT_JSON), Action.UNCERTAIN),
    ("status", Outcome.answer(408, Shape.NOT_JSON), Action.RETRY),
    ("run", Outcome.answer(400, API, "BadRequest"), Action.FINAL),
    ("status", Outcome.answer(404, API, "NotFound"), Action.FINAL),
    ("run", Outcome.answer(403, Shape.NOT_JSON), Action.UNCERTAIN),
    # The API's names at a status the API never gives them with: a gateway's.
    ("run", Outcome.answer(502, API, "NotFound"), Action.UNCERTAIN),
    ("run", Outcome.answer(429, API, "PoseError"), Action.UNCERTAIN),
    ("status", Outcome.answer(429, API, "PoseError"), Action.PAUSE),
    ("run", Outcome.answer(600, API, "InternalServerError"), Action.UNCERTAIN),
    ("run", Outcome.answer(302, API, "NotFound"), Action.UNCERTAIN),
    ("run", Outcome.answer(200, API, "RateLimitExceeded"), Action.UNCERTAIN),
    ("run", Outcome.answer(302, Shape.NOT_JSON), Action.UNCERTAIN),
    ("status", Outcome.answer(403, Shape.NOT_JSON), Action.FINAL),
]


@pytest.mark.parametrize(("route", "outcome", "action"), ROWS)
def test_table_rows(route: Route, outcome: Outcome, action: Action) -> None:
    """Each row of the documented table decides as written."""
    decision = decide(route, outcome, Tries(), POLICY, random.Random(0))
    assert decision.action is action, decision.reason


@pytest.mark.parametrize("retry_after", [0.0, None])
def test_retry_after_zero_or_absent_waits_the_floor_then_backs_off(
    retry_after: float | None,
) -> None:
    """Retry-After 0 / absent: the first wait is the floor or more, and waits grow."""
    policy = RetryPolicy(jitter=0.0, initial=0.5, min_delay=0.5)
    outcome = Outcome.answer(429, API, "RateLimitExceeded", retry_after)
    tries, delays = Tries(), []
    for _ in range(6):
        decision = decide("run", outcome, tries, policy)
        delays.append(decision.delay)
        tries = decision.tries
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


def test_attempts_end_in_final() -> None:
    """After attempts-1 retries of an API 5xx, the next one is FINAL (the error is raised)."""
    policy = RetryPolicy(attempts=3)
    outcome = Outcome.answer(500, API, "InternalServerError")
    actions = []
    tries = Tries()
    for _ in range(3):
        decision: Decision = decide("run", outcome, tries, policy)
        actions.append(decision.action)
        tries = decision.tries
    assert actions == [Action.RETRY, Action.RETRY, Action.FINAL]


@pytest.mark.parametrize(
    ("route", "data", "is_json", "shape", "name"),
    [
        ("run", {"id": "p1", "error": None}, True, Shape.EXPECTED, None),
        ("run", {"id": None, "error": {"name": "BadRequest"}}, True, Shape.API_ERROR, "BadRequest"),
        (
            "run",
            {"error": "RateLimitExceeded", "message": "m"},
            True,
            Shape.API_ERROR,
            "RateLimitExceeded",
        ),
        ("run", {"error": None}, True, Shape.OTHER_JSON, None),
        ("run", {"id": ""}, True, Shape.OTHER_JSON, None),
        ("run", [1, 2], True, Shape.OTHER_JSON, None),
        ("run", None, False, Shape.NOT_JSON, None),
        (
            "status",
            {"id": "p", "status": "failed", "error": {"name": "NSFWError"}},
            True,
            Shape.EXPECTED,
            None,
        ),
        ("status", {"id": "p"}, True, Shape.OTHER_JSON, None),
        ("credits", {"credits": {"total": 1}}, True, Shape.EXPECTED, None),
        ("credits", {"credits": 5}, True, Shape.OTHER_JSON, None),
        # The API's shape with a name it never gives: a gateway's own JSON.
        ("run", {"error": "Bad Gateway", "message": "m"}, True, Shape.OTHER_JSON, None),
        ("run", {"error": {"name": "GatewayTimeout"}}, True, Shape.OTHER_JSON, None),
        ("status", {"error": "upstream request timeout"}, True, Shape.OTHER_JSON, None),
        # A bad v1 body is answered 400 with a prediction error's name.
        (
            "run",
            {"id": None, "error": {"name": "InputValidationError", "message": "m"}},
            True,
            Shape.API_ERROR,
            "InputValidationError",
        ),
    ],
)
def test_body_shape(
    route: Route, data: object, is_json: bool, shape: Shape, name: str | None
) -> None:
    """Bodies are told apart: the route's success, the API's error, other JSON, not JSON."""
    assert body_shape(route, data, is_json=is_json) == (shape, name)


@settings(max_examples=300)
@given(
    route=st.sampled_from(ROUTES),
    name=st.one_of(st.sampled_from(NAMES), st.text(max_size=30)),
    nested=st.booleans(),
    status=STATUSES,
    tries=TRIES,
)
def test_only_a_name_the_api_gives_makes_a_body_the_apis(
    route: Route, name: str, nested: bool, status: int, tries: Tries
) -> None:
    """Any error name in the API's shape: the API's own error only if the API gives that
    name (NOTES.md, the v1 reference); else, for POST /v1/run, never proof that nothing
    was created, whatever the status."""
    error = {"name": name, "message": "m"} if nested else name
    shape, found = body_shape(route, {"error": error, "message": "m"}, is_json=True)
    given_by_api = name in DOCUMENTED_NAMES
    assert (shape is Shape.API_ERROR) == given_by_api
    assert found == (name if given_by_api else None)
    decision = decide(route, Outcome.answer(status, shape, found), tries, RetryPolicy())
    if route == "run" and not given_by_api:
        assert decision.action is Action.UNCERTAIN


@settings(max_examples=200)
@given(route=st.sampled_from(ROUTES), outcome=outcomes(), tries=TRIES, policy=policies())
def test_one_booking_rule_for_every_route(
    route: Route, outcome: Outcome, tries: Tries, policy: RetryPolicy
) -> None:
    """A grant is given back exactly for a try never sent or refused by the API's own 429.

    The rule does not depend on the route (GET and POST book alike), and a grant given
    back for POST /v1/run always stands for an outcome that proves nothing was created.
    """
    refused = outcome.status == 429 and the_apis_own(outcome)
    expected = not (outcome.happened in (Happened.NOT_SENT, Happened.UNTRUSTED) or refused)
    assert counted_by_server(outcome) is expected
    if route == "run" and not counted_by_server(outcome):
        assert decide(route, outcome, tries, policy, random.Random(0)).nothing_created
