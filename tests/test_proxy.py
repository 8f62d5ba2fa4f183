"""Proxies for real: a tinyproxy process on loopback, reached through the environment
(``HTTP_PROXY`` / ``NO_PROXY``, honoured by default by urllib's rules, as aiohttp reads
them) and through ``proxy=``.

tinyproxy is the Debian package (``.ci/run`` installs it); missing, these tests skip with
the install command, or fail in CI. Its log names every request it forwarded: that is
the proof a request went through it (and that a bypassed one did not). Real time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from helpers import free_port
from proxy_support import Tinyproxy

from fashn_async import AsyncFashn, Limits, Polling, RetryPolicy, errors
from fashn_async._wire import failed_to
from fashn_async.testing import Emulator, EmulatorConfig

pytestmark = pytest.mark.looptime(False)  # a real proxy process, real time

SCALE = 0.01


def _emulator() -> Emulator:
    return Emulator(EmulatorConfig(time_scale=SCALE))


def _client(emu: Emulator, **options: object) -> AsyncFashn:
    return AsyncFashn(
        api_key=emu.api_key,
        base_url=emu.url,
        limits=Limits().scaled(SCALE),
        polling=Polling().scaled(SCALE),
        **options,  # type: ignore[arg-type]
    )


async def _use(client: AsyncFashn, emu: Emulator) -> None:
    """A credits check and a whole try-on, so every route is used."""
    async with client:
        await client.credits()
        await client.run(
            model_image=emu.sample_image_url("model"),
            garment_image=emu.sample_image_url("garment"),
            category="tops",
        )


async def test_http_proxy_from_the_environment_is_used(
    tinyproxy: Tinyproxy, clean_env: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY set: every request goes through the proxy (its log names each one)."""
    clean_env.setenv("HTTP_PROXY", tinyproxy.url)
    async with _emulator() as emu:
        await _use(_client(emu), emu)
        report = emu.report()
    assert tinyproxy.forwarded("/v1/credits") == 1
    assert tinyproxy.forwarded("/v1/run") == 1
    assert tinyproxy.forwarded("/v1/status/") == report.requests_by_route["status"] >= 1


async def test_no_proxy_bypasses_it(tinyproxy: Tinyproxy, clean_env: pytest.MonkeyPatch) -> None:
    """NO_PROXY=127.0.0.1: the proxy sees nothing, the emulator everything."""
    clean_env.setenv("HTTP_PROXY", tinyproxy.url)
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    async with _emulator() as emu:
        await _use(_client(emu), emu)
        assert emu.report().requests_by_route["run"] == 1
    assert tinyproxy.forwarded("/v1/") == 0


