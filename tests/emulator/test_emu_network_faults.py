"""The network fault kinds on the wire (plain aiohttp, not the SDK): what each one sends."""

from __future__ import annotations

import json
import socket

import aiohttp
import pytest
from emu_support import flat_body, running

from fashn_async.testing import HttpFault, StalledPort
from fashn_async.testing._faults import gateway_page


@pytest.mark.parametrize(("kind", "created"), [("gateway_before", 0), ("gateway_after", 1)])
@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_pages(kind: str, created: int, status: int) -> None:
    """gateway_*: an HTML page with the status, before or after the prediction is created."""
    async with running() as api:
        api.emu.inject(HttpFault(kind, route="run", status=status, times=1))  # type: ignore[arg-type]
        reply = await api.run(flat_body())
        assert reply.status == status
        assert reply.headers["Content-Type"].startswith("text/html")
        assert reply.raw.decode() == gateway_page(status)
        report = api.emu.report()
        assert len(report.accepted) == created
        assert report.faults == {f"run:{kind}": 1}


@pytest.mark.parametrize("retry_after", ["0", None, "Thu, 01 Jan 2015 00:00:00 GMT"])
async def test_throttle_sends_its_retry_after_verbatim(retry_after: str | None) -> None:
    """throttle: 429 with the API's body and code, Retry-After as given (or none)."""
    async with running() as api:
        fault = HttpFault(
            "throttle", route="run", code="ConcurrencyLimitExceeded", retry_after=retry_after
        )
        api.emu.inject(fault)
        reply = await api.run(flat_body())
        assert reply.status == 429
        assert reply.json["error"] == "ConcurrencyLimitExceeded"
        assert reply.headers.get("Retry-After") == retry_after
        assert api.emu.report().accepted == []


async def test_truncated_not_json_and_no_id_answer_after_creating() -> None:
    """truncated / not_json / no_id: the prediction is created; the 200 carries no usable id."""
    async with running() as api:
        bodies = []
        for kind in ("truncated", "not_json", "no_id"):
            api.emu.inject(HttpFault(kind, route="run", times=1))  # type: ignore[arg-type]
            reply = await api.run(flat_body(seed=len(bodies)))
            assert reply.status == 200
            bodies.append(reply.raw)
        with pytest.raises(ValueError):  # noqa: PT011 - any JSON error
            json.loads(bodies[0])
        assert bodies[0].startswith(b'{"id"')
        assert bodies[1].startswith(b"<html>")
        assert json.loads(bodies[2]) == {"error": None}
        assert len(api.emu.report().accepted) == 3


@pytest.mark.parametrize(
    ("kind", "error"),
    [("cut_off", aiohttp.ClientPayloadError), ("bad_status_line", aiohttp.ClientResponseError)],
)
async def test_broken_http_after_creating(kind: str, error: type[Exception]) -> None:
    """cut_off / bad_status_line: created, then an answer aiohttp cannot read."""
    async with running() as api:
        api.emu.inject(HttpFault(kind, route="run", times=1))  # type: ignore[arg-type]
        with pytest.raises(error):
            await api.run(flat_body())
        assert len(api.emu.report().accepted) == 1


@pytest.mark.looptime(False)  # the kernel's connect, real time
def test_stalled_port_never_connects_until_released() -> None:
    """StalledPort: connects time out (nothing sent); released, the port is free to bind."""
    with StalledPort() as stalled:
        probe = socket.socket()
        probe.settimeout(0.3)
        with pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", stalled.port))
        probe.close()
        stalled.release()
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", stalled.port))
        assert "released" in repr(stalled)
