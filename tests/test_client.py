"""AsyncFashn against the emulator over real loopback HTTP: calls, errors, images, lifecycle."""

from __future__ import annotations

import asyncio
import io
import logging
import math
from pathlib import Path

import pytest
from helpers import PNG
from PIL import Image

from fashn_async import AsyncFashn, Credits, Limits, ModelRequest, RetryPolicy, TryOnRequest, errors
from fashn_async._names import CURRENT_PREDICTION_ERRORS, V1_PREDICTION_ERRORS
from fashn_async.testing import Emulator, HttpFault, PredictionFault, sample_image

KEY_IN_TESTS = "fashn-test-key"


def request_for(emulator: Emulator, **fields: object) -> TryOnRequest:
    """A valid try-on of the emulator's own sample images."""
    base = {
        "model_image": emulator.sample_image_url("model"),
        "garment_image": emulator.sample_image_url("garment"),
        "category": "tops",
    }
    return TryOnRequest(**{**base, **fields})  # type: ignore[arg-type]


# -- construction and lifecycle --------------------------------------------------------


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """api_key=None reads FASHN_API_KEY."""
    monkeypatch.setenv("FASHN_API_KEY", "from-env-secret")
    client = AsyncFashn()
    assert "from-env-secret" not in repr(client)


def test_no_key_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """No api_key and no FASHN_API_KEY is a clear error at construction."""
    monkeypatch.delenv("FASHN_API_KEY", raising=False)
    with pytest.raises(errors.ConfigurationError, match="FASHN_API_KEY"):
        AsyncFashn()


@pytest.mark.parametrize("url", ["ftp://x", "api.fashn.ai", "", "http://"])
def test_bad_base_url(url: str) -> None:
    """A base URL that is not http(s) fails at construction."""
    with pytest.raises(errors.ConfigurationError, match="base_url"):
        AsyncFashn(api_key="test-key-0123", base_url=url)


async def test_closed_client_is_a_clear_error(emulator: Emulator) -> None:
    """Calls before `async with` or after it raise ClientClosedError, sending nothing."""
    client = AsyncFashn(api_key=emulator.api_key, base_url=emulator.url)
    with pytest.raises(errors.ClientClosedError, match="not open"):
        await client.status("x")
    async with client:
        pass
    with pytest.raises(errors.ClientClosedError, match="closed"):
        await client.run(request_for(emulator))
    with pytest.raises(errors.ClientClosedError):
        async with client:
            pass
    assert emulator.report().status_calls_total == 0


async def test_round_trip(client: AsyncFashn, emulator: Emulator, tmp_path: Path) -> None:
    """submit, status, run and save work end to end; outputs are real images on disk."""
    prediction = await client.submit(request_for(emulator))
    status = await client.status(prediction.id)
    assert status.id == prediction.id
    assert status.status in {"starting", "in_queue", "processing"}
    result = await client.run(request_for(emulator, num_samples=2))
    assert len(result.output) == 2
    paths = await result.save(tmp_path)
    assert [p.name for p in paths] == [f"{result.id}_0.png", f"{result.id}_1.png"]
    for path in paths:
        assert path.read_bytes().startswith(b"\x89PNG")
    assert not list(tmp_path.glob(".*.part"))


async def test_run_with_keyword_fields(client: AsyncFashn, emulator: Emulator) -> None:
    """run() takes TryOnRequest's fields as keywords."""
    result = await client.run(
        model_image=emulator.sample_image_url("model"),
        garment_image=sample_image("garment"),
        category="bottoms",
        timesteps=20,
    )
    assert result.output


async def test_run_rejects_request_and_fields(client: AsyncFashn, emulator: Emulator) -> None:
    """Passing a request and keyword fields together is refused before sending."""
    with pytest.raises(errors.InvalidRequestError, match="not both"):
        await client.run(request_for(emulator), category="tops")
    with pytest.raises(errors.InvalidRequestError, match="category"):
        await client.run(model_image=PNG, garment_image=PNG, category="hats")
    assert emulator.report().accepted == []


