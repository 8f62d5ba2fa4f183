"""One coercion of user input into a request, for run()/submit(), batch items and catalogs."""

from __future__ import annotations

from typing import Any

import pytest

from fashn_async import AsyncFashn, ModelRequest, TryOnRequest, errors
from fashn_async._coerce import coerce_request

URL = "https://example.com/a.png"
GOOD = {"model_image": URL, "garment_image": URL, "category": "tops"}

#: TryOnRequest keyword fields that are wrong, and what the message must name.
BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({**GOOD, "bogus": 1}, r"unknown field\(s\) for TryOnRequest: bogus"),
    ({**GOOD, "model_name": "tryon-v1.6"}, r"unknown field\(s\) for TryOnRequest: model_name"),
    ({"model_image": URL, "garment_image": URL}, r"missing field\(s\) for TryOnRequest: category"),
    ({}, r"missing field\(s\) for TryOnRequest: model_image, garment_image, category"),
    ({**GOOD, "category": "hats"}, "category"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_FIELDS)
async def test_run_keyword_fields_and_batch_items_are_refused_alike(
    fields: dict[str, Any], message: str
) -> None:
    """run(**fields) and a batch item dict meet the same check, with the same message."""
    with pytest.raises(errors.InvalidRequestError, match=message) as by_fields:
        coerce_request(fields, kind=TryOnRequest)
    client = AsyncFashn(api_key="test-key-0123", base_url="http://127.0.0.1:9")  # never opened
    with pytest.raises(errors.InvalidRequestError) as by_run:
        await client.run(**fields)
    assert by_run.value.message == by_fields.value.message
    if "model_name" not in fields:  # a batch item with it is a ModelRequest instead
        with pytest.raises(errors.InvalidRequestError) as by_item:
            coerce_request(fields)
        assert by_item.value.message == by_fields.value.message


def test_every_form_gives_the_same_request() -> None:
    """A request, its fields as a dict, and a tuple give equal requests; objects pass as is."""
    request = TryOnRequest(**GOOD)  # type: ignore[arg-type]
    assert coerce_request(request) is request
    assert coerce_request(GOOD) == request
    assert coerce_request(GOOD, kind=TryOnRequest) == request
    assert coerce_request((URL, URL, "tops")) == request
    model = {"model_name": "tryon-v1.6", "inputs": {"model_image": URL, "garment_image": URL}}
    assert coerce_request(model) == ModelRequest(**model)  # type: ignore[arg-type]


def test_a_misbehaving_mapping_is_an_invalid_request() -> None:
    """A mapping that raises when read is an InvalidRequestError, its exception the cause."""

    class Broken(dict[str, Any]):
        def keys(self) -> Any:
            raise RuntimeError("no keys today")

        def __iter__(self) -> Any:
            raise RuntimeError("no keys today")

    with pytest.raises(errors.InvalidRequestError, match="no keys today") as caught:
        coerce_request(Broken(a=1))
    assert isinstance(caught.value.__cause__, RuntimeError)
