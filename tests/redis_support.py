"""A real redis-server on a free loopback port, and the worker process of scale-out tests.

``RedisServer`` runs ``redis-server`` (the Debian package; ``.ci/run`` installs it) with
no persistence, bound to 127.0.0.1. ``python tests/redis_support.py ...`` is one client
process of a scale-out test: it opens an ``AsyncFashn`` sharing its limits through Redis,
says ``ready``, waits for ``go`` on stdin, runs its try-ons and prints a JSON summary.
The API key comes from ``FASHN_API_KEY``, never the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from helpers import free_port, stop_process, system_program

WORKER = Path(__file__).resolve()


class RedisServer:
    """One redis-server process; ``stop()`` and ``start()`` again keep its port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} {'running' if self.process else 'stopped'}>"

    @property
    def url(self) -> str:
        """Its redis:// URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        binary = system_program("redis-server", "redis-server")
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.process = subprocess.Popen(  # noqa: S603 - the system's redis-server, fixed args
            [binary, *args, "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop it (SIGTERM) and wait for it to exit."""
        process, self.process = self.process, None
        stop_process(process)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[RedisServer]:
        """A started server, stopped on exit."""
        server = cls()
        server.start()
        try:
            yield server
        finally:
            server.stop()


async def start_worker(*args: str, api_key: str) -> asyncio.subprocess.Process:
    """Start one worker process; returns once it said ``ready``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "FASHN_API_KEY": api_key},
    )
    assert process.stdout is not None
    line = await process.stdout.readline()
    assert line == b"ready\n", f"worker did not start: {line!r}"
    return process


# -- the worker process --------------------------------------------------------------


async def _work(options: argparse.Namespace) -> None:
    from fashn_async import AsyncFashn, Limits, Polling, RedisCoordination, TryOnRequest

    scale = options.scale
    coordination = None
    if options.redis:
        coordination = RedisCoordination(
            options.redis, lease_ttl=options.lease_ttl, poll_interval=options.poll
        )
    limits = Limits(in_flight=options.in_flight).scaled(scale)
    if options.margin is not None:  # real seconds: scheduling jitter does not scale
        limits = attrs.evolve(limits, margin=options.margin)
    async with AsyncFashn(
        base_url=options.base_url,
        limits=limits,
        polling=Polling().scaled(scale),
        coordination=coordination,
    ) as client:
        await client.credits()  # warm: the first request's code paths and connection
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        request = TryOnRequest(
            model_image=f"{options.base_url}/samples/model.png",
            garment_image=f"{options.base_url}/samples/garment.png",
            category="tops",
        )
        if options.mode == "hold":  # submit, never look at them again, wait to be killed
            for _ in range(options.count):
                await client.submit(request)
            print("held", flush=True)
            await asyncio.Event().wait()
        outcomes: Counter[str] = Counter()
        async for result in client.batch(request for _ in range(options.count)):
            outcomes["ok" if result.ok else str(result.error and result.error.name)] += 1
        print(json.dumps(outcomes), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--redis", default="")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--margin", type=float, default=None)
    parser.add_argument("--in-flight", type=int, default=6)
    parser.add_argument("--mode", choices=["run", "hold"], default="run")
    asyncio.run(_work(parser.parse_args()))


if __name__ == "__main__":
    main()
