"""Fuzzing: random requests never get a 5xx (without faults) and never hang."""

from __future__ import annotations

import asyncio
import json
import string
from typing import Any

from emu_support import current_body, flat_body, running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SAFE_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-_.:/ ", max_size=30)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "model_image",
        "garment_image",
        "category",
        "nsfw_filter",
        "guidance_scale",
        "timesteps",
        "seed",
        "num_samples",
        "garment_photo_type",
        "mode",
        "output_format",
        "return_base64",
        "moderation_level",
        "image",
        "product_image",
    ]
)
MODELS = st.sampled_from(["tryon-v1.6", "tryon-max", "edit", "model-create", "nope", ""])


@st.composite
def bodies(draw: st.DrawFn) -> Any:
    """A valid body with one field broken, a random JSON value, or raw bytes."""
    kind = draw(st.sampled_from(["flat", "current", "json", "bytes"]))
    if kind == "json":
        return draw(JSON)
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    mutations = draw(st.dictionaries(FIELDS, JSON, max_size=3))
    if kind == "flat":
        return flat_body(**mutations)
    return current_body(draw(MODELS), **mutations)


PATHS = st.one_of(
    st.sampled_from(
        ["/v1/run", "/v1/credits", "/_emulator/report", "/_emulator/faults", "/_emulator/reset"]
    ),
    st.builds("/v1/{}/{}".format, st.sampled_from(["status", "cancel"]), SAFE_TEXT),
    st.builds("/cdn/{}/{}".format, SAFE_TEXT, SAFE_TEXT),
    SAFE_TEXT.map(lambda tail: "/" + tail.strip()),
)
REQUESTS = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    PATHS,
    bodies(),
    st.sampled_from(["good", "bad", "none"]),
    st.dictionaries(st.sampled_from(["webhook_url", "x", "seed"]), SAFE_TEXT, max_size=2),
    st.sampled_from([None, "application/json", "text/plain", "multipart/form-data"]),
    st.dictionaries(
        st.sampled_from(["X-Junk", "Accept", "Content-Encoding", "Range", "Authorization"])
        | st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=12),
        SAFE_TEXT,
        max_size=3,
    ),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(REQUESTS, min_size=1, max_size=4))
async def test_random_requests_never_5xx(requests: list[Any]) -> None:
    """Random methods, paths, headers and bodies get answers below 500, in time."""
    injected = False  # a fault posted to /_emulator/faults may rightly cause a 5xx
    async with running(latency=(0.0, 2.0)) as api:
        for method, path, body, auth, params, content_type, extra in requests:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers = dict(extra)
            if content_type is not None:
                headers["Content-Type"] = content_type
            if auth == "bad":
                headers["Authorization"] = "Bearer nope"
            async with asyncio.timeout(60):
                reply = await api.request(
                    method, path, data=raw, headers=headers, auth=auth == "good", params=params
                )
            if path == "/_emulator/faults" and reply.status == 200:
                injected = injected or reply.json["added"] > 0
            assert injected or reply.status < 500, (method, path, reply)
            if reply.status >= 400 and method != "HEAD":
                assert isinstance(reply.json, dict), reply
                assert "error" in reply.json
        await asyncio.sleep(5)
        api.emu.clear_faults()
        for pid in api.emu.report().statuses:
            async with asyncio.timeout(60):
                final = await api.until_terminal(pid)
            assert final["status"] in ("completed", "failed")
