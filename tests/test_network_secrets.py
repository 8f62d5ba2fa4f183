"""No object reachable from any error the client raises holds the API key.

``reachable_texts`` walks everything an error reporter could show: the exception chain
(``__cause__``, ``__context__``), ``args``, attributes (``__dict__``, ``__slots__``) and
what they hold (wrapped library errors, their ``request_info`` and headers), each one's
``repr`` and ``str``, and the traceback formatted with and without its frames' locals.
It is run over every kind of error the client can raise, each produced for real.
"""

from __future__ import annotations

import asyncio
import base64
import json
import traceback
import types
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import free_port
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from fashn_async import AsyncFashn, Limits, RetryPolicy, TryOnRequest, errors
from fashn_async._redact import _base64_cores
from fashn_async.testing import Emulator, HttpFault, PredictionFault, StalledPort

KEY = "sk-live-SECRET-0123456789abcdef"
_SKIP = (type, types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType)


def reachable_texts(error: BaseException, *, limit: int = 20_000) -> Iterator[str]:
    """Every text an error exposes, through everything reachable from it."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        for show in (repr, str):
            try:
                yield show(obj)
            except Exception as exc:  # a repr that fails shows nothing
                yield type(exc).__name__
        if isinstance(obj, str | bytes | int | float | bool):
            continue
        if isinstance(obj, BaseException):
            stack += [obj.__cause__, obj.__context__, *obj.args]
            stack += list(getattr(obj, "__notes__", []))
        if isinstance(obj, Mapping):
            for key, value in list(obj.items()):
                stack += [key, value]
        elif isinstance(obj, list | tuple | set | frozenset):
            stack += list(obj)
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                stack.append(getattr(obj, name, None))
        stack += list(getattr(obj, "__dict__", {}).values())
        for name in ("request_info", "headers", "real_url", "url", "history"):
            stack.append(getattr(obj, name, None))
    yield "".join(traceback.format_exception(error))
    yield "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())


def assert_no_key(error: BaseException) -> None:
    """Nothing reachable from ``error`` shows the key."""
    for text in reachable_texts(error):
        assert KEY not in text, f"the key is reachable from {type(error).__name__}: {text[:300]}"


def test_the_walker_finds_a_key_in_a_wrapped_aiohttp_error() -> None:
    """The walker is not blind: aiohttp's error with request_info headers is caught out."""
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Bearer {KEY}"}))
    info = aiohttp.RequestInfo(URL("http://127.0.0.1/v1/run"), "POST", headers)
    inner = aiohttp.ClientResponseError(info, (), status=400, message="Invalid response status")
    try:
        try:
            raise inner
        except aiohttp.ClientError:
            raise errors.ConnectionDroppedError("dropped") from None
    except errors.ConnectionDroppedError as outer:
        caught = outer
    assert caught.__cause__ is None
    with pytest.raises(AssertionError, match="the key is reachable"):
        assert_no_key(caught)


def _request(emulator: Emulator) -> TryOnRequest:
    return TryOnRequest(
        model_image=emulator.sample_image_url("model"),
        garment_image=emulator.sample_image_url("garment"),
        category="tops",
    )


async def _raised(call: Any) -> BaseException:
    try:
        await call
    except errors.FashnError as exc:
        return exc
    raise AssertionError("no error was raised")


