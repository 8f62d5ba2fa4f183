"""What an answer's fields may be (``_answers``): a prediction id usable in a URL path, an
``output`` the client can keep, a status read whatever its case; pure rules checked with
hypothesis, then each over real HTTP against the emulator."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any
from urllib.parse import unquote

import pytest
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_async import AsyncFashn, RetryPolicy, TryOnRequest, errors
from fashn_async._answers import MAX_ID_LENGTH, id_problem, output_problem, read_status
from fashn_async._decisions import Shape, body_shape, unexpected
from fashn_async._engine import _quote
from fashn_async._models import status_answer
from fashn_async._names import RUNNING_STATUSES, TERMINAL_STATUSES
from fashn_async._validators import check_id
from fashn_async.testing import Emulator, HttpFault

KNOWN = (*RUNNING_STATUSES, *TERMINAL_STATUSES)

#: Characters that make ids unusable, and ordinary ones to mix them with.
HOSTILE = st.sampled_from(
    [
        *(".", "/", "\\", "\uff0e", "\uff0f", "\u2024", "\u2025", "\x00", "\n", "\r", "\x7f"),
        *("\u200b", "\u2028", "\u3000", "\ufeff", "\xad", "%", "2", "e", "F", "a", " "),
    ]
)


def request_for(emulator: Emulator) -> TryOnRequest:
    """A valid try-on of the emulator's own sample images."""
    return TryOnRequest(
        model_image=emulator.sample_image_url("model"),
        garment_image=emulator.sample_image_url("garment"),
        category="tops",
    )


def accepted(prediction_id: str) -> bool:
    """Whether the caller's check takes the id."""
    try:
        check_id(prediction_id)
    except errors.InvalidRequestError:
        return False
    return True


# -- ids: one rule for a caller's and the API's ---------------------------------------


@settings(max_examples=500)
@given(st.one_of(st.text(), st.text(HOSTILE, max_size=6)))
def test_an_id_is_usable_only_as_exactly_one_path_segment(prediction_id: str) -> None:
    """Any text: the caller's check and the POST answer's reading agree with the rule;
    an id they take is one segment of /v1/status/:id, after URL normalisation, after a
    server's percent-decoding (with \\ read as /) and after NFKC."""
    usable = id_problem(prediction_id) is None
    assert accepted(prediction_id) is usable
    shape, _ = body_shape("run", {"id": prediction_id}, is_json=True)
    assert (shape is Shape.EXPECTED) is usable
    if not usable:
        assert "unusable in a URL path" in unexpected("run", {"id": prediction_id})
        return
    url = yarl.URL(f"https://api.fashn.ai/v1/status/{_quote(prediction_id)}")
    assert url.parts == ("/", "v1", "status", prediction_id)
    for seen in (unquote(url.raw_path), unicodedata.normalize("NFKC", unquote(url.raw_path))):
        segments = seen.replace("\\", "/").split("/")
        assert segments[:3] == ["", "v1", "status"]
        assert len(segments) == 4
        assert segments[3] not in ("", ".", "..")
    assert prediction_id.isprintable()


@pytest.mark.parametrize(
    "prediction_id",
    ["", " ", ".", "..", "\uff0e\uff0e", "\u2025", "a/b", "../x", "a\\b", "x\n", "a\x00", "\ud800"],
)
def test_ids_that_move_a_request_elsewhere_are_refused(prediction_id: str) -> None:
    """Empty, dot segments (also in NFKC), separators, control characters, surrogates."""
    assert id_problem(prediction_id) is not None
    assert not accepted(prediction_id)


def test_an_id_is_at_most_max_id_length_bytes_and_holds_no_semicolon() -> None:
    """256 UTF-8 bytes (the API's ids are about 40): a longer id would make a status URL
    past what servers read, refused by the server's parser after it was sent."""
    assert accepted("a" * MAX_ID_LENGTH)
    assert not accepted("a" * (MAX_ID_LENGTH + 1))
    assert "longer than 256 bytes" in str(id_problem("a" * 10_000))
    assert not accepted("\u00e9" * 129)  # 258 bytes: what is sent is bytes, encoded
    assert not accepted("..;")  # Tomcat and Spring read it as ".."


