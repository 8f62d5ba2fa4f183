"""No credential of any URL is shown: reprs, messages, logs and exception chains.

Every URL the package shows goes through ``_redact.shown_url``. These tests put secrets
in every place a URL can hold one (``user:password@``, a lone ``token@``, ``?password=``,
``?token=``, ``?api_key=``, any other query value, the fragment), in good URLs and in
unreadable ones, and look for them in everything the client, its transport, its
coordinator and the errors raised for bad URLs let a person see.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest
from helpers import free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashn_async import AsyncFashn, RedisCoordination, errors
from fashn_async._emulator_clock import describe
from fashn_async._redact import SAFE_QUERY_NAMES, shown_url

API_KEY = "fa-KEY0123456789secretkey"

#: Secrets: a marker no fixed part of a URL or a message holds, then URL-safe characters
#: and the delimiters a pasted password may hold unescaped (``/``, ``?``, ``#``, ``@``).
secrets = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%/!$'()*+,?#@",
    min_size=4,
    max_size=20,
).map(lambda tail: f"Qx{tail}")
query_names = st.one_of(
    st.sampled_from(["password", "PassWord", "token", "api_key", "key", "secret", "sig"]),
    st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(lambda n: n not in SAFE_QUERY_NAMES),
)


@st.composite
def urls_with_secrets(draw: st.DrawFn, schemes: list[str]) -> tuple[str, list[str]]:
    """A URL holding one or more secrets, and those secrets."""
    scheme = draw(st.sampled_from(schemes))
    secret = draw(secrets)
    shown = [secret]
    userinfo = draw(
        st.sampled_from(["", f"user:{secret}@", f"{secret}@", f":{secret}@", f"u:{secret}@"])
    )
    host = draw(st.sampled_from(["127.0.0.1", "127.0.0.1:9", "[::1]:9", "[::1", "h:99999", ""]))
    path = draw(st.sampled_from(["", "/", "/0", "/v1/"]))
    query = ""
    if not userinfo or draw(st.booleans()):
        name = draw(query_names)
        extra = draw(secrets)
        shown.append(extra)
        query = f"?db=0&{name}={extra}" if draw(st.booleans()) else f"?{name}={extra}"
    fragment = ""
    if draw(st.booleans()):
        extra = draw(secrets)
        shown.append(extra)
        fragment = f"#{extra}"
    # White space pasted with it (a URL refused for it was shown as given, secrets and all).
    tail = draw(st.sampled_from(["", "", "", " ", "\t", "\u00a0", "\n"]))
    return f"{scheme}{userinfo}{host}{path}{query}{fragment}{tail}", shown


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and everything it was raised from or during."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def visible(error: BaseException) -> str:
    """All of an error a person may see (message, repr, args, attributes), chain included.

    The traceback's source lines are the caller's own code, so they are left out.
    """
    return "\n".join(
        "".join(traceback.format_exception_only(e)) + repr(e) + repr(e.args) + repr(vars(e))
        for e in chain(error)
    )


def assert_hidden(text: str, secrets_: list[str]) -> None:
    for secret in [*secrets_, API_KEY]:
        assert secret not in text


@settings(max_examples=200, deadline=None)
@given(urls_with_secrets(["http://", "https://", "redis://", "ftp://", "", "//"]))
def test_shown_url_hides_every_credential(case: tuple[str, list[str]]) -> None:
    """shown_url never shows a password, a lone user token, a query value or a fragment."""
    url, hidden = case
    assert_hidden(shown_url(url), hidden)


def test_shown_url_keeps_what_is_not_secret() -> None:
    """Host, port, path, user name and safe Redis options stay readable."""
    assert shown_url("http://user:pw@127.0.0.1:3128/x") == "http://user:***@127.0.0.1:3128/x"
    assert shown_url("redis://:pw@h/0?db=1&password=pw") == "redis://:***@h/0?db=1&password=***"
    assert shown_url("https://api.fashn.ai") == "https://api.fashn.ai"
    assert shown_url("http://tok@h/") == "http://***@h/"
    assert shown_url("http://u:p\nw@h") == "http://u:***@h"
    # A password holding "#" or "?" unescaped (a parser reads a fragment or a query).
    assert shown_url("http://u:hunter2#x@example.com/x.png") == "http://u:***@example.com/x.png"
    assert shown_url("http://u:hunter2?x@example.com/x.png") == "http://u:***@example.com/x.png"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=urls_with_secrets(["http://", "https://", "ftp://"]),
    proxy=urls_with_secrets(["http://", "https://", "socks5://"]),
    redis=urls_with_secrets(["redis://", "rediss://", "http://"]),
)
def test_no_credential_in_client_reprs_or_configuration_errors(
    base: tuple[str, list[str]], proxy: tuple[str, list[str]], redis: tuple[str, list[str]]
) -> None:
    """A client built from secret-laden URLs shows none: repr, transport, coordinator, errors."""
    hidden = base[1] + proxy[1] + redis[1]
    for options in (
        {"base_url": base[0]},
        {"proxy": proxy[0]},
        {"coordination": redis[0]},
        {"base_url": base[0], "proxy": proxy[0], "coordination": redis[0]},
    ):
        try:
            client = AsyncFashn(api_key=API_KEY, **options)  # type: ignore[arg-type]
        except errors.ConfigurationError as error:
            assert_hidden(visible(error), hidden)
            continue
        shown = [repr(client), str(client), repr(client._transport)]
        if client._coordinator is not None:
            shown += [repr(client._coordinator), client._coordinator.url]
            shown += [repr(client.coordination), repr(client._coordinator.link)]
        assert_hidden("\n".join(shown), hidden)
    with pytest.raises(errors.ConfigurationError) as info:
        RedisCoordination(redis[0].replace("redis", "unknown", 1), timeout=-1)
    assert_hidden(visible(info.value), hidden)


def test_a_url_object_is_masked_too() -> None:
    """A non-str URL (its str() holds the password) is masked in the option's error."""

    class Url:
        def __str__(self) -> str:
            return "http://user:QxHidden@127.0.0.1:9"

    for option in ("base_url", "proxy", "coordination"):
        with pytest.raises(errors.ConfigurationError) as info:
            AsyncFashn(api_key=API_KEY, **{option: Url()})  # type: ignore[arg-type]
        assert_hidden(visible(info.value), ["QxHidden"])


