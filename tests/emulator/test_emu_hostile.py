"""Never a 500, never a hang: hostile bodies, hosts and connections.

Every request is answered with one of the statuses the API uses for it, and a request
that is refused creates and counts nothing: no prediction, no submission in the window,
no credit reserved.
"""

from __future__ import annotations

import asyncio
import json
import string
from typing import Any

import pytest
from emu_support import MODEL, Api, current_body, flat_body, running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: What the emulator may answer: the API's statuses, 401 for a bad key, 405 for a method.
ANSWERS = frozenset({200, 400, 401, 404, 405, 413, 429})
HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _footprint(api: Api) -> tuple[int, int, int, int]:
    """What a refused request must leave unchanged: submissions, predictions, credits."""
    report = api.emu.report()
    return (
        len(report.accepted),
        len(report.statuses),
        report.max_submissions_in_window,
        report.in_progress,
    )


async def _post_raw(api: Api, raw: bytes, params: dict[str, str] | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    async with asyncio.timeout(30):
        return await api.request("POST", "/v1/run", data=raw, headers=headers, params=params)


async def _check(api: Api, raw: bytes, params: dict[str, str] | None = None) -> Any:
    """POST ``raw``; assert an allowed answer, and nothing created when refused."""
    before = _footprint(api)
    reply = await _post_raw(api, raw, params)
    assert reply.status in ANSWERS, reply
    if reply.status != 200:
        assert isinstance(reply.json, dict), reply
        assert _footprint(api) == before, reply
    else:
        assert _footprint(api)[0] == before[0] + 1
    return reply


# -- deep nesting ----------------------------------------------------------------------


def _nested(depth: int, kind: str) -> str:
    """JSON text of ``depth`` nested arrays or objects, built without recursion."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _body_with(where: str, value: str) -> bytes:
    """A valid body with the JSON text ``value`` placed at ``where``."""
    if where == "top":
        return value.encode()
    if where == "flat-unknown":
        text = json.dumps(flat_body())[:-1] + ', "extra": ' + value + "}"
    elif where == "flat-field":
        text = json.dumps(flat_body(seed=0)).replace('"seed": 0', '"seed": ' + value)
    elif where == "inputs-unknown":
        text = json.dumps(current_body())[:-2] + ', "extra": ' + value + "}}"
    else:  # a model image of a model whose inputs are read generically
        body = current_body("edit", image="IMAGE")
        text = json.dumps(body).replace('"IMAGE"', value)
    return text.encode()


WHERE = st.sampled_from(["top", "flat-unknown", "flat-field", "inputs-unknown", "image"])


@HYPOTHESIS
@given(
    depth=st.one_of(st.integers(1, 80), st.integers(900, 1100), st.integers(1100, 5000)),
    kind=st.sampled_from(["list", "object"]),
    where=WHERE,
)
async def test_deep_nesting_never_500_and_creates_nothing(
    depth: int, kind: str, where: str
) -> None:
    """Bodies nested 1 to 5,000 deep anywhere are answered, refused ones create nothing."""
    async with running() as api:
        reply = await _check(api, _body_with(where, _nested(depth, kind)))
        if depth > 64:
            assert reply.status == 400
            assert any(why in reply.raw for why in (b"nested", b"malformed", b"JSON object"))


@HYPOTHESIS
@given(depth=st.integers(60, 3000), kind=st.sampled_from(["list", "object"]))
async def test_deep_fault_rules_never_500(depth: int, kind: str) -> None:
    """POST /_emulator/faults with a value nested deep is a 400 past 64, never a 500."""
    async with running() as api:
        raw = '{"type": "prediction", "name": ' + _nested(depth, kind) + "}"
        reply = await api.request("POST", "/_emulator/faults", data=raw.encode())
        assert reply.status == 400, reply
        assert api.emu.report().accepted == []


async def test_966_deep_unknown_field_is_refused_before_anything() -> None:
    """The issue's case: an unknown field 966 deep is a 400 and counts no submission."""
    async with running() as api:
        reply = await _check(api, _body_with("flat-unknown", _nested(966, "list")))
        assert reply.status == 400
        assert "nested more than 64 deep" in reply.raw.decode()
        assert api.emu.report().accepted == []


# -- hosts -----------------------------------------------------------------------------

IDNA_HOSTS = st.one_of(
    st.sampled_from(["xn--", "xn--a", "xn--zz-", "xn--.com", "a.xn--", "xn--ls8h", "xn--x."]),
    st.builds(
        "xn--{}".format, st.text(alphabet=string.ascii_lowercase + string.digits + "-", max_size=8)
    ),
    st.text(alphabet="abc\u00e9\u00df\u200d\u0301-.", min_size=1, max_size=10),
    st.builds("{}.{}".format, st.sampled_from(["a" * 64, "-a", "a-", "xn--"]), st.just("com")),
)
IMAGE_FIELDS = st.sampled_from(["model_image", "garment_image"])


@HYPOTHESIS
@given(host=IDNA_HOSTS, field=IMAGE_FIELDS, shape=st.sampled_from(["flat", "current"]))
async def test_image_url_hosts_never_500(host: str, field: str, shape: str) -> None:
    """Image URLs with hosts valid and invalid as IDNA: answered, and never a 500 later."""
    url = f"http://{host}/a.png"
    body = flat_body(**{field: url}) if shape == "flat" else current_body(**{field: url})
    async with running(latency=(0.0, 1.0)) as api:
        reply = await _check(api, json.dumps(body).encode())
        if reply.status == 200:  # a valid host that is not loopback: the load fails
            final = await api.until_terminal(reply.json["id"], every=0.5)
            assert final["status"] == "failed"
            assert final["error"]["name"] == "ImageLoadError"


@HYPOTHESIS
@given(host=IDNA_HOSTS)
async def test_webhook_url_hosts_never_500(host: str) -> None:
    """webhook_url with any host is answered 200 (loopback) or 400, never a 500."""
    async with running() as api:
        reply = await _check(
            api, json.dumps(flat_body()).encode(), {"webhook_url": f"http://{host}/hook"}
        )
        assert reply.status == 400


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("model_image", "http://xn--/a.png"),
        ("garment_image", "https://xn--a.com/g.png"),
        ("model_image", "http://a\u200d\u0301.com/a.png"),
        ("model_image", "http://" + "a" * 64 + ".com/a.png"),  # a label over 63
        ("garment_image", "http://" + "a." * 130 + "com/g.png"),  # a name over 253
        ("model_image", "http://cdn.example.com/a\x00.png"),  # a control character
    ],
)
async def test_idna_invalid_image_host_is_a_400(field: str, url: str) -> None:
    """An image URL whose host is not valid IDNA (or too long for DNS), or a URL with a
    control character, is refused, naming the field."""
    async with running() as api:
        reply = await _check(api, json.dumps(flat_body(**{field: url})).encode())
        assert reply.status == 400
        assert reply.json["error"]["message"].startswith(field)


