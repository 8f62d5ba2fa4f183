"""A bad item is a failed result naming its index, never a raw exception from inside the
batch; an input that raises ends the batch with BatchInputError after the items read
before it; bad arguments to batch() fail before anything is read or sent."""

from __future__ import annotations

import string
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from batch_support import assert_idle, distinct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashn_async import AsyncFashn, BatchEvents, ModelRequest, Prediction, TryOnRequest, errors
from fashn_async.testing import Emulator

URL = "https://example.com/a.png"
GOOD = {"model_image": URL, "garment_image": URL, "category": "tops"}


class Weird(Mapping[str, Any]):
    """A mapping that fails when read."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot list my keys")

    def __len__(self) -> int:
        return 1


BAD_ITEMS: dict[str, Any] = {
    "int": 7,
    "none": None,
    "str": "a string",
    "bytes": b"bytes",
    "list": [URL, URL, "tops"],
    "set": {1, 2},
    "object": object(),
    "try-on dict with an unknown key": {**GOOD, "bogus": 1},
    "model dict with an unknown key": {
        "model_name": "tryon-v1.6",
        "inputs": {"model_image": URL, "garment_image": URL},
        "bogus": 1,
    },
    "model dict without inputs": {"model_name": "tryon-v1.6"},
    "inputs without model_name": {"inputs": {"model_image": URL}},
    "try-on dict without category": {"model_image": URL, "garment_image": URL},
    "empty dict": {},
    "non-string key": {1: 2},
    "mapping that raises": Weird(),
    "bad category": {**GOOD, "category": "hats"},
    "too many samples": {**GOOD, "num_samples": 9},
    "empty model_name": {"model_name": "", "inputs": {}},
    "inputs not a mapping": {"model_name": "tryon-v1.6", "inputs": [1]},
    "two-tuple": (URL, URL),
    "four-tuple": (URL, URL, "tops", 1),
    "tuple with a bad category": (URL, URL, "hats"),
    "tuple with a bad image": ("not an image", URL, "tops"),
    "missing file": {**GOOD, "model_image": Path("/nonexistent/person.jpg")},
    "prediction with an empty id": Prediction(""),
    "prediction with a non-string id": Prediction(5),  # type: ignore[arg-type]
    # The rule status() applies (_answers.id_problem), not a laxer one of its own: these
    # were polled (a 404 read as "may still be running") or failed as a UnicodeEncodeError.
    "prediction with a path separator": Prediction("a/b"),
    "prediction with a dot segment": Prediction(".."),
    "prediction with a control character": Prediction("a\x00b"),
    "prediction with a lone surrogate": Prediction("\ud800"),
    "prediction with an id of 10,000 characters": Prediction("a" * 10_000),
    "prediction with a path parameter": Prediction("..;"),
}


async def test_each_kind_of_bad_item_is_a_failed_result(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """Every kind of bad item becomes one result with an InvalidRequestError naming its
    index; the good items around them complete; only the good ones reach the server."""
    good = distinct(emulator, 2)
    items: list[Any] = [good[0], *BAD_ITEMS.values(), good[1]]
    results = {r.index: r async for r in client.batch(items)}
    assert sorted(results) == list(range(len(items)))
    for index, name in enumerate(BAD_ITEMS, start=1):
        error = results[index].error
        assert isinstance(error, errors.InvalidRequestError), (name, error)
        assert f"batch item {index}:" in error.message, (name, error.message)
        assert results[index].request is items[index], name  # the item as given
        assert results[index].prediction_id is None
    assert results[0].ok
    assert results[len(items) - 1].ok
    assert len(emulator.report().accepted) == 2
    report = emulator.report()  # every status call asked about a prediction it created
    assert sum(report.status_calls.values()) == report.requests_by_route["status"]
    assert_idle(client, emulator)


async def test_each_result_holds_its_item_as_given(client: AsyncFashn, emulator: Emulator) -> None:
    """A result's request is its item, the same object, whatever form it took: a dict
    or a tuple is not replaced by the TryOnRequest it was read as."""
    model, garment = emulator.sample_image_url("model"), emulator.sample_image_url("garment")
    items: list[Any] = [
        {"model_image": model, "garment_image": garment, "category": "tops", "seed": 1},
        (model, garment, "bottoms"),
        TryOnRequest(model_image=model, garment_image=garment, category="tops", seed=2),
        ModelRequest(
            model_name="tryon-v1.6",
            inputs={"model_image": model, "garment_image": garment, "seed": 3},
        ),
    ]
    results = {r.index: r async for r in client.batch(items)}
    assert sorted(results) == list(range(len(items)))
    for index, item in enumerate(items):
        assert results[index].ok, results[index].error
        assert results[index].request is item
    assert len(emulator.report().accepted) == len(items)
    assert_idle(client, emulator)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (BAD_ITEMS["model dict with an unknown key"], "unknown field(s) for ModelRequest: bogus"),
        (BAD_ITEMS["model dict without inputs"], "missing field(s) for ModelRequest: inputs"),
        (BAD_ITEMS["try-on dict without category"], "missing field(s) for TryOnRequest: category"),
        (BAD_ITEMS["mapping that raises"], "RuntimeError: cannot list my keys"),
        (BAD_ITEMS["int"], "got int"),
    ],
)
async def test_the_message_says_what_is_wrong(client: AsyncFashn, item: Any, message: str) -> None:
    """The message names the unknown or missing field, the request type, or the problem."""
    [result] = [r async for r in client.batch([item])]
    assert isinstance(result.error, errors.InvalidRequestError)
    assert message in result.error.message
    assert result.error.message.startswith("batch item 0: ")


TEXT = st.text(alphabet=string.ascii_letters + "_-", max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT | st.binary(max_size=8)
FIELDS = st.sampled_from(["model_image", "garment_image", "category", "seed", "num_samples"])
BAD_CATEGORY = TEXT.filter(lambda s: s not in ("tops", "bottoms", "one-pieces"))
JUNK = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.tuples(SCALARS, SCALARS, BAD_CATEGORY),
    st.lists(SCALARS, max_size=5).map(tuple).filter(lambda t: len(t) != 3),
    # A dict of request fields with a category that can never be valid.
    st.fixed_dictionaries({"category": BAD_CATEGORY}, optional={"model_image": SCALARS}),
    # Known and unknown keys together.
    st.dictionaries(FIELDS | TEXT.filter(lambda k: k not in GOOD), SCALARS, min_size=1).filter(
        lambda d: not set(d) <= set(GOOD) or d.get("category") not in ("tops", "bottoms")
    ),
    # The current shape, broken: no inputs, an unknown key, inputs of the wrong type.
    st.builds(lambda name: {"model_name": name}, TEXT),
    st.builds(lambda name, key: {"model_name": name, "inputs": {}, f"x{key}": 1}, TEXT, TEXT),
    st.builds(lambda name, inputs: {"model_name": name, "inputs": inputs}, TEXT, SCALARS),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(JUNK, min_size=1, max_size=6))
async def test_any_junk_is_a_failed_result(
    client: AsyncFashn, emulator: Emulator, items: list[Any]
) -> None:
    """Whatever junk the input holds: one InvalidRequestError result per item, naming
    its index, nothing raised out of the batch and nothing sent."""
    results = {r.index: r async for r in client.batch(items)}
    assert sorted(results) == list(range(len(items)))
    for index, result in results.items():
        assert isinstance(result.error, errors.InvalidRequestError), (items[index], result)
        assert f"batch item {index}:" in result.error.message
    assert emulator.report().accepted == []
    assert_idle(client, emulator)


class Boom(Exception):
    """The user's own error."""


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("after", [0, 3])
async def test_an_input_that_raises_ends_the_batch_after_the_items_read(
    client: AsyncFashn, emulator: Emulator, kind: str, after: int
) -> None:
    """A generator that raises after some items: those items finish and are yielded, then
    the batch raises BatchInputError with the generator's exception as __cause__."""
    items = distinct(emulator, after)

    def sync_source() -> Iterator[TryOnRequest]:
        yield from items
        raise Boom("the catalog is unreadable")

    async def async_source() -> AsyncIterator[TryOnRequest]:
        for item in items:
            yield item
        raise Boom("the catalog is unreadable")

    source = sync_source() if kind == "sync" else async_source()
    seen = []
    with pytest.raises(errors.BatchInputError, match=f"reading item {after}") as caught:
        async for result in client.batch(source):
            seen.append(result)
    assert isinstance(caught.value.__cause__, Boom)
    assert sorted(r.index for r in seen) == list(range(after))
    assert all(r.ok for r in seen)
    assert len(emulator.report().accepted) == after
    assert_idle(client, emulator)