def _no_proxy_rows() -> list[tuple[str, bool]]:
    """The README's NO_PROXY table: each entry, and whether the API is reached directly."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    table = text.split("<!-- no-proxy-table:", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[3:]:
        entry, goes = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((entry.split("`")[1], goes == "direct"))
    return rows


@pytest.mark.parametrize(("no_proxy", "direct"), _no_proxy_rows())
async def test_no_proxy_entries_match_as_the_readme_says(
    tinyproxy: Tinyproxy, clean_env: pytest.MonkeyPatch, no_proxy: str, direct: bool
) -> None:
    """Each NO_PROXY row of the README (host, suffix, '*'; no CIDR, port or wildcard):
    the request goes direct or through the proxy, as the row says."""
    clean_env.setenv("HTTP_PROXY", tinyproxy.url)
    clean_env.setenv("NO_PROXY", no_proxy)
    async with _emulator() as emu, _client(emu) as client:
        await client.credits()
    assert tinyproxy.forwarded("/v1/credits") == (0 if direct else 1)


async def test_explicit_proxy_option(tinyproxy: Tinyproxy, clean_env: pytest.MonkeyPatch) -> None:
    """proxy= sends every request through that proxy, with no environment at all."""
    async with _emulator() as emu:
        await _use(_client(emu, proxy=tinyproxy.url), emu)
    assert tinyproxy.forwarded("/v1/run") == 1
    assert tinyproxy.forwarded("/v1/credits") == 1


async def test_trust_env_false_ignores_the_environment(
    tinyproxy: Tinyproxy, clean_env: pytest.MonkeyPatch
) -> None:
    """trust_env=False: HTTP_PROXY is ignored and the proxy sees nothing."""
    clean_env.setenv("HTTP_PROXY", tinyproxy.url)
    async with _emulator() as emu:
        await _use(_client(emu, trust_env=False), emu)
    assert tinyproxy.forwarded("/v1/") == 0


@pytest.mark.parametrize(
    "proxy",
    [
        "127.0.0.1:3128",
        "socks5://127.0.0.1:1080",
        "http://",
        3128,
        "http://u:pw@[::1",
        "http://h:99999",
    ],
)
def test_a_bad_proxy_is_refused_at_construction(proxy: object) -> None:
    """proxy= must be an http(s) URL: anything else is a ConfigurationError at once."""
    with pytest.raises(errors.ConfigurationError, match="proxy must be"):
        AsyncFashn(api_key="test-key-0123", proxy=proxy)  # type: ignore[arg-type]


async def test_a_proxy_that_refuses_connections_is_named(clean_env: pytest.MonkeyPatch) -> None:
    """A proxy on a port nobody listens on: the ConnectError names the proxy (its host
    and port, never its password), not the API it was to reach."""
    port = free_port()
    async with _emulator() as emu:
        proxy = f"http://user:hunter2@127.0.0.1:{port}"
        client = _client(emu, proxy=proxy, retry=RetryPolicy(attempts=1))
        async with client:
            with pytest.raises(errors.ConnectError) as info:
                await client.credits()
        assert emu.report().requests_by_route.get("credits", 0) == 0
    message = str(info.value)
    assert f"cannot connect to the proxy 127.0.0.1:{port}" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "answer", [b"garbage\r\n\r\n", b"HTTP/1.1 200 Connection established\r\n", b""]
)
async def test_a_proxy_that_breaks_its_tunnel_sent_nothing(
    clean_env: pytest.MonkeyPatch, answer: bytes
) -> None:
    """An https API through a proxy that answers its CONNECT with garbage, cuts the
    answer short, or closes the connection: the request never reached the API, so a POST
    is a ConnectError, tried again while attempts last, never SubmissionUncertainError."""
    connects = 0

    async def tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connects
        await reader.readuntil(b"\r\n\r\n")
        connects += 1
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(tunnel, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with (
        server,
        AsyncFashn(
            api_key="fa-key-0123456",
            base_url=f"https://127.0.0.1:{free_port()}",
            proxy=f"http://127.0.0.1:{port}",
            retry=RetryPolicy(attempts=3, initial=0.01, min_delay=0.01),
        ) as client,
    ):
        with pytest.raises(errors.ConnectError, match="nothing was sent"):
            await client.submit(
                model_image="https://127.0.0.1/model.png",
                garment_image="https://127.0.0.1/garment.png",
                category="tops",
            )
    assert connects == 3  # each attempt reached the proxy, none the API


async def test_a_proxy_from_the_environment_aiohttp_cannot_read_is_a_connect_error(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY with a bad port (aiohttp cannot read it): a ConnectError saying so,
    nothing sent, the password nowhere (aiohttp's error quotes the URL)."""
    clean_env.setenv("HTTP_PROXY", "http://u:hunter2@127.0.0.1:9:x")
    async with _emulator() as emu:
        async with _client(emu, retry=RetryPolicy(attempts=1)) as client:
            with pytest.raises(errors.ConnectError, match="cannot be read") as info:
                await client.credits()
        assert emu.report().requests_by_route.get("credits", 0) == 0
    shown = [str(info.value), repr(info.value.__context__), repr(info.value.__cause__)]
    assert not any("hunter2" in text for text in shown), shown


