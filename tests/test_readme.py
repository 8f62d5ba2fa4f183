"""Every Python block of README.md runs as written, against a live emulator.

A small collector rather than pytest-examples or pytest-markdown-docs: those run a block
in the test process (or only check its formatting), while README blocks are whole
programs ending in ``asyncio.run(main())`` and need a server, files to read and a
network guard. Here each block runs in its own interpreter, as a user runs it.

Conventions a README block must follow:

- Complete as written: its imports, then ``asyncio.run(main())``; or a pytest test
  module (it defines ``test_*`` functions), run by ``pytest`` as a user's test file.
- A server it talks to comes from ``FASHN_BASE_URL`` (``os.environ.get("FASHN_BASE_URL",
  "https://api.fashn.ai")``) and the key from ``FASHN_API_KEY``; the runner sets them to a
  live emulator (test key) and ``REDIS_URL`` to a loopback redis-server.
- Input files it names are in its working directory: ``model.jpg``, ``shirt.png``
  (JPEG and PNG sample images); it may write files there.
- It reaches loopback only: a guard in the block's interpreter refuses any other host
  (name lookup and connect), so a block naming example.com fails here, not on the web.
- It finishes in ``TIMEOUT`` seconds and exits 0.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from redis_support import RedisServer

from fashn_async.testing import sample_image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT = 90
_FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

#: Installed into every block's interpreter (sitecustomize): loopback only.
GUARD = textwrap.dedent(
    '''
    """Loopback only: README blocks must not reach any other host."""
    import ipaddress
    import socket


    def _loopback(host):
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        name = str(host).strip("[]").split("%")[0].rstrip(".").lower()
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


    def _refuse(host):
        return OSError(f"README blocks reach loopback only, not {host!r}")


    _getaddrinfo = socket.getaddrinfo


    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, str(_refuse(host)))
        return _getaddrinfo(host, *args, **kwargs)


    socket.getaddrinfo = getaddrinfo
    for _name in ("connect", "connect_ex"):
        _real = getattr(socket.socket, _name)

        def _guarded(self, address, _real=_real):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
                raise _refuse(address[0])
            return _real(self, address)

        setattr(socket.socket, _name, _guarded)
    '''
)


def python_blocks() -> list[tuple[int, str]]:
    """Every ```python block of the README: (line of its fence, its code)."""
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1)) for match in _FENCE.finditer(text)
    ]


def is_test_module(code: str) -> bool:
    """Whether a block is a pytest test module (defines test functions)."""
    return re.search(r"^(async )?def test_\w*\(", code, re.MULTILINE) is not None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A standalone emulator and a loopback redis-server; the environment pointing at them."""
    # No limits: the blocks run at once, and each alone keeps to them anyway.
    command = [sys.executable, "-m", "fashn_async", "emulator", "--port", "0", "--no-limits"]
    emulator = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert emulator.stdout is not None
        first = emulator.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert url is not None, first
        guard = tmp_path_factory.mktemp("guard")
        (guard / "sitecustomize.py").write_text(GUARD, encoding="utf-8")
        with RedisServer.running() as redis:
            yield {
                "FASHN_BASE_URL": url.group(0),
                "FASHN_API_KEY": "fashn-test-key",
                "REDIS_URL": redis.url,
                "PYTHONPATH": os.pathsep.join([str(guard), str(ROOT)]),
            }
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        if emulator.stdout is not None:
            emulator.stdout.close()


def _workdir(path: Path) -> Path:
    (path / "shirt.png").write_bytes(sample_image("garment", size=(96, 128)))
    model = Image.open(io.BytesIO(sample_image("model", size=(96, 128)))).convert("RGB")
    model.save(path / "model.jpg", format="JPEG", quality=90)
    return path


def _env(env: dict[str, str]) -> dict[str, str]:
    full = {**os.environ, **env}
    full.pop("PYTEST_ADDOPTS", None)
    return full


def _start(code: str, work: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start one block in its own interpreter, in ``work``."""
    if is_test_module(code):
        (work / "test_readme_block.py").write_text(code, encoding="utf-8")
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:looptime_plugin"]
        args += ["-p", "no:cacheprovider"]
    else:
        (work / "block.py").write_text(code, encoding="utf-8")
        args = [sys.executable, "block.py"]
    return subprocess.Popen(  # noqa: S603 - our own interpreter, a file we wrote
        args, cwd=work, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


BLOCKS = python_blocks()


@pytest.fixture(scope="module")
def started(
    live: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[int, subprocess.Popen[str]]]:
    """Every block started at once (each waits seconds for its try-ons), by line."""
    processes = {
        line: _start(code, _workdir(tmp_path_factory.mktemp(f"block{line}")), live)
        for line, code in BLOCKS
    }
    try:
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.mark.parametrize(
    "line", [line for line, _ in BLOCKS], ids=[f"README.md:{line}" for line, _ in BLOCKS]
)
def test_readme_block_runs(line: int, started: dict[int, subprocess.Popen[str]]) -> None:
    """The README's Python block at this line runs as written and exits 0."""
    process = started[line]
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    assert process.returncode == 0, (
        f"README.md:{line} exited {process.returncode}\n"
        f"--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}"
    )


def test_readme_has_python_blocks() -> None:
    """The collector finds the README's blocks (a broken fence would hide them all)."""
    assert len(BLOCKS) >= 5
    assert sum(is_test_module(code) for _, code in BLOCKS) >= 1


def test_guard_refuses_other_hosts(live: dict[str, str], tmp_path: Path) -> None:
    """A block that reaches for a host other than loopback fails under the guard."""
    code = "import urllib.request\nurllib.request.urlopen('http://example.com/', timeout=5)\n"
    (tmp_path / "block.py").write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "block.py"],
        cwd=tmp_path,
        env=_env(live),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode != 0
    assert "loopback only" in done.stderr