async def test_idna_invalid_redirect_fails_the_prediction_not_the_server() -> None:
    """An input URL that redirects to an invalid IDNA host ends ImageLoadError."""
    from aiohttp import web

    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound("http://xn--/a.png")

    app = web.Application()
    app.router.add_get("/r.png", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with running(latency=(1.0, 1.0)) as api:
            pid = await api.submit(flat_body(model_image=f"http://127.0.0.1:{port}/r.png"))
            final = await api.until_terminal(pid, every=0.5)
            assert final["error"]["name"] == "ImageLoadError"
    finally:
        await runner.cleanup()


# -- junk of every type, anywhere ------------------------------------------------------

LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["http://xn--/a.png", MODEL, "data:image/png;base64,", "\udcff"])
)
JUNK = (
    LEAF
    | st.lists(LEAF, max_size=3)
    | st.dictionaries(st.text(max_size=6), LEAF | st.lists(LEAF, max_size=2), max_size=3)
)


@HYPOTHESIS
@given(
    fields=st.dictionaries(
        st.sampled_from(
            ["model_image", "garment_image", "category", "num_samples", "seed", "inputs", "x"]
        ),
        JUNK,
        max_size=3,
    ),
    shape=st.sampled_from(["flat", "current", "edit"]),
)
async def test_junk_fields_are_answered_and_refusals_create_nothing(
    fields: dict[str, Any], shape: str
) -> None:
    """Any JSON value in any field: an allowed answer; a refused body creates nothing."""
    if shape == "flat":
        body = flat_body(**fields)
    else:
        body = current_body("tryon-v1.6" if shape == "current" else "edit", **fields)
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    async with running(latency=(0.0, 1.0)) as api:
        reply = await _check(api, raw)
        if reply.status == 200:
            final = await api.until_terminal(reply.json["id"], every=0.5)
            assert final["status"] in ("completed", "failed")


# -- slow and held-open connections ----------------------------------------------------


async def _slow_post(port: int, length: int = 100_000) -> tuple[Any, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fashn-test-key\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{" % length
    )
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize("held", [200])
async def test_held_open_slow_bodies_do_not_stop_answers(held: int) -> None:
    """200 connections trickling bodies: others are still answered, each slow one gets 400.

    At most ``max_slow_bodies`` bodies are read at once (the longest waiting is dropped
    for a newer one) and each has ``body_timeout`` seconds; nothing is created.
    """
    async with running(max_slow_bodies=16, body_timeout=5.0) as api:
        port = int(api.emu.url.rsplit(":", 1)[1])
        slow = [await _slow_post(port) for _ in range(held)]
        async with asyncio.timeout(2):  # loop seconds: well within one body_timeout
            pid = await api.submit()
            credits = await api.request("GET", "/v1/credits")
        assert credits.status == 200
        answers = []
        async with asyncio.timeout(10):
            for reader, writer in slow:
                answers.append(await reader.read())  # to the end: the emulator closes it
                writer.close()
                await writer.wait_closed()
        assert all(answer.startswith(b"HTTP/1.1 400") for answer in answers), answers[:3]
        assert [s.id for s in api.emu.report().accepted] == [pid]


async def test_slow_body_within_the_timeout_is_read() -> None:
    """A body sent in pieces over 3 s (timeout 5 s) is read and run as usual."""
    async with running(body_timeout=5.0) as api:
        port = int(api.emu.url.rsplit(":", 1)[1])
        raw = json.dumps(flat_body()).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fashn-test-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(raw)
        )
        for start in range(0, len(raw), len(raw) // 3 + 1):
            writer.write(raw[start : start + len(raw) // 3 + 1])
            await writer.drain()
            await asyncio.sleep(1.0)
        answer = await reader.read(500)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert len(api.emu.report().accepted) == 1