@pytest.mark.emulator(api_key=KEY)
@pytest.mark.client(retry=RetryPolicy(attempts=1, rate_limit_waits=1), timeout=5.0)
async def test_no_http_error_kind_holds_the_key(client: AsyncFashn, emulator: Emulator) -> None:
    """Every error from an answer, a broken answer or no answer: no key anywhere in it."""
    found: dict[str, BaseException] = {}

    async def collect(label: str, fault: HttpFault | None, call: Any) -> None:
        emulator.clear_faults()
        if fault is not None:
            emulator.inject(fault)
        found[label] = await _raised(call)

    prediction = await client.submit(_request(emulator))
    pid = prediction.id
    for kind in ("bad_status_line", "cut_off", "drop_before", "gateway_before", "not_json"):
        await collect(f"status {kind}", HttpFault(kind, route="status"), client.status(pid))  # type: ignore[arg-type]
        await collect(
            f"run {kind}", HttpFault(kind, route="run"), client.submit(_request(emulator))
        )  # type: ignore[arg-type]
    await collect("status slow", HttpFault("slow", route="status"), client.status(pid))
    await collect("run slow", HttpFault("slow", route="run"), client.submit(_request(emulator)))
    await collect("429", HttpFault("throttle", route="status"), client.status(pid))
    await collect(
        "credits",
        HttpFault("throttle", route="run", code="OutOfCredits"),
        client.submit(_request(emulator)),
    )
    await collect("5xx", HttpFault("error_5xx", route="credits"), client.credits())
    await collect("404", None, client.status("no-such-id"))
    await collect(
        "400",
        None,
        client.submit(
            model_image="http://127.0.0.1:1/x.png",
            garment_image="data:image/png;base64,AAAA",
            category="tops",
        ),
    )
    emulator.clear_faults()
    emulator.inject(PredictionFault("NSFWError"))
    found["failed"] = await _raised(client.run(_request(emulator)))
    emulator.clear_faults()
    for kind in ("gateway_before", "drop_before", "untracked"):  # polling gives up
        emulator.clear_faults()
        emulator.inject(HttpFault(kind, route="status"))  # type: ignore[arg-type]
        found[f"polling {kind}"] = await _raised(client.run(_request(emulator)))
    emulator.clear_faults()
    emulator.inject(HttpFault("slow", route="status", delay=1000.0))
    found["deadline"] = await _raised(client.run(_request(emulator), deadline=3.0))
    assert {type(e).__name__ for e in found.values()} >= {
        "RemoteProtocolError",
        "ConnectionDroppedError",
        "NetworkTimeoutError",
        "SubmissionUncertainError",
        "RateLimitExceededError",
        "OutOfCreditsError",
        "ServerError",
        "NotFoundError",
        "NSFWError",
        "DeadlineExceededError",
        "PollingError",
    }
    for error in found.values():
        assert_no_key(error)
    await asyncio.sleep(1000)


@pytest.mark.emulator(api_key=KEY)
@pytest.mark.client(retry=RetryPolicy(attempts=1, rate_limit_waits=1), timeout=5.0)
async def test_an_answer_that_repeats_the_key_shows_it_nowhere(
    client: AsyncFashn, emulator: Emulator
) -> None:
    """A server or proxy that repeats the request's Authorization in its answer (in the
    API's error message, a header, an HTML page and its Content-Type, a failed
    prediction's error): the key is in no error, no status answer and no result; the
    rest of the message is kept, the key shown as ``***``."""
    found: dict[str, BaseException] = {}
    pid = (await client.submit(_request(emulator))).id
    calls = {
        "run": lambda: client.submit(_request(emulator)),
        "status": lambda: client.status(pid),
        "cancel": lambda: client.cancel(pid),
        "credits": client.credits,
    }
    for kind in ("echo_key", "echo_key_page"):
        for route, call in calls.items():
            emulator.clear_faults()
            emulator.inject(HttpFault(kind, route=route))  # type: ignore[arg-type]
            found[f"{route} {kind}"] = await _raised(call())
    emulator.clear_faults()
    emulator.inject(HttpFault("echo_key", route="status"))
    found["polling"] = await _raised(client.run(_request(emulator)))
    emulator.clear_faults()
    emulator.inject(PredictionFault("PipelineError", message=f"failed for Bearer {KEY}"))
    found["failed"] = await _raised(client.run(_request(emulator)))
    failed = await client.status(found["failed"].prediction_id)  # type: ignore[attr-defined]
    emulator.clear_faults()
    assert {type(e).__name__ for e in found.values()} >= {
        "ServerError",
        "SubmissionUncertainError",
        "PollingError",
        "PipelineError",
    }
    for error in found.values():
        assert_no_key(error)
    assert KEY not in repr(failed)
    assert failed.error is not None
    assert failed.error.message == "failed for Bearer ***"
    assert "Authorization: Bearer ***" in str(found["credits echo_key"])
    await asyncio.sleep(1000)