async def test_a_callers_unusable_id_sends_nothing(emulator: Emulator, client: AsyncFashn) -> None:
    """status/cancel/wait with '..', '.', '' or 'a/..': InvalidRequestError, 0 requests."""
    for prediction_id in ("..", ".", "", "a/..", "\u2025"):
        for call in (client.status, client.cancel, client.wait):
            with pytest.raises(errors.InvalidRequestError, match="usable in a URL path"):
                await call(prediction_id)
    assert sum(emulator.report().requests_by_route.values()) == 0


@pytest.mark.parametrize("prediction_id", ["..", ".", "", "a/b", "x\ny"])
async def test_a_post_answer_with_an_unusable_id_is_uncertain(
    emulator: Emulator, client: AsyncFashn, prediction_id: str
) -> None:
    """A POST answered with id '..' (which would poll /v1/): uncertain, sent once, never
    polled; the prediction the emulator created is left to the caller to find."""
    emulator.inject(HttpFault("patched", route="run", patch={"id": prediction_id}))
    with pytest.raises(errors.SubmissionUncertainError, match="unusable in a URL path"):
        await client.run(request_for(emulator), deadline=600)
    report = emulator.report()
    assert report.requests_by_route.get("run") == 1
    assert report.requests_by_route.get("status", 0) == 0
    assert len(report.accepted) == 1


# -- statuses: a known one in any case; an unknown one with an error is failed -----------


@settings(max_examples=300)
@given(
    status=st.sampled_from(KNOWN),
    case=st.lists(st.booleans(), min_size=12, max_size=12),
    left=st.sampled_from(["", " ", "\t", "\n ", "\u3000"]),
    right=st.sampled_from(["", " ", "\r\n", "\u00a0"]),
    error=st.sampled_from([None, {"name": "PipelineError", "message": "m"}]),
)
def test_a_status_differing_only_by_case_or_white_space_is_that_status(
    status: str, case: list[bool], left: str, right: str, error: Any
) -> None:
    """'Completed', ' FAILED\\n', 'In_Queue': the documented status, whatever the error."""
    cased = "".join(c.upper() if up else c for c, up in zip(status, case, strict=False))
    read = status_answer({"status": left + cased + right, "error": error}, 200, "p")
    assert read.status == status
    assert read.done is (status in TERMINAL_STATUSES)


@settings(max_examples=300)
@given(
    status=st.text(max_size=20).filter(lambda s: s.strip().lower() not in KNOWN),
    name=st.sampled_from(["PipelineError", "NSFWError", "AbortedByServer", None]),
    message=st.sampled_from(["server aborted", None]),
)
def test_an_unknown_status_with_an_error_object_is_failed(
    status: str, name: str | None, message: str | None
) -> None:
    """Any unknown status ('aborted', 'error', ''): failed with its error if the answer
    has an error object with a name or a message; else kept, and still running."""
    with_error = status_answer(
        {"status": status, "error": {"name": name, "message": message}}, 200, "p"
    )
    if name is None and message is None:
        assert with_error.status == status
        assert not with_error.done
        return
    assert with_error.status == "failed"
    with pytest.raises(errors.PredictionError) as info:
        with_error.raise_for_status()
    assert info.value.name == (name or "UnknownError")
    bare = status_answer({"status": status, "error": None}, 200, "p")
    assert (bare.status, bare.done) == (status, False)
    assert read_status(status, "a string, not an object") == status


@pytest.mark.parametrize("status", ["aborted", "error", "FAILED", ""])
async def test_run_ends_on_an_unknown_status_with_an_error(
    emulator: Emulator, client: AsyncFashn, status: str
) -> None:
    """replicate-python#460: 'aborted' with an error object ends run() with the typed
    error at the first status answer; nothing is cancelled."""
    error = {"name": "PoseError", "message": "server aborted"}
    emulator.inject(HttpFault("patched", route="status", patch={"status": status, "error": error}))
    with pytest.raises(errors.PoseError, match="server aborted") as info:
        await client.run(request_for(emulator), deadline=600)
    assert info.value.prediction_id is not None
    report = emulator.report()
    assert report.requests_by_route["status"] == 1
    assert report.cancels == []