async def test_model_request_with_base64_outputs(
    client: AsyncFashn, emulator: Emulator, tmp_path: Path
) -> None:
    """The current {model_name, inputs} shape works; data-URI outputs are saved too."""
    result = await client.run(
        ModelRequest(
            model_name="tryon-v1.6",
            inputs={
                "model_image": sample_image("model"),
                "garment_image": sample_image("garment"),
                "category": "auto",
                "return_base64": True,
            },
        )
    )
    assert result.output[0].startswith("data:image/png;base64,")
    (path,) = await result.save(tmp_path, stem="b64")
    assert path.name == "b64_0.png"
    assert path.read_bytes().startswith(b"\x89PNG")


async def test_image_forms(client: AsyncFashn, emulator: Emulator, tmp_path: Path) -> None:
    """Paths, bytes, file objects and URLs all reach the API as usable images."""
    model = tmp_path / "model.jpeg"
    model.write_bytes(sample_image("model"))
    garment = io.BytesIO(sample_image("garment"))
    result = await client.run(model_image=model, garment_image=garment, category="tops")
    assert result.output


async def test_local_image_errors_send_nothing(
    client: AsyncFashn, emulator: Emulator, tmp_path: Path
) -> None:
    """A missing file or a non-image fails locally; the emulator sees nothing."""
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(errors.ImageInputError, match="no such file"):
        await client.submit(model_image=tmp_path / "nope.png", garment_image=PNG, category="tops")
    with pytest.raises(errors.ImageInputError, match="not an image"):
        await client.run(model_image=text, garment_image=PNG, category="tops")
    assert emulator.report().accepted == []


async def test_credits(client: AsyncFashn) -> None:
    """credits() reads the balance."""
    credits = await client.credits()
    assert isinstance(credits, Credits)


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, "12", None, [1], True, {"n": 1}],
    ids=["nan", "inf", "str", "null", "list", "bool", "object"],
)
@pytest.mark.parametrize("field", ["total", "subscription", "on_demand"])
def test_a_credits_answer_with_a_balance_not_a_number_is_refused(field: str, bad: object) -> None:
    """A credits answer whose balance is no finite number (NaN, a string, null, a bool:
    a server's or a proxy's fault) is an APIError naming the field, never a Credits whose
    comparisons raise TypeError or are silently wrong."""
    answer: dict[str, object] = {"total": 10, "subscription": 4.5, "on_demand": 5.5}
    assert Credits.from_answer({"credits": answer}) == Credits(**answer)  # type: ignore[arg-type]
    with pytest.raises(errors.APIError, match=f"credits answer's {field} is"):
        Credits.from_answer({"credits": {**answer, field: bad}})


async def test_cancel(client: AsyncFashn, emulator: Emulator) -> None:
    """cancel() ends a running prediction as canceled."""
    prediction = await client.submit(request_for(emulator))
    status = await client.cancel(prediction.id)
    assert status.status == "canceled"
    assert prediction.id in emulator.report().cancels
    with pytest.raises(errors.PredictionCanceledError):
        (await client.status(prediction.id)).raise_for_status()


# -- API errors ------------------------------------------------------------------------


