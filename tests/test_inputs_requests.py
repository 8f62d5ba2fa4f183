"""Bad request values are refused locally, typed and named, with nothing sent.

Each instance the issue lists is a row here, submitted through a real client on the
emulator, whose report must then show no request at all. Hypothesis then throws junk at
each field type: the answer is always one of our typed errors or acceptance, and what
we accept, the emulator's own (independent) reading of the API accepts too.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import fractions
import json
import math
from pathlib import Path
from typing import Any

import pytest
from helpers import PNG
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashn_async import AsyncFashn, ModelRequest, TryOnRequest, errors
from fashn_async._payload import prepare_request
from fashn_async.bulk._catalog import load_catalog
from fashn_async.testing import Emulator
from fashn_async.testing._validate import InvalidRequest, parse_submission

PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
IMAGES = {"model_image": PNG, "garment_image": PNG}
HYPOTHESIS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_nothing_sent(emulator: Emulator) -> None:
    """The emulator saw no submission, no 400, no 429 and no status call."""
    report = emulator.report()
    assert report.accepted == []
    assert report.bad_requests == 0
    assert report.rejected == {}
    assert report.status_calls_total == 0


class Opaque:
    """An object JSON has no form for."""


NON_JSON: list[tuple[str, Any]] = [
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("nan nested in a list", [1, [2, math.nan]]),
    ("inf nested in a dict", {"a": {"b": math.inf}}),
    ("set", {1, 2}),
    ("frozenset", frozenset({"a"})),
    ("bytes", b"abc"),
    ("bytearray", bytearray(b"abc")),
    ("object", Opaque()),
    ("decimal", decimal.Decimal("1.5")),
    ("fraction", fractions.Fraction(1, 3)),
    ("complex", 1j),
    ("datetime", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
    ("int beyond 64 bits", 2**64),
    ("lone surrogate", "a\ud800b"),
    ("non-string key", {1: "a"}),
]


@pytest.mark.parametrize(("kind", "value"), NON_JSON, ids=[k for k, _ in NON_JSON])
async def test_non_json_model_input_is_refused_and_nothing_sent(
    emulator: Emulator, client: AsyncFashn, kind: str, value: Any
) -> None:
    """A ModelRequest input JSON cannot carry (NaN, inf, set, bytes...) names the input."""
    with pytest.raises(errors.InvalidRequestError, match=r"inputs\.extra") as info:
        await client.submit(
            ModelRequest(model_name="tryon-v1.6", inputs={**IMAGES, "extra": value})
        )
    assert "must be" in info.value.message
    assert_nothing_sent(emulator)


SEEDS = [2**63, 2**63 + 1, 2**100, -1, 1.5, math.nan, "42", True]


@pytest.mark.parametrize("seed", SEEDS, ids=repr)
async def test_seed_outside_the_documented_int_is_refused(
    emulator: Emulator, client: AsyncFashn, seed: Any
) -> None:
    """A seed that is not an int from 0 to 2**63 - 1 is refused in both request shapes."""
    with pytest.raises(errors.InvalidRequestError, match="seed: must be an integer from 0 to"):
        await client.submit(model_image=PNG, garment_image=PNG, category="tops", seed=seed)
    with pytest.raises(errors.InvalidRequestError, match=r"inputs\.seed: must be an integer"):
        await client.submit(ModelRequest(model_name="tryon-max", inputs={**IMAGES, "seed": seed}))
    assert_nothing_sent(emulator)


async def test_seed_range_ends_are_accepted_by_client_and_emulator(client: AsyncFashn) -> None:
    """Seeds 0 and 2**63 - 1 pass locally and on the emulator."""
    for seed in (0, 2**63 - 1):
        await client.submit(model_image=PNG, garment_image=PNG, category="tops", seed=seed)


KNOWN_INPUTS: list[tuple[str, Any, str]] = [
    ("num_samples", 5, "from 1 to 4"),
    ("num_samples", math.inf, "from 1 to 4"),
    ("output_format", "gif", "png, jpeg"),
    ("return_base64", "yes", "True or False"),
    ("mode", "warp", "performance, balanced, quality"),
    ("moderation_level", "off", "conservative, permissive, none"),
    ("category", "shoes", "auto, tops"),
    ("garment_photo_type", 3, "auto, flat-lay, model"),
    ("segmentation_free", 1, "True or False"),
]


@pytest.mark.parametrize(("name", "value", "accepted"), KNOWN_INPUTS)
async def test_documented_model_inputs_are_checked(
    emulator: Emulator, client: AsyncFashn, name: str, value: Any, accepted: str
) -> None:
    """Inputs NOTES.md documents are held to their type and values, naming what is accepted."""
    with pytest.raises(errors.InvalidRequestError, match=f"inputs.{name}") as info:
        await client.submit(ModelRequest(model_name="tryon-v1.6", inputs={**IMAGES, name: value}))
    assert accepted in info.value.message
    assert_nothing_sent(emulator)


@pytest.mark.parametrize(
    "name", ["", " ", "TRYON", "tryon v1.6", "a\ud800", "x" * 65, 7, None, "tryon-v1.6\n"]
)
def test_model_name_must_look_like_a_model_name(name: Any) -> None:
    """model_name is lowercase letters, digits, dots and hyphens, as NOTES.md lists them."""
    with pytest.raises(errors.InvalidRequestError, match="model_name"):
        ModelRequest(model_name=name, inputs={})


def test_deeply_nested_or_self_referencing_input_is_refused() -> None:
    """An input nested past 32 levels (or containing itself) is refused, not a RecursionError."""
    deep: list[Any] = []
    for _ in range(100):
        deep = [deep]
    looped: list[Any] = []
    looped.append(looped)
    for value in (deep, looped):
        with pytest.raises(errors.InvalidRequestError, match="nested at most 32"):
            ModelRequest(model_name="edit", inputs={"x": value})


def test_catalog_cells_reading_nan_or_infinity_are_row_errors(tmp_path: Path) -> None:
    """`batch --model-name`: a CSV cell "nan" or "Infinity" is a row error, not a sent NaN."""
    (tmp_path / "p.png").write_bytes(PNG)
    catalog = tmp_path / "c.csv"
    catalog.write_text(
        "model_image,garment_image,strength\np.png,p.png,nan\np.png,p.png,Infinity\n"
        "p.png,p.png,0.5\n"
    )
    rows = load_catalog(catalog, model_name="tryon-v1.6").rows
    assert [row.ok for row in rows] == [False, False, True]
    for row in rows[:2]:
        assert row.error is not None
        assert "inputs.strength" in row.error
        assert "finite number" in row.error


# -- hypothesis: junk of each field type ---------------------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=8),
    st.decimals(allow_nan=True),
    st.fractions(),
    st.lists(st.integers(), max_size=3),
    st.sets(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.floats(), max_size=3),
)


def _server_accepts(request: TryOnRequest | ModelRequest) -> None:
    """Prepare the request and run the emulator's own parser on the exact bytes."""
    prepared = asyncio.run(prepare_request(request))
    json.loads(prepared.payload, parse_constant=_no_constants)  # strict JSON
    try:
        parse_submission(prepared.payload)
    except InvalidRequest as exc:  # pragma: no cover - the failure message
        pytest.fail(f"accepted locally, refused by the emulator: {exc.message}")


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} in the body")