async def test_a_completed_status_in_another_case_is_completed(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """A status answered ' COMPLETED\\n' (its outputs kept): the prediction is done."""
    prediction = await client.submit(request_for(emulator))
    await asyncio.sleep(300)  # the emulator has finished it
    emulator.inject(HttpFault("patched", route="status", patch={"status": " COMPLETED\n"}))
    status = await client.wait(prediction.id)
    assert (status.status, status.done) == ("completed", True)
    assert status.output
    assert all(url.startswith("http") for url in status.output)


async def test_an_unknown_status_without_an_error_is_still_running(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """'aborted' without an error object (NOTES.md: unknown is running): polled on."""
    emulator.inject(HttpFault("patched", route="status", times=3, patch={"status": "aborted"}))
    result = await client.run(request_for(emulator), deadline=600)
    assert emulator.report().statuses[result.id] == "completed"
    assert emulator.report().requests_by_route["status"] >= 4


# -- outputs: null or a list of non-empty strings, nothing else -----------------------

ODD_OUTPUTS = [[None], {"a": 1}, "https://x/1.png", [""], [1], [["https://x"]], 5, True]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=6,
    )
)
def test_an_output_is_null_or_a_list_of_non_empty_strings(output: object) -> None:
    """Any JSON value: a status answer with it is the expected shape iff it is null or
    a list of non-empty strings; read, it is those strings, never converted."""
    ok = output is None or (
        isinstance(output, list) and all(isinstance(x, str) and x for x in output)
    )
    assert (output_problem(output) is None) is ok
    data = {"status": "completed", "output": output}
    for route in ("status", "cancel"):
        assert (body_shape(route, data, is_json=True)[0] is Shape.EXPECTED) is ok  # type: ignore[arg-type]
    if ok:
        assert status_answer(data, 200, "p").output == (None if output is None else tuple(output))  # type: ignore[arg-type]
    else:
        assert "not null or a list of non-empty strings" in unexpected("status", data)
        with pytest.raises(errors.APIError, match="not null or a list of non-empty strings"):
            status_answer(data, 200, "p")


@pytest.mark.client(retry=RetryPolicy(attempts=3))
@pytest.mark.parametrize("output", ODD_OUTPUTS)
async def test_an_odd_output_is_an_unreadable_status_answer(
    emulator: Emulator, client: AsyncFashn, output: object
) -> None:
    """'completed' with output [null] or {'a': 1}: retried as unreadable, then
    PollingError naming what is amiss; never ('None',); nothing cancelled."""
    patch = {"status": "completed", "output": output}
    emulator.inject(HttpFault("patched", route="status", patch=patch))
    with pytest.raises(errors.PollingError) as info:
        await client.run(request_for(emulator), deadline=600)
    assert isinstance(info.value.__cause__, errors.APIError)
    assert "not null or a list of non-empty strings" in str(info.value.__cause__)
    report = emulator.report()
    assert report.requests_by_route["status"] == 3
    assert report.cancels == []


async def test_an_odd_output_once_is_retried(emulator: Emulator, client: AsyncFashn) -> None:
    """One status answer with output [null]: retried; the run completes with the real outputs."""
    patch = {"status": "completed", "output": [None]}
    emulator.inject(HttpFault("patched", route="status", times=1, patch=patch))
    result = await client.run(request_for(emulator), deadline=600)
    assert result.output
    assert "None" not in result.output
    assert emulator.report().statuses[result.id] == "completed"


async def test_completed_with_output_null_is_a_success_without_outputs(
    emulator: Emulator, client: AsyncFashn
) -> None:
    """'completed' with output null (documented): a result with no outputs, not an error."""
    patch = {"status": "completed", "output": None}
    emulator.inject(HttpFault("patched", route="status", patch=patch))
    result = await client.run(request_for(emulator), deadline=600)
    assert result.output == ()