async def test_wrong_key(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong key is AuthenticationError; the key is in no error, repr or log line."""
    secret = "sk-this-must-never-leak"
    caplog.set_level(logging.DEBUG)
    async with AsyncFashn(api_key=secret, base_url=emulator.url) as client:
        with pytest.raises(errors.AuthenticationError) as info:
            await client.run(request_for(emulator))
        assert info.value.status_code == 401
        assert info.value.name == "UnauthorizedAccess"
        for text in (str(info.value), repr(info.value), repr(client), caplog.text):
            assert secret not in text
        cause = info.value.__cause__
        assert cause is None or secret not in repr(cause)


async def test_unknown_id(client: AsyncFashn) -> None:
    """An unknown prediction id is NotFoundError, not retried, naming the id asked about."""
    with pytest.raises(errors.NotFoundError) as info:
        await client.status("no-such-id")
    assert info.value.status_code == 404
    assert info.value.prediction_id == "no-such-id"
    assert "no-such-id" in str(info.value)
    with pytest.raises(errors.NotFoundError) as info:
        await client.cancel("no-such-id")
    assert info.value.prediction_id == "no-such-id"


@pytest.mark.client(retry=RetryPolicy(attempts=2))
async def test_status_and_cancel_errors_name_the_prediction(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A status or cancel call that fails for good (a gateway's 502s, a dropped
    connection) raises an error naming the prediction it was about."""
    prediction = await client.submit(request_for(emulator))
    emulator.inject(HttpFault("gateway_before", route="status", status=502, times=None))
    with pytest.raises(errors.ServerError) as info:
        await client.status(prediction.id)
    assert info.value.prediction_id == prediction.id
    emulator.inject(HttpFault("drop_before", route="cancel", times=None))
    with pytest.raises(errors.TransportError) as dropped:
        await client.cancel(prediction.id)
    assert dropped.value.prediction_id == prediction.id
    assert prediction.id in str(dropped.value)


async def test_server_validation_both_shapes(client: AsyncFashn) -> None:
    """Server-side 400s map to BadRequestError from either body shape."""
    with pytest.raises(errors.BadRequestError) as info:
        await client.run(
            ModelRequest(model_name="no-such-model", inputs={"image": PNG})  # unknown there
        )
    assert info.value.status_code == 400
    transport = client._engine.transport
    response = await transport.request("POST", "/v1/run", body={"category": "tops"})
    v1_error = response.error()
    assert isinstance(v1_error, errors.BadRequestError)
    assert v1_error.name == "InputValidationError"


ALL_FAILURES = [*V1_PREDICTION_ERRORS, *CURRENT_PREDICTION_ERRORS, "BrandNewError"]


@pytest.mark.parametrize("name", ALL_FAILURES)
async def test_prediction_failures_are_typed(
    emulator: Emulator, client: AsyncFashn, name: str
) -> None:
    """Each failure name raises its own class (unknown names keep theirs)."""
    emulator.inject(PredictionFault(name=name, message=f"boom {name}"))
    with pytest.raises(errors.PredictionError) as info:
        await client.run(request_for(emulator))
    error = info.value
    assert error.name == name
    assert error.message == f"boom {name}"
    assert error.prediction_id
    assert (type(error) is errors.UnknownPredictionError) == (name == "BrandNewError")


async def test_image_load_error_from_the_api(client: AsyncFashn, emulator: Emulator) -> None:
    """A URL the API cannot load ends the prediction with ImageLoadError."""
    with pytest.raises(errors.ImageLoadError) as info:
        await client.run(
            model_image=f"{emulator.url}/no/such/image.png", garment_image=PNG, category="tops"
        )
    assert info.value.prediction_id


@pytest.mark.emulator(credits=2)
async def test_out_of_credits(client: AsyncFashn, emulator: Emulator) -> None:
    """OutOfCredits is final: raised at once, not retried."""
    await client.run(request_for(emulator, num_samples=2))
    with pytest.raises(errors.OutOfCreditsError) as info:
        await client.run(request_for(emulator))
    assert info.value.status_code == 429
    assert emulator.report().rejected.get("OutOfCredits") == 1


# -- lifecycle of run(): cancellation and deadline --------------------------------------


async def test_cancelling_run_cancels_remotely(client: AsyncFashn, emulator: Emulator) -> None:
    """Cancelling the task awaiting run() cancels the prediction on the server."""
    task = asyncio.ensure_future(client.run(request_for(emulator)))
    while not emulator.report().accepted:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = emulator.report()
    assert report.cancels == [report.accepted[0].id]
    assert client._engine.in_flight.in_use == 0


@pytest.mark.parametrize("cancels", [1, 2, 3])
async def test_cancel_while_post_in_flight(
    client: AsyncFashn, emulator: Emulator, cancels: int
) -> None:
    """A cancel landing while the POST is on the wire still cancels what it created,
    however many times the task is cancelled (a timeout, then a shutdown)."""
    emulator.inject(HttpFault(kind="slow", route="run", delay=2.0, times=1))
    task = asyncio.ensure_future(client.run(request_for(emulator)))
    await asyncio.sleep(1.0)  # the POST is being answered slowly
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0.01)
    with pytest.raises(asyncio.CancelledError):
        await task
    report = emulator.report()
    assert len(report.accepted) == 1
    assert report.cancels == [report.accepted[0].id]


