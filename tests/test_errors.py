"""Every API error and prediction failure maps to its own class, from both body shapes."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fashn_async import errors
from fashn_async._error_map import api_error_from_response, prediction_error_from_payload
from fashn_async._names import CURRENT_PREDICTION_ERRORS, V1_PREDICTION_ERRORS

HTTP_CASES = [
    (400, "BadRequest", errors.BadRequestError),
    (401, "UnauthorizedAccess", errors.AuthenticationError),
    (404, "NotFound", errors.NotFoundError),
    (429, "RateLimitExceeded", errors.RateLimitExceededError),
    (429, "ConcurrencyLimitExceeded", errors.ConcurrencyLimitExceededError),
    (429, "OutOfCredits", errors.OutOfCreditsError),
    (500, "InternalServerError", errors.ServerError),
]


@pytest.mark.parametrize(("status", "name", "cls"), HTTP_CASES)
@pytest.mark.parametrize("shape", ["current", "v1"])
def test_http_errors_both_shapes(status: int, name: str, cls: type, shape: str) -> None:
    """Both error body shapes give the same class, name, message and status."""
    body = (
        {"error": name, "message": "why"}
        if shape == "current"
        else {"id": None, "error": {"name": name, "message": "why"}}
    )
    error = api_error_from_response(status, body, retry_after=7.0)
    assert type(error) is cls
    assert (error.name, error.message, error.status_code) == (name, "why", status)
    assert error.retry_after == (7.0 if status == 429 else None)
    assert isinstance(error, errors.APIError)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (404, errors.NotFoundError),
        (429, errors.RateLimitError),
        (502, errors.ServerError),
        (503, errors.ServerError),
        (418, errors.APIError),
    ],
)
def test_http_errors_without_a_body(status: int, cls: type) -> None:
    """A body that is not JSON (a proxy's HTML page) still maps by HTTP status."""
    error = api_error_from_response(status, "<html>Bad Gateway</html>")
    assert type(error) is cls
    assert error.status_code == status
    assert str(status) in str(error)


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (502, "BadGateway"),
        (503, "ServiceUnavailable"),
        (504, "GatewayTimeout"),
        (599, "ServerError"),
    ],
)
def test_a_gateway_page_is_named_by_its_status(status: int, name: str) -> None:
    """A 5xx that is not the API's answer is named by its HTTP status, never as the
    API's InternalServerError."""
    error = api_error_from_response(status, "<html>Bad Gateway</html>")
    assert error.name == name
    api = api_error_from_response(status, {"error": "InternalServerError", "message": "m"})
    assert api.name == "InternalServerError"  # the API's own name is kept


@pytest.mark.parametrize(
    ("status", "name"),
    [(502, "NotFound"), (503, "UnauthorizedAccess"), (500, "BadRequest"), (502, "OutOfCredits")],
)
def test_a_5xx_is_a_server_error_whatever_name_it_carries(status: int, name: str) -> None:
    """A 5xx whose body names a 4xx code is a ServerError (keeping the name): never a
    final OutOfCreditsError or AuthenticationError that would stop a batch."""
    error = api_error_from_response(status, {"error": name, "message": "m"})
    assert type(error) is errors.ServerError
    assert (error.name, error.status_code) == (name, status)


def test_v1_validation_body_keeps_its_name() -> None:
    """A v1 400 body named InputValidationError is a BadRequestError keeping that name."""
    error = api_error_from_response(
        400, {"id": None, "error": {"name": "InputValidationError", "message": "bad seed"}}
    )
    assert isinstance(error, errors.BadRequestError)
    assert error.name == "InputValidationError"


@pytest.mark.parametrize("name", V1_PREDICTION_ERRORS + CURRENT_PREDICTION_ERRORS)
def test_every_prediction_error_name_has_a_class(name: str) -> None:
    """Each v1 and current failure name has its own PredictionError subclass."""
    error = prediction_error_from_payload(name, "msg", prediction_id="p1")
    assert type(error) is not errors.UnknownPredictionError
    assert isinstance(error, errors.PredictionError)
    assert (error.name, error.message, error.prediction_id) == (name, "msg", "p1")


