"""Shared test data."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
from collections.abc import Callable

import pytest

#: A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def system_program(name: str, package: str) -> str:
    """The path of a system program a test drives for real (redis-server, chromium).

    Missing, the test is skipped with the command that installs it, so the README's test
    command works on a bare machine; CI (``.ci/run`` installs both and sets
    ``FASHN_TESTS_REQUIRE_SYSTEM=1``) fails instead, so nothing is skipped there unseen.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is not installed (apt-get install {package}; .ci/run does)"
    if os.environ.get("FASHN_TESTS_REQUIRE_SYSTEM") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def assert_uncertain_slot_held_then_given_back(client: object) -> None:
    """After an uncertain POST, raised at once: its in-flight slot stays taken (the server
    may count the prediction in progress) and is given back once it would likely have
    ended, within 1000 s (fast-forwarded loop time)."""
    in_flight = client._engine.in_flight  # type: ignore[attr-defined]
    assert in_flight.in_use == 1
    await asyncio.sleep(1000)
    assert in_flight.in_use == 0


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a server process the tests started (SIGTERM, then SIGKILL after 10 s) and
    wait for it to exit."""
    if process is not None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ClosingServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers ``body`` (200, ``content_type``)
    on kept-alive connections, and closes the connection without answering the requests
    ``dropped`` names (by their number, from 1): a server or proxy closing a kept-alive
    connection, or losing an answer. ``requests`` counts every request it read.

    ``async with ClosingServer(...) as server:`` then ``server.url``.
    """

    def __init__(self, body: bytes, content_type: str, dropped: Callable[[int], bool]) -> None:
        self.body, self.content_type, self.dropped = body, content_type, dropped
        self.requests = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            self.requests += 1
            if self.dropped(self.requests):
                break
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n"
            )
            writer.write(head.encode() + self.body)
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> ClosingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