@pytest.mark.emulator(in_flight_limit=1)
@pytest.mark.client(limits=Limits(in_flight=1))
@pytest.mark.parametrize(
    ("answer", "created", "uncertain"),
    [
        ("drop_after", 1, True),  # created, the answer lost
        ("gateway_after", 1, True),  # created, a gateway's page
        ("gateway_before", 0, True),  # a gateway's page proves nothing either
        ("throttle", 0, False),  # the API's 429: nothing exists
        (None, 1, False),  # answered with an id: cancelled by it
    ],
)
@pytest.mark.parametrize("call", ["run", "submit"])
async def test_a_cancel_during_a_post_that_proves_nothing_warns_and_keeps_the_slot(
    client: AsyncFashn,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    call: str,
    answer: str | None,
    created: int,
    uncertain: bool,
) -> None:
    """Cancelled while POST /v1/run is on the wire, and its answer then proves nothing
    (lost, a gateway's page): the prediction may exist, charged, with no id to cancel it
    by. A CancelledError can say nothing of it, so a warning on the ``fashn_async``
    logger does, and the in-flight slot stays taken as for SubmissionUncertainError (the
    next POST meets no ConcurrencyLimitExceeded). An answer that proves the outcome
    warns of nothing."""
    emulator.inject(HttpFault("slow", route="run", delay=30.0, times=1))
    if answer is not None:
        emulator.inject(HttpFault(answer, route="run", status=502, times=1))
    send = client.run if call == "run" else client.submit
    task = asyncio.ensure_future(send(request_for(emulator)))
    await asyncio.sleep(1.0)  # the POST is on the wire
    with caplog.at_level(logging.WARNING, logger="fashn_async"):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    warned = [r.getMessage() for r in caplog.records if "may exist and be charged" in r.message]
    assert len(warned) == uncertain, caplog.text
    assert client._engine.in_flight.in_use == uncertain
    await client.run(request_for(emulator))
    report = emulator.report()
    assert len(report.accepted) == created + 1
    assert report.rejected == {}
    if created and not uncertain:
        assert report.cancels == [report.accepted[0].id]


@pytest.mark.parametrize("way", ["asyncio.timeout", "a task group"])
async def test_a_cancel_during_an_uncertain_post_is_a_plain_cancellation(
    client: AsyncFashn, emulator: Emulator, caplog: pytest.LogCaptureFixture, way: str
) -> None:
    """The cancel that ends a call whose POST proved nothing is asyncio's own
    CancelledError, not a subclass: Python 3.11's ``asyncio.timeout`` and task groups
    convert only the class itself, so the caller gets its TimeoutError, or the group its
    sibling's error alone (with a subclass, the task itself ended cancelled)."""
    emulator.inject(HttpFault("slow", route="run", delay=30.0, times=1))
    emulator.inject(HttpFault("drop_after", route="run", times=1))
    with caplog.at_level(logging.WARNING, logger="fashn_async"):
        if way == "asyncio.timeout":
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    await client.run(request_for(emulator))
        else:

            async def fail() -> None:
                await asyncio.sleep(1.0)
                raise ValueError("a sibling failed")

            with pytest.raises(ExceptionGroup) as info:
                async with asyncio.TaskGroup() as group:
                    group.create_task(client.run(request_for(emulator)))
                    group.create_task(fail())
            assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert "may exist and be charged" in caplog.text