async def test_no_connection_error_kind_holds_the_key(emulator: Emulator) -> None:
    """Refused, timed-out and proxy-refused connections, a wrong key, a closed client."""
    found: list[BaseException] = []
    policy = RetryPolicy(attempts=1)
    async with AsyncFashn(
        api_key=KEY, base_url=f"http://127.0.0.1:{free_port()}", retry=policy
    ) as c:
        found.append(await _raised(c.credits()))
    with StalledPort() as stalled:
        async with AsyncFashn(
            api_key=KEY, base_url=stalled.url, retry=policy, connect_timeout=1.0
        ) as c:
            found.append(await _raised(c.credits()))
    async with AsyncFashn(
        api_key=KEY, base_url=emulator.url, retry=policy, proxy=f"http://127.0.0.1:{free_port()}"
    ) as c:
        found.append(await _raised(c.credits()))
    async with AsyncFashn(api_key=KEY, base_url=emulator.url, limits=Limits()) as c:
        found.append(await _raised(c.credits()))  # 401: the emulator takes another key
    found.append(await _raised(c.credits()))  # closed
    assert {type(e).__name__ for e in found} == {
        "ConnectError",
        "ConnectTimeoutError",
        "AuthenticationError",
        "ClientClosedError",
    }
    for error in found:
        assert_no_key(error)


def test_foreign_loop_error_holds_no_key() -> None:
    """EventLoopError, raised on another loop, holds no key either."""
    client = AsyncFashn(api_key=KEY, base_url="http://127.0.0.1:9")
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(client.__aenter__())
        with pytest.raises(errors.EventLoopError) as info:
            asyncio.run(client.credits())
        assert_no_key(info.value)
    finally:
        first.run_until_complete(client.aclose())
        first.close()


@pytest.mark.parametrize(
    ("spoiled", "options"),
    [
        (" x", {}),  # a space inside
        ("\nx", {}),  # a line break inside
        ("\u2013x", {}),  # non-ASCII (a typographic dash)
        # What a repr, JSON or HTML escapes (the key then shown as 'sk\\'...', which no
        # scrubbing finds), and a key no header line carries.
        ("'x", {}),
        ('"x', {}),
        ("\\x", {}),
        ("<x", {}),
        ("&x", {}),
        ("x" * 4096, {}),
        ("", {"timeout": -1.0}),  # a good key, a bad option after it
        ("", {"limits": "fast"}),
        ("", {"base_url": "ftp://example.invalid"}),
        ("", {"proxy": "not a url"}),
        ("", {"coordination": 42}),
        ("", {"trust_env": "no"}),
        # A Redis URL that passes the check but not redis-py's (refused while the
        # coordinator is built, three frames below the client's).
        ("", {"coordination": "redis://127.0.0.1:1/0?socket_timeout=abc"}),
        ("", {"coordination": "redis://127.0.0.1:1/0?health_check_interval=x"}),
    ],
)
def test_a_client_refused_at_construction_shows_no_key(
    spoiled: str, options: dict[str, Any]
) -> None:
    """A ConfigurationError from ``AsyncFashn(...)``, the key's own or another option's:
    nothing reachable from it shows the key, its traceback's frame locals included (what
    Sentry or ``pytest --showlocals`` capture), and formatting them raises nothing (the
    half-built client's repr among them). (The key is built in the call, so that this
    test's own frame does not hold it.)"""
    with pytest.raises(errors.ConfigurationError) as caught:
        AsyncFashn(api_key=KEY + spoiled, **options)
    assert_no_key(caught.value)