def test_unknown_prediction_error_keeps_its_name() -> None:
    """A failure name from the future is kept, not crashed on."""
    error = prediction_error_from_payload("QuantumFoamError", None, prediction_id="p")
    assert type(error) is errors.UnknownPredictionError
    assert error.name == "QuantumFoamError"
    assert "QuantumFoamError" in str(error)


def test_errors_pickle() -> None:
    """Errors survive pickling with their attributes (for processes and journals)."""
    error = errors.RateLimitExceededError("slow down", status_code=429, retry_after=3.0)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.name, copy.retry_after, copy.status_code) == (
        errors.RateLimitExceededError,
        "RateLimitExceeded",
        3.0,
        429,
    )


def test_tree_is_documented() -> None:
    """Every public error class appears in the tree drawn in the module docstring."""
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert name in doc, name
            assert issubclass(obj, errors.FashnError)


@pytest.mark.parametrize(
    ("status", "body", "name", "cls"),
    [
        (502, {"error": "Bad Gateway"}, "BadGateway", errors.ServerError),
        (
            503,
            {"error": "upstream connect error or disconnect/reset"},
            "ServiceUnavailable",
            errors.ServerError,
        ),
        (
            403,
            "<html>Request blocked by the firewall</html>",
            "Forbidden",
            errors.AuthenticationError,
        ),
        (
            403,
            {"error": "Forbidden by policy", "message": "blocked"},
            "Forbidden",
            errors.AuthenticationError,
        ),
        (401, None, "Unauthorized", errors.AuthenticationError),
        (404, {"error": "no route"}, "NotFound", errors.NotFoundError),
    ],
)
def test_an_answer_naming_no_code_is_named_by_its_status(
    status: int, body: object, name: str, cls: type
) -> None:
    """A proxy's, firewall's or gateway's answer (a page, or JSON whose ``error`` is text,
    not one of the API's codes) is named by its HTTP status, never by its text nor as the
    API's own code (a firewall's 403 is no ``UnauthorizedAccess``); its text is kept as
    the message, and its class is the status's."""
    error = api_error_from_response(status, body)
    assert (type(error), error.name, error.status_code) == (cls, name, status)
    if isinstance(body, dict):
        assert body["error"] in error.message or body.get("message") == error.message


@given(
    status=st.integers(400, 599),
    text=st.text(min_size=1, max_size=60).filter(
        lambda s: not s.isascii() or not s.replace("_", "").isalnum()
    ),
)
@example(status=400, text="_")
@example(status=502, text="__")
def test_no_text_is_taken_for_an_error_code(status: int, text: str) -> None:
    """Whatever text an answer's ``error`` holds, if it is no code (letters, digits, _,
    at least one letter or digit: ``_`` alone was taken for one, found by hypothesis in
    one fresh run of four) it is not the error's name: the name is the status's."""
    error = api_error_from_response(status, {"error": text})
    assert error.name != text
    assert error.name.isalnum() or error.name == ""


@pytest.mark.parametrize(
    ("status", "name", "cls"),
    [
        (403, "RateLimitExceeded", errors.AuthenticationError),
        (400, "OutOfCredits", errors.BadRequestError),
        (404, "UnauthorizedAccess", errors.NotFoundError),
        (418, "NotFound", errors.APIError),
    ],
)
def test_a_4xx_naming_a_code_of_another_status_is_the_status_s_kind(
    status: int, name: str, cls: type
) -> None:
    """An API code at a status NOTES.md never gives it with (a 403 saying
    RateLimitExceeded) is the status's kind of error, its name kept, as a 5xx is a
    ServerError whatever it names: never a retryable rate limit nor a final
    OutOfCreditsError the status does not back."""
    error = api_error_from_response(status, {"error": name, "message": "m"})
    assert (type(error), error.name) == (cls, name)