@pytest.mark.emulator(latency=(20.0, 20.0))
async def test_the_remote_cancel_outlives_more_cancels(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """Cancelled again while its remote cancel is on the wire (a timeout, then a
    shutdown), run() still lets that cancel finish: nothing is left running."""
    emulator.inject(HttpFault(kind="slow", route="cancel", delay=2.0, times=1))
    task = asyncio.ensure_future(client.run(request_for(emulator)))
    await asyncio.sleep(3.0)  # polling
    task.cancel()
    await asyncio.sleep(0.5)  # the cancel is being answered slowly
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = emulator.report()
    assert report.cancels == [report.accepted[0].id]


@pytest.mark.emulator(latency=(20.0, 20.0))
async def test_deadline(client: AsyncFashn, emulator: Emulator) -> None:
    """A deadline ends the wait, cancels remotely and raises DeadlineExceededError."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(errors.DeadlineExceededError) as info:
        await client.run(request_for(emulator), deadline=5.0)
    assert loop.time() - start == pytest.approx(5.0, abs=0.5)
    report = emulator.report()
    assert report.cancels == [report.accepted[0].id]
    assert info.value.prediction_id == report.accepted[0].id


@pytest.mark.looptime(False)  # real time: it passes between the call and the send
@pytest.mark.parametrize("deadline", [1e-9, 1e-6])
async def test_a_deadline_run_out_before_the_post_sends_nothing(
    client: AsyncFashn, emulator: Emulator, deadline: float
) -> None:
    """A deadline that runs out before POST /v1/run goes (the submit grant came at once,
    with nothing to wait for: no chance for the deadline to act) sends nothing: a
    prediction was created and cancelled each time, and charged where the cancel did
    not take. The grant is given back. (A microsecond is far less than the call takes.)"""
    with pytest.raises(errors.DeadlineExceededError, match="no prediction was created") as info:
        await client.run(request_for(emulator), deadline=deadline)
    assert info.value.prediction_id is None
    report = emulator.report()
    assert (report.accepted, report.requests_by_route.get("run", 0)) == ([], 0)
    limiter = client._engine.submitter.limiter
    assert limiter is not None
    assert limiter.in_window() == 0


async def test_the_deadline_covers_preparing_the_images(emulator: Emulator) -> None:
    """Preparing large images (decode, resize, encode: in a worker thread) counts against
    the deadline, and a deadline run out there sends nothing: the POST went out after
    the deadline, the prediction created only to be cancelled."""
    noise = io.BytesIO()
    Image.effect_noise((3000, 3000), 64).convert("RGB").save(noise, format="PNG")
    async with AsyncFashn(
        api_key=emulator.api_key, base_url=emulator.url, prepare_images=True
    ) as client:
        with pytest.raises(errors.DeadlineExceededError) as info:
            await client.run(
                model_image=noise.getvalue(),
                garment_image=noise.getvalue() + b"",
                category="tops",
                deadline=0.01,
            )
    assert info.value.prediction_id is None
    assert emulator.report().requests_by_route.get("run", 0) == 0


@pytest.mark.parametrize(
    ("answer", "created", "raised"),
    [
        ("drop_after", 1, errors.SubmissionUncertainError),  # created, the answer lost
        ("gateway_after", 1, errors.SubmissionUncertainError),  # created, a gateway's page
        ("gateway_before", 0, errors.SubmissionUncertainError),  # proves nothing either
        ("throttle", 0, errors.DeadlineExceededError),  # the API's 429: nothing exists
        (None, 1, errors.DeadlineExceededError),  # answered with an id: cancelled
    ],
)
async def test_a_deadline_during_the_post_never_hides_a_prediction_that_may_exist(
    client: AsyncFashn, emulator: Emulator, answer: str | None, created: int, raised: type
) -> None:
    """The deadline runs out while POST /v1/run is on the wire: an answer that proves
    nothing (lost, a gateway's page) is SubmissionUncertainError, never a
    DeadlineExceededError a caller would retry (paying twice); the API's refusal is a
    DeadlineExceededError naming no prediction; an id is named, and cancelled."""
    emulator.inject(HttpFault("slow", route="run", delay=30.0, times=1))
    if answer is not None:
        emulator.inject(HttpFault(answer, route="run", status=502, times=1))
    with pytest.raises(raised) as info:
        await client.run(request_for(emulator), deadline=5.0)
    report = emulator.report()
    assert len(report.accepted) == created
    if raised is errors.DeadlineExceededError:
        assert info.value.prediction_id == (report.accepted[0].id if created else None)
        assert report.cancels == [a.id for a in report.accepted]


async def test_bad_deadline(client: AsyncFashn, emulator: Emulator) -> None:
    """A non-positive deadline is refused before sending."""
    with pytest.raises(errors.InvalidRequestError, match="deadline"):
        await client.run(request_for(emulator), deadline=0)


async def test_submit_holds_a_slot_until_seen_done(emulator: Emulator) -> None:
    """A bare submit() counts in flight until status() sees it finished."""
    async with AsyncFashn(
        api_key=emulator.api_key, base_url=emulator.url, limits=Limits(in_flight=1)
    ) as client:
        first = await client.submit(request_for(emulator))
        second = asyncio.ensure_future(client.submit(request_for(emulator)))
        await asyncio.sleep(30)
        assert not second.done()
        assert (await client.status(first.id)).done
        await second


async def test_a_status_read_changes_nothing_the_client_status_names_its_release(
    emulator: Emulator,
) -> None:
    """The engine's status read keeps a held slot; client.status() gives it back, once."""
    async with AsyncFashn(
        api_key=emulator.api_key, base_url=emulator.url, limits=Limits(in_flight=2)
    ) as client:
        in_flight = client._engine.in_flight
        prediction = await client.submit(request_for(emulator))
        assert (in_flight.in_use, in_flight.holding(prediction.id)) == (1, True)
        await asyncio.sleep(30)  # loop time: long enough for the emulator to finish it
        assert (await client._engine.status(prediction.id)).done
        assert (in_flight.in_use, in_flight.holding(prediction.id)) == (1, True)
        assert (await client.status(prediction.id)).done
        assert (in_flight.in_use, in_flight.holding(prediction.id)) == (0, False)
        assert (await client.status(prediction.id)).done  # a second sight releases nothing
        assert in_flight.in_use == 0
        assert "in_use=0 running=0 held=0" in repr(in_flight)


async def test_base_url_none_reads_fashn_base_url(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``base_url=None`` reads ``FASHN_BASE_URL`` (as ``api_key=None`` reads
    ``FASHN_API_KEY``), else the API's address; one given wins over it."""
    monkeypatch.setenv("FASHN_BASE_URL", emulator.url)
    async with AsyncFashn(api_key=emulator.api_key) as client:
        assert client.base_url == emulator.url
        await client.credits()
    assert (
        AsyncFashn(api_key="test-key-0123", base_url="http://127.0.0.1:1").base_url
        == "http://127.0.0.1:1"
    )
    monkeypatch.delenv("FASHN_BASE_URL")
    assert AsyncFashn(api_key="test-key-0123").base_url == "https://api.fashn.ai"
    # Scheme and host are case-insensitive: one spelling (a bulk job's journal compares
    # it: `HTTP://` for `http://` was refused as another API's address).
    for spelled in ("HTTPS://API.Fashn.AI/", "https://api.fashn.ai//"):
        assert AsyncFashn(api_key="test-key-0123", base_url=spelled).base_url == (
            "https://api.fashn.ai"
        )
    assert AsyncFashn(api_key="k" * 12, base_url="http://[::1]:8/A/").base_url == "http://[::1]:8/A"
    monkeypatch.setenv("FASHN_BASE_URL", "ftp://127.0.0.1")
    with pytest.raises(errors.ConfigurationError, match="base_url"):
        AsyncFashn(api_key="test-key-0123")