async def test_an_iterable_whose_iter_raises(client: AsyncFashn, emulator: Emulator) -> None:
    """An iterable that cannot even start: BatchInputError at the first anext()."""

    class Broken:
        def __iter__(self) -> Iterator[Any]:
            raise Boom("no")

    with pytest.raises(errors.BatchInputError) as caught:
        await anext(client.batch(Broken()))
    assert isinstance(caught.value.__cause__, Boom)
    assert_idle(client, emulator)


@pytest.mark.parametrize(
    ("requests", "options"),
    [
        ("a string", {}),
        (b"bytes", {}),
        (GOOD, {}),
        (TryOnRequest(**GOOD), {}),  # type: ignore[arg-type]
        (ModelRequest(model_name="edit", inputs={}), {}),
        (42, {}),
        ([], {"max_pending": 0}),
        ([], {"max_pending": -1}),
        ([], {"max_pending": True}),
        ([], {"max_pending": "3"}),
        ([], {"events": object()}),
        ([], {"events": BatchEvents(), "on_progress": print}),
        ([], {"on_sending": "not callable"}),
        ([], {"raise_on_error": "yes"}),
        ([], {"raise_on_error": 1}),
        ([], {"cancel_on_exit": None}),
        ([], {"cancel_on_exit": "false"}),
        ([], {"cancel_on_exit": 0}),
    ],
)
async def test_bad_arguments_fail_before_anything_is_read(
    client: AsyncFashn, emulator: Emulator, requests: Any, options: dict[str, Any]
) -> None:
    """batch() refuses a non-iterable, a single request (InvalidRequestError) and bad
    options (ConfigurationError) at once."""
    error = errors.ConfigurationError if options else errors.InvalidRequestError
    with pytest.raises(error):
        client.batch(requests, **options)
    assert emulator.report().accepted == []


@pytest.mark.parametrize("value", [None, 0, 1, "false", "yes"])
async def test_wait_refuses_a_cancel_on_exit_that_is_not_a_bool(
    client: AsyncFashn, emulator: Emulator, value: Any
) -> None:
    """client.wait(cancel_on_exit=...) takes True or False only, before any call."""
    with pytest.raises(errors.ConfigurationError, match="cancel_on_exit must be True or False"):
        await client.wait("some-id", cancel_on_exit=value)
    assert emulator.report().requests_by_route.get("status", 0) == 0