def _typed_or_accepted(build: Any) -> TryOnRequest | ModelRequest | None:
    try:
        return build()  # type: ignore[no-any-return]
    except errors.InvalidRequestError as exc:  # a raw exception would escape instead
        message = exc.message
    assert message.partition(":")[0]  # names the field
    return None


TRYON_FIELDS = [
    "category",
    "garment_photo_type",
    "guidance_scale",
    "timesteps",
    "seed",
    "num_samples",
    "nsfw_filter",
    "cover_feet",
    "adjust_hands",
    "restore_background",
    "restore_clothes",
    "long_top",
]


@HYPOTHESIS
@given(field=st.sampled_from(TRYON_FIELDS), value=JUNK)
def test_tryon_fields_junk_is_typed_error_or_accepted_by_both(field: str, value: Any) -> None:
    """Number, enum and bool fields: junk is our typed error, or valid for the emulator too."""
    request = _typed_or_accepted(
        lambda: TryOnRequest(**{**IMAGES, "category": "tops", field: value})  # type: ignore[arg-type]
    )
    if request is not None:
        _server_accepts(request)


MODEL_INPUTS = ["seed", "num_samples", "output_format", "return_base64", "mode", "category", "x"]


@HYPOTHESIS
@given(
    name=st.sampled_from(MODEL_INPUTS),
    value=st.recursive(JUNK, lambda inner: st.lists(inner, max_size=3), max_leaves=8),
)
def test_model_inputs_junk_is_typed_error_or_accepted_by_both(name: str, value: Any) -> None:
    """Any ModelRequest input value: our typed error, or a body the emulator accepts."""
    request = _typed_or_accepted(
        lambda: ModelRequest(model_name="tryon-v1.6", inputs={**IMAGES, name: value})
    )
    if request is not None:
        _server_accepts(request)


@HYPOTHESIS
@given(name=st.text(max_size=70))
def test_model_name_junk_is_typed_error_or_accepted(name: str) -> None:
    """String fields: any text is accepted or refused with our typed error, never raw."""
    _typed_or_accepted(lambda: ModelRequest(model_name=name, inputs={}))


URL_PARTS = st.tuples(
    st.sampled_from(["http", "https", "ftp", "file", "javascript", "HTTP", "", "h"]),
    st.one_of(
        st.sampled_from(["example.com", "xn--", "xn--a.com", "a..b", "-a.com", "[::1]", "例え.jp"]),
        st.text(max_size=12),
    ),
    st.one_of(st.none(), st.integers(min_value=-5, max_value=200_000), st.text(max_size=4)),
    st.text(max_size=12),
)


@HYPOTHESIS
@given(parts=URL_PARTS)
def test_url_junk_is_typed_error_or_accepted_by_both(parts: tuple[str, str, Any, str]) -> None:
    """URL strings: a typed ImageInputError, or a URL the emulator accepts as well."""
    scheme, host, port, path = parts
    url = f"{scheme}://{host}" + ("" if port is None else f":{port}") + "/" + path
    request = _typed_or_accepted(
        lambda: TryOnRequest(model_image=url, garment_image=PNG, category="tops")
    )
    if request is not None:
        _server_accepts(request)


@HYPOTHESIS
@given(value=st.one_of(st.binary(max_size=64), st.text(max_size=40), JUNK))
def test_image_value_junk_is_typed_error_or_accepted(value: Any) -> None:
    """Image sources: junk is an ImageInputError (at construction or when prepared)."""
    request = _typed_or_accepted(
        lambda: TryOnRequest(model_image=value, garment_image=PNG, category="tops")
    )
    if request is None:
        return
    try:
        _server_accepts(request)
    except errors.ImageInputError as exc:
        message = exc.message
    else:
        return
    assert message.startswith("model_image: ")
