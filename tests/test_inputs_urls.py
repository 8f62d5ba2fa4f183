"""Image URLs: the client's check accepts only what the emulator's validator accepts."""

from __future__ import annotations

import json

import pytest
from helpers import PNG
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fashn_async import AsyncFashn, TryOnRequest, errors
from fashn_async._urls import check_url
from fashn_async.testing import Emulator
from fashn_async.testing._validate import InvalidRequest, parse_submission

#: Pieces URLs are made of, the awkward ones included: delimiters, escapes, IDNA
#: prefixes, IPv6 fragments, soft hyphens, dots, white space.
PIECES = st.sampled_from(
    [*"aZ09-._~:@/?#[]\\%!$&'()*+,;=", "xn--", "::1", "例", "\u00ad", "ß", "..", "%41", " "]
)
FRAGMENT = st.one_of(st.lists(PIECES, max_size=8).map("".join), st.text(max_size=4))
HOSTS = st.one_of(
    st.sampled_from(
        [
            "example.com",
            "example.com.",
            "example.com..",
            "[::1]",
            "[::1]x",
            "127.0.0.1",
            "a_b.c",
            "xn--a.com",
            "例え.jp",
        ]
    ),
    st.lists(PIECES, min_size=1, max_size=10).map("".join),
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    """An http(s) URL of any scheme case, user part, host, port and path."""
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "hTtps"]))
    user = draw(st.one_of(st.just(""), FRAGMENT.map(lambda s: s + "@")))
    host = draw(HOSTS)
    port = draw(
        st.one_of(
            st.just(""),
            st.integers(-1, 70_000).map(lambda p: f":{p}"),
            FRAGMENT.map(lambda s: ":" + s),
        )
    )
    path = draw(st.one_of(st.just(""), FRAGMENT.map(lambda s: "/" + s)))
    return f"{scheme}://{user}{host}{port}{path}"


def client_accepts(url: str) -> bool:
    """check_url passes, or refuses with our typed error (never a raw exception)."""
    try:
        check_url("model_image", url)
    except errors.ImageInputError:
        return False
    return True


def emulator_refusal(url: str) -> str | None:
    """The emulator's 400 message for a body with ``url`` as its model image, if any."""
    body = {
        "model_name": "tryon-v1.6",
        "inputs": {"model_image": url, "garment_image": url, "category": "tops"},
    }
    try:
        parse_submission(json.dumps(body).encode())
    except InvalidRequest as exc:
        return exc.message
    return None


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(urls())
@example("http://[::1]:@a")  # brackets in the user part (found by hypothesis)
@example("http://a]@[::1]/x.png")
@example("http://u:p%40ss\u00b2@example.com/x.png")  # NFKC: "²" -> "2" beside a "%"
@example("http://\uff05@example.com/x.png")  # a full-width "%"
def test_every_url_the_client_accepts_the_emulator_accepts(url: str) -> None:
    """Generated URLs: whatever check_url lets through, the emulator's validator takes."""
    if client_accepts(url):
        assert emulator_refusal(url) is None, url


REFUSED_BY_BOTH = [
    "http://example.com../a.png",  # two trailing dots: an empty label
    "http://example.com.../a.png",
    "http://[::1]x/a.png",  # junk after the IPv6 bracket
    "http://[::1]x:80/a.png",
    "http://u\\p@example.com/a.png",  # a backslash before the path
    "http://x.com\\@y.com/",
    "http://x.com\\/a.png",
    "https://%\u00a8@example.com/a.png",  # a % that starts no %XX escape
    "http://example.com:[::]/",  # brackets outside an IPv6 host (found by CI's hypothesis)
    "http://ex[a]mple.com/a.png",
]


@pytest.mark.parametrize("url", REFUSED_BY_BOTH)
async def test_urls_the_emulator_refuses_are_refused_unsent(
    emulator: Emulator, client: AsyncFashn, url: str
) -> None:
    """Each kind the emulator answers 400 is an ImageInputError naming the field; 0 sent."""
    assert emulator_refusal(url) is not None
    with pytest.raises(errors.ImageInputError, match="model_image: "):
        await client.submit(model_image=url, garment_image=PNG, category="tops")
    report = emulator.report()
    assert (report.accepted, report.bad_requests, report.status_calls_total) == ([], 0, 0)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com./a.png",
        "http://[::1]:8080/a.png",
        "http://u:p@example.com/a.png",
        "http://%41@example.com/a.png",
        "http://example.com/a\\b.png",
    ],
)
def test_neighbours_of_those_kinds_stay_accepted(url: str) -> None:
    """One trailing dot, a port after the bracket, escapes and a path backslash pass both."""
    assert emulator_refusal(url) is None
    TryOnRequest(model_image=url, garment_image=url, category="tops")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("//example.com/a.png", "write https://example.com/a.png"),
        ("DATA:image/png;base64,iVBORw0KGgo=", "starts with 'data:' in lowercase"),
        ("Data:image/png;base64,iVBORw0KGgo=", "starts with 'data:' in lowercase"),
    ],
)
async def test_near_miss_urls_get_the_fix_in_the_message(
    emulator: Emulator, client: AsyncFashn, value: str, message: str
) -> None:
    """A scheme-relative URL or an upper-case data: prefix: the message says the fix."""
    assert emulator_refusal(value) is not None
    with pytest.raises(errors.ImageInputError, match=f"model_image: .*{message}") as caught:
        await client.submit(model_image=value, garment_image=PNG, category="tops")
    assert "local file path" not in caught.value.message
    report = emulator.report()
    assert (report.accepted, report.bad_requests, report.status_calls_total) == ([], 0, 0)