@pytest.mark.parametrize("spoiled", [" x", ""])
def test_a_key_from_the_environment_refused_at_construction_shows_no_key(
    spoiled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through ``FASHN_API_KEY``: a malformed key, or a good one with a Redis URL
    refused while the coordinator is built."""
    monkeypatch.setenv("FASHN_API_KEY", KEY + spoiled)
    options = {} if spoiled else {"coordination": "redis://127.0.0.1:1/0?socket_timeout=abc"}
    with pytest.raises(errors.ConfigurationError) as caught:
        AsyncFashn(**options)  # type: ignore[arg-type]
    assert_no_key(caught.value)


def _hand_written_reprs() -> list[type]:
    """Every class of the package (its emulator aside) with a ``__repr__`` of its own,
    not one attrs generated."""
    import importlib
    import inspect
    import pkgutil

    import fashn_async

    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(fashn_async.__path__, "fashn_async."):
        if info.name.startswith("fashn_async.testing"):
            continue
        for cls in vars(importlib.import_module(info.name)).values():
            if (
                inspect.isclass(cls)
                and cls.__module__.startswith("fashn_async")
                and "__repr__" in cls.__dict__
                and not hasattr(cls, "__attrs_attrs__")
            ):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


@pytest.mark.parametrize("cls", _hand_written_reprs(), ids=lambda cls: cls.__qualname__)
def test_a_repr_works_on_an_object_not_fully_built(cls: type) -> None:
    """An object whose ``__init__`` raised part way is in that frame's locals, which
    error reporters show with ``repr``: a repr that raised there broke the report."""
    assert repr(cls.__new__(cls))


def test_an_answers_headers_keep_the_longest_retry_after_and_no_key() -> None:
    """Headers read in any case; Retry-After sent twice (``0``, then ``3``) waits the
    longer; the key in any header, or JSON-escaped in a body, is shown as ``***``."""
    from fashn_async._http import Response
    from fashn_async._redact import Secret
    from fashn_async._wire import answer_headers

    sent = CIMultiDict(
        [
            ("retry-after", "0"),
            ("RETRY-AFTER", "3"),
            ("X-Echo", f"Bearer {KEY}"),
            (f"X-{KEY}", "1"),  # in a header's name too
        ]
    )
    kept = answer_headers(CIMultiDictProxy(sent), Secret(KEY))
    assert kept.getall("Retry-After") == ["3"]
    assert kept["x-echo"] == "Bearer ***"
    assert kept["X-***"] == "1"
    assert not any(KEY in name for name in kept)
    assert Response(429, None, kept, is_json=False).retry_after == 3.0
    odd = 'k"ey\\'
    assert Secret(odd).scrub_json(json.loads(b'{"m": "k\\"ey\\\\"}')) == {"m": "***"}


#: How a hostile server or proxy may repeat the key in an answer, each as raw bytes
#: (``{auth}``: the request's Authorization value; ``{key}``: the key alone).
_ECHOES = {
    "unicode-escaped JSON": (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: {n}\r\n\r\n{json_escaped}"
    ),
    "UTF-16 JSON": (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: {n}\r\n\r\n{utf16}"
    ),
    "other forms in a message": (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: {n}\r\n\r\n{forms}"
    ),
    # Pieces of it: what a server shows of a key it refuses, and a key over two lines.
    "a masked echo in a message": (
        b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
        b"Content-Length: {n}\r\n\r\n{masked}"
    ),
    "the key over two lines of a message": (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
        b"Content-Length: {n}\r\n\r\n{split}"
    ),
    # aiohttp quotes the first 100 bytes of a line too long: a piece of the key.
    "a header line too long, the key in its first 100 bytes": (
        b"HTTP/1.1 200 OK\r\nX-Echo: " + b"a" * 80 + b"{auth}" + b"a" * 9000 + b"\r\n\r\n"
    ),
    "a bad status line": b"HTTP/1.1 2OO {auth}\r\n\r\n",
    "a header line without a colon": b"HTTP/1.1 200 OK\r\n{auth}\r\n\r\n",
    "an echo header, then the body cut off": (
        b"HTTP/1.1 200 OK\r\nX-Echo: {auth}\r\nContent-Type: application/json\r\n"
        b'Content-Length: 500\r\n\r\n{"id":'
    ),
}


def _echo_bytes(template: bytes, auth: str) -> bytes:
    key = auth.split()[-1]
    escaped = "".join(f"\\u{ord(c):04x}" for c in key)
    import base64
    import urllib.parse

    forms = json.dumps(
        {
            "error": "BadRequest",
            "message": f"{key.upper()} | {base64.b64encode(auth.encode()).decode()} | "
            f"{urllib.parse.quote(key, safe='')} | {''.join(f'%{b:02X}' for b in key.encode())}"
            f" | {urllib.parse.quote(''.join(f'%{b:02X}' for b in key.encode()))}",
        }
    ).encode()
    half = len(key) // 2
    bodies = {
        b"{masked}": json.dumps(
            {"error": "Unauthorized", "message": f"Invalid key: {key[:12]}...{key[-4:]}"}
        ).encode(),
        b"{split}": json.dumps(
            {"error": "InternalServerError", "message": f"{key[:half]}\n{key[half:]}"}
        ).encode(),
        b"{json_escaped}": f'{{"error": "BadRequest", "message": "bad {escaped}"}}'.encode(),
        b"{utf16}": json.dumps({"error": "BadRequest", "message": f"bad {key}"}).encode("utf-16"),
        b"{forms}": forms,
    }
    data = template.replace(b"{auth}", auth.encode())
    for marker, body in bodies.items():
        if marker in data:
            data = data.replace(marker, body).replace(b"{n}", str(len(body)).encode())
    return data


@pytest.mark.parametrize("echo", list(_ECHOES))
@pytest.mark.parametrize("route", ["run", "credits"])
async def test_no_form_of_an_echoed_key_reaches_an_error(echo: str, route: str) -> None:
    """A server that repeats the key escaped, in UTF-16, upper-cased, in base64 or
    percent-encoded, in a broken status or header line (which aiohttp's errors quote),
    or in a header before cutting the body off: no error, chain or frame local shows it."""
    template = _ECHOES[echo]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        auth = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"authorization:")
        )
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        await reader.readexactly(length)
        writer.write(_echo_bytes(template, auth))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with (
        server,
        AsyncFashn(api_key=KEY, base_url=url, retry=RetryPolicy(attempts=1)) as client,
    ):
        call = (
            client.credits()
            if route == "credits"
            else client.submit(
                model_image="https://127.0.0.1/m.png",
                garment_image="https://127.0.0.1/g.png",
                category="tops",
            )
        )
        error = await _raised(call)
    assert_no_key(error)
    cores = _base64_cores(KEY)
    pieces = [KEY[i : i + 8].casefold() for i in range(len(KEY) - 7)]  # any 8 of it
    for text in reachable_texts(error):
        shown = urllib.parse.unquote(text).casefold()
        assert not any(piece in shown for piece in pieces), text[:300]
        assert not any(core in text for core in cores), text[:300]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/{key}\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: http://[{key}\r\nContent-Length: 0\r\n\r\n",
    ],
)
async def test_a_download_error_chains_no_library_error(answer: bytes, tmp_path: Path) -> None:
    """An output whose server redirects to a URL holding the key (a hostile one, which
    knows it): the DownloadError says what failed, with no aiohttp error chained (those
    quote the URLs they were sent to)."""
    from fashn_async._outputs import save_output

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer.replace(b"{key}", KEY.encode()))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/out.png"
    async with server, aiohttp.ClientSession() as session:
        error = await _raised(save_output(session, url, tmp_path, "r", 0))
    assert isinstance(error, errors.DownloadError)
    assert error.__cause__ is None
    assert error.__context__ is None
    assert KEY not in str(error)


@pytest.mark.emulator(api_key=KEY)
@pytest.mark.parametrize("how", ["timeout", "wait_for", "cancel"])
@pytest.mark.parametrize("route", ["status", "run", "credits"])
async def test_a_call_its_caller_gives_up_on_holds_no_key(
    emulator: Emulator, how: str, route: str
) -> None:
    """``asyncio.timeout``, ``wait_for`` or ``task.cancel()`` around a call whose request
    is on the wire (a web handler's timeout): the TimeoutError or CancelledError, its
    chain and every frame's locals show no key (aiohttp's frames hold the request's
    headers; they are not in the cancellation the caller sees)."""
    async with AsyncFashn(api_key=KEY, base_url=emulator.url) as client:
        prediction = await client.submit(_request(emulator))
        emulator.inject(HttpFault("slow", route=route, delay=30.0))  # type: ignore[arg-type]
        calls = {
            "status": lambda: client.status(prediction.id),
            "run": lambda: client.run(_request(emulator)),
            "credits": client.credits,
        }
        call = calls[route]
        error: BaseException | None = None
        try:
            if how == "timeout":
                async with asyncio.timeout(5):
                    await call()
            elif how == "wait_for":
                await asyncio.wait_for(call(), 5)
            else:
                task = asyncio.ensure_future(call())
                await asyncio.sleep(5)
                task.cancel()
                await task
        except (TimeoutError, asyncio.CancelledError) as exc:
            error = exc
    assert error is not None
    assert_no_key(error)


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "S3cret-Pass"), ("alice", "hunter2"), ("bob", "s3cr"), ("tok3nSECRET42", "")],
)
async def test_a_proxy_that_repeats_its_credentials_shows_no_password(
    monkeypatch: pytest.MonkeyPatch, user: str, password: str
) -> None:
    """A proxy answering 407 with the ``Proxy-Authorization`` it got (in its JSON and a
    header): the proxy's password, or a user name given alone (a token), and the whole
    Basic credential are scrubbed from the answer as the key is, set by ``proxy=`` or by
    ``HTTP_PROXY``; short passwords too (their own base64 is too short to look for)."""
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    secret = password or user  # a user name alone is a token

    async def refuse(request: web.Request) -> web.Response:
        given = request.headers.get("Proxy-Authorization", "")
        return web.json_response(
            {"error": "ProxyAuthenticationRequired", "message": f"denied {given}"},
            status=407,
            headers={"X-Seen": given},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    credentials = f"{user}:{password}" if password else user
    proxy = f"http://{credentials}@127.0.0.1:{port}"
    found: list[BaseException] = []
    try:
        for env in (False, True):
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            if env:
                monkeypatch.setenv("HTTP_PROXY", proxy)
            options: dict[str, Any] = {} if env else {"proxy": proxy, "trust_env": False}
            async with AsyncFashn(
                api_key=KEY,
                base_url="http://127.0.0.1:9",
                retry=RetryPolicy(attempts=1),
                **options,
            ) as client:
                found.append(await _raised(client.credits()))
                found.append(await _raised(client.status("p1")))
    finally:
        await runner.cleanup()
    assert {type(e).__name__ for e in found} == {"APIError"}
    for error in found:
        for text in reachable_texts(error):
            assert secret not in text, text[:300]
            assert basic not in text, text[:300]


@pytest.mark.parametrize("key", ["1", "d", "a", "completed", "fa-key"])
def test_a_key_short_enough_to_be_in_the_apis_answers_is_refused(key: str) -> None:
    """Every piece of the key is hidden wherever it appears: a key of a few characters, or
    a word, is in the answers the client acts on (the fifth break-it helper: key "1"
    rewrote prediction ids, which were then polled as other ids; "d" rewrote the field
    name "id"; "completed" a status). Refused, under 12 characters, never shown."""
    with pytest.raises(errors.ConfigurationError, match="at least 12") as info:
        AsyncFashn(api_key=key)
    assert repr(key) not in str(info.value)