@pytest.mark.parametrize(
    ("proxy", "why"),
    [
        ("socks5://u:hunter2@127.0.0.1:1080", "does not speak socks5"),
        ("SOCKS5H://hunter2@127.0.0.1:1080", "does not speak socks5h"),
        ("https://u:hunter2@127.0.0.1:3129", "would go direct"),
        ("user:hunter2@127.0.0.1:6", "no http:// scheme"),
        ("127.0.0.1:3128", "no http:// scheme"),
        ("http://", "names no host"),  # (aiohttp went direct)
        ("http://u:hunter2@", "names no host"),
        ("socks5://u:hunter2@[::1:1080", "cannot be read as a URL"),
    ],
)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_environment_proxy_aiohttp_cannot_use_is_refused_when_the_client_is_made(
    clean_env: pytest.MonkeyPatch, proxy: str, why: str, scheme: str
) -> None:
    """aiohttp takes only http:// proxies from the environment: an https:// one it ignores
    (requests went direct, past the proxy), a socks5:// one it spoke HTTP to, one with no
    scheme it could not read. Each is refused as the client is made, naming the variable,
    the proxy's password masked; NO_PROXY exempting the API's host lets it be."""
    clean_env.setenv(f"{scheme.upper()}_PROXY", proxy)
    base_url = f"{scheme}://127.0.0.1:{free_port()}"
    with pytest.raises(errors.ConfigurationError, match=why) as info:
        AsyncFashn(api_key="test-key-0123", base_url=base_url)
    assert f"{scheme.upper()}_PROXY" in str(info.value)
    assert "hunter2" not in str(info.value)
    AsyncFashn(api_key="test-key-0123", base_url=base_url, trust_env=False)
    AsyncFashn(api_key="test-key-0123", base_url=base_url, proxy="http://127.0.0.1:3128")
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    AsyncFashn(api_key="test-key-0123", base_url=base_url)


def test_the_refusal_names_the_variable_in_force(clean_env: pytest.MonkeyPatch) -> None:
    """``http_proxy`` (lower case, which urllib reads first) is named as it is set."""
    clean_env.setenv("http_proxy", "socks5://127.0.0.1:1080")
    with pytest.raises(errors.ConfigurationError, match="^http_proxy in the environment"):
        AsyncFashn(api_key="test-key-0123", base_url="http://127.0.0.1:9")


async def test_an_environment_proxy_for_the_other_scheme_is_not_refused(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """Only the proxy for the API's own scheme matters: HTTPS_PROXY=socks5://... with an
    http:// base_url is never used, and the client works."""
    clean_env.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    async with _emulator() as emu:
        async with _client(emu) as client:
            await client.credits()


def test_a_proxy_password_never_shows() -> None:
    """A proxy URL's password is masked in the client's repr."""
    client = AsyncFashn(api_key="test-key-0123", proxy="http://user:hunter2@127.0.0.1:3128")
    assert "hunter2" not in repr(client)
    assert "user:***@127.0.0.1:3128" in repr(client)


async def test_save_on_a_closed_client_goes_through_its_proxy(
    tinyproxy: Tinyproxy, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """result.save() after the client closed downloads through the client's proxy= too.

    The short-lived session is made as the client's is (Transport.new_session): its
    proxy, trust_env, timeouts and User-Agent, not aiohttp's defaults.
    """
    async with _emulator() as emu:
        client = _client(emu, proxy=tinyproxy.url, trust_env=False)
        async with client:
            result = await client.run(
                model_image=emu.sample_image_url("model"),
                garment_image=emu.sample_image_url("garment"),
                category="tops",
            )
        (output,) = result.output
        path = urlsplit(output).path
        before = tinyproxy.forwarded(path)
        (saved,) = await result.save(tmp_path)
    assert saved.stat().st_size > 0
    assert tinyproxy.forwarded(path) == before + 1


@pytest.mark.parametrize(
    ("host", "named"),
    [
        ("no-such-host.invalid", "the proxy no-such-host.invalid:3128"),
        ("::1", "the proxy [::1]:3128"),
        ("api.example", "https://api.example"),
        ("API.example", "https://api.example"),
    ],
)
def test_a_connection_failure_names_what_it_failed_to_reach(host: str, named: str) -> None:
    """A connection that failed to a host other than the API's (a proxy's name that does
    not resolve) names the proxy, never the API it was to reach (it said "cannot connect
    to <the API>: Name or service not known"); one to the API's host names the API."""
    key = ConnectionKey(host, 3128, False, True, None, None, None, None)
    error = aiohttp.ClientConnectorError(key, OSError(-2, "Name or service not known"))
    message = failed_to(error, "https://api.example")
    assert message.startswith(f"cannot connect to {named}: "), message