async def test_connect_errors_and_logs_show_no_credential(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failing to reach the API or Redis: messages, chains and log lines hide credentials."""
    hidden = ["QxApiPass", "QxToken", "QxRedisPass", "QxProxyPass"]
    port = free_port()
    client = AsyncFashn(
        api_key=API_KEY,
        base_url=f"http://127.0.0.1:{port}/?token=QxToken",
        proxy=f"http://user:QxProxyPass@127.0.0.1:{free_port()}",
        trust_env=False,
    )
    async with client:
        with pytest.raises(errors.ConnectError) as info:
            await client.credits()
    assert_hidden(visible(info.value), hidden)

    redis_url = f"redis://:QxRedisPass@127.0.0.1:{free_port()}/0?password=QxRedisPass"
    shared = AsyncFashn(api_key=API_KEY, base_url="http://127.0.0.1:9", coordination=redis_url)
    with pytest.raises(errors.CoordinationError) as coordination_info:
        async with shared:
            pass
    assert_hidden(visible(coordination_info.value), hidden)

    link = AsyncFashn(api_key=API_KEY, coordination=redis_url)._coordinator
    assert link is not None
    link.link.state = "open"
    with caplog.at_level(logging.DEBUG, logger="fashn_async"):
        link.link.lost(ConnectionError("gone"))
    assert caplog.records
    assert_hidden("\n".join(r.getMessage() for r in caplog.records), hidden)
    await link.link.redis.aclose()
    assert_hidden(describe(f"http://u:QxApiPass@127.0.0.1:{port}", 0.5), hidden)
    with pytest.raises(errors.ConfigurationError, match="must not hold a user") as bad:
        AsyncFashn(api_key=API_KEY, base_url="http://user:QxApiPass@127.0.0.1:9")
    assert_hidden(visible(bad.value), hidden)


def test_a_bulk_job_shows_no_credential_of_its_base_url(tmp_path: Path) -> None:
    """A resumed job whose --base-url changed names both URLs, their tokens masked."""
    from fashn_async.bulk._edits import settings_problem
    from fashn_async.bulk._rows import SCHEMA_VERSION

    problem = settings_problem(
        tmp_path / "journal.sqlite",
        {"schema": SCHEMA_VERSION, "base_url": "http://127.0.0.1:9/?token=QxOld"},
        {"base_url": "http://127.0.0.1:8/?token=QxNew"},
    )
    assert problem is not None
    assert "the API address" in problem
    assert_hidden(problem, ["QxOld", "QxNew"])
